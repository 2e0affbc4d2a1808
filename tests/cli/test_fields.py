"""Pure parts of the CLI, no server: options derived from the model, value parsing, error
lines."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from netloom.api.client import normalise_url
from netloom.cli.columns import columns_for
from netloom.cli.fields import field_specs, parse_filters, parse_value
from netloom.cli.main import app
from netloom.cli.output import cell
from netloom.errors import ApiError, ApiUnreachable, InvalidInput, NotFound, error_line
from netloom.model.kinds import KINDS

pytestmark = pytest.mark.unit


def spec(kind: str, field: str):  # type: ignore[no-untyped-def]
    return next(s for s in field_specs(KINDS[kind]) if s.name == field)


def test_every_kind_has_a_group_with_the_five_commands() -> None:
    runner = CliRunner()
    for kind in KINDS.values():
        name = kind.name.replace("_", "-")
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        for cmd in ("create", "list", "show", "update", "delete"):
            assert cmd in result.stdout, (name, cmd)


def test_options_follow_the_model() -> None:
    ports = {s.name: s for s in field_specs(KINDS["port"])}
    assert "tunnel_key" not in ports and "id" not in ports  # system-owned / not writable
    assert "alive" not in {s.name for s in field_specs(KINDS["host"])}
    assert ports["admin_state_up"].shape == "bool"
    assert ports["vlan_id"].shape == "int"
    assert ports["fixed_ips"].shape == "list"
    assert ports["allowed_address_pairs"].shape == "json_list"
    assert ports["type"].choices == ("bridge", "router")
    assert ports["device_id"].ref is not None and ports["device_id"].required
    assert ports["device_id"].option == "--device-id"
    assert spec("rule", "action").choices[:3] == ("accept", "drop", "reject")
    assert spec("rule", "tp_src").shape == "json"
    assert spec("rule", "nat_targets").shape == "json_list"
    assert spec("tunnel_zone", "members").ref is not None
    for field in ("members", "hosts", "opt121_routes"):
        kind = "tunnel_zone" if field == "members" else "dhcp_subnet"
        assert spec(kind, field).shape == "json_list"


def test_parse_values() -> None:
    assert parse_value(spec("port", "fixed_ips"), ["10.0.0.1,10.0.0.2", " 10.0.0.3 "]) == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert parse_value(spec("rule", "ethertype"), "0x86dd") == 0x86DD
    assert parse_value(spec("rule", "tp_dst"), "1000-2000") == {"start": 1000, "end": 2000}
    assert parse_value(spec("rule", "tp_dst"), "53") == {"start": 53, "end": 53}
    assert parse_value(spec("rule", "tp_dst"), '{"start": 1, "end": 2}') == {"start": 1, "end": 2}
    targets = parse_value(
        spec("rule", "nat_targets"),
        [
            '{"address_from": "192.0.2.1", "address_to": "192.0.2.1"}',
            '[{"address_from": "192.0.2.2", "address_to": "192.0.2.3"}]',
        ],
    )
    assert [t["address_from"] for t in targets] == ["192.0.2.1", "192.0.2.2"]
    with pytest.raises(InvalidInput) as bad:
        parse_value(spec("port", "vlan_id"), "x")
    assert bad.value.field == "vlan_id"
    with pytest.raises(InvalidInput):
        parse_value(spec("rule", "action"), "explode")
    with pytest.raises(InvalidInput):
        parse_filters(["novalue"])
    assert parse_filters(["device-id=x", "name=a=b"]) == {"device_id": "x", "name": "a=b"}


def test_error_lines() -> None:
    assert error_line(NotFound("no bridge x")) == "error: not_found: no bridge x"
    assert error_line(ApiError("invalid_input", "bad\nCIDR", status=400, field="cidr")) == (
        "error: invalid_input: bad CIDR (field: cidr)"
    )
    assert error_line(ApiUnreachable("http://h:1", "refused")) == (
        "error: cannot reach the API at http://h:1"
    )
    assert normalise_url("127.0.0.1:8181/") == "http://127.0.0.1:8181"


def test_columns_and_cells() -> None:
    kind = KINDS["port"]
    rows = [
        {
            "id": "1",
            "name": "p",
            "device_id": "d",
            "type": "bridge",
            "mtu": 1,
            "fixed_ips": ["10.0.0.1"],
            "admin_state_up": True,
        }
    ]
    cols = columns_for(kind, rows)
    assert cols[:3] == ["id", "name", "device_id"] and len(cols) <= 8
    assert cell(["a", "b"]) == "a, b" and cell(True) == "yes" and cell(None) == ""
    assert cell([{"a": 1}]) == '[{"a":1}]'


def test_rule_options_take_protocol_names_and_port_forms() -> None:
    assert parse_value(spec("rule", "nw_proto"), "tcp") == 6
    assert parse_value(spec("rule", "nw_proto"), "17") == 17
    assert parse_value(spec("rule", "tp_dst"), "22") == {"start": 22, "end": 22}
    assert parse_value(spec("rule", "tp_src"), "1000-2000") == {"start": 1000, "end": 2000}
    assert parse_value(spec("rule", "nw_proto"), "sctp") == 132
    with pytest.raises(InvalidInput) as err:
        parse_value(spec("rule", "nw_proto"), "pigeon")
    assert err.value.field == "nw_proto"
