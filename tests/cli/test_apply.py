"""``netloom apply -f``: a topology file created in dependency order, checked by HTTP; a bad
document rolls back everything the run created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit

# Deliberately out of order: ports before their devices, rules before their chains, each
# router port naming its bridge peer AND the bridge port naming the router port.
TOPOLOGY: list[dict[str, Any]] = [
    {
        "kind": "route",
        "ref": "default",
        "router_id": "@ap-r",
        "dst": "0.0.0.0/0",
        "next_hop_port_id": "@ap-rp1",
        "next_hop_gateway": "10.8.1.254",
    },
    {
        "kind": "port",
        "name": "ap-rp1",
        "device_id": "@ap-r",
        "mac": "02:00:00:00:08:01",
        "address": "10.8.1.1/24",
        "peer_id": "@ap-bp1",
    },
    {"kind": "port", "name": "ap-bp1", "device_id": "@ap-b1", "peer_id": "@ap-rp1"},
    {
        "kind": "port",
        "name": "ap-vm1",
        "device_id": "@ap-b1",
        "mac": "02:00:00:00:08:10",
        "fixed_ips": ["10.8.1.10"],
        "host_id": "@ap-h",
        "interface_name": "apvm1",
        "port_group_ids": ["@ap-pg"],
        "inbound_filter_id": "@ap-in",
    },
    {
        "kind": "rule",
        "ref": "r-jump",
        "chain_id": "@ap-in",
        "action": "jump",
        "jump_chain_id": "@ap-sub",
    },
    {
        "kind": "rule",
        "ref": "r-drop",
        "chain_id": "@ap-sub",
        "action": "drop",
        "position": 1,
        "in_port_group_id": "@ap-pg",
        "ip_addr_group_src_id": "@ap-ipg",
    },
    {"kind": "tenant", "name": "ap-t"},
    {"kind": "host", "name": "ap-h"},
    {"kind": "router", "name": "ap-r", "tenant_id": "@ap-t"},
    {"kind": "bridge", "name": "ap-b1", "tenant_id": "@ap-t"},
    {
        "kind": "dhcp-subnet",
        "ref": "ap-d1",
        "bridge_id": "@ap-b1",
        "cidr": "10.8.1.0/24",
        "gateway": "10.8.1.1",
    },
    {"kind": "chains", "name": "ap-in", "tenant_id": "@ap-t"},
    {"kind": "chain", "name": "ap-sub", "tenant_id": "@ap-t"},
    {"kind": "port_group", "name": "ap-pg", "tenant_id": "@ap-t"},
    {"kind": "ip-addr-group", "name": "ap-ipg", "addresses": ["10.8.1.10"]},
]


def count_all(http: httpx.Client) -> dict[str, int]:
    colls = (
        "tenants",
        "hosts",
        "routers",
        "bridges",
        "ports",
        "routes",
        "chains",
        "rules",
        "port_groups",
        "ip_addr_groups",
        "dhcp_subnets",
    )
    # a router port's own routes (system) come with the port, a port group's address group
    # with the group: not counted as plan objects
    only = {"routes": {"system": "false"}, "ip_addr_groups": {"port_group_id": "null"}}
    return {c: len(http.get(f"/{c}", params=only.get(c, {})).json()["items"]) for c in colls}


def test_apply_creates_in_dependency_order(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(TOPOLOGY))
    before = count_all(http)
    dry = cli.invoke(app, ["--json", "apply", "-f", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    order = [d["ref"] for d in json.loads(dry.stdout)]
    pos = {ref: i for i, ref in enumerate(order)}
    assert pos["ap-t"] < pos["ap-r"] < pos["ap-rp1"] < pos["default"]
    assert count_all(http) == before  # a dry run writes nothing

    result = cli.invoke(app, ["--json", "apply", "-f", str(path)])
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert len(created) == len(TOPOLOGY)
    after = count_all(http)
    assert sum(after.values()) - sum(before.values()) == len(TOPOLOGY)

    def one(coll: str, name: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = http.get(f"/{coll}", params={"name": name}).json()["items"]
        assert len(items) == 1, (coll, name, items)
        return items[0]

    t, h = one("tenants", "ap-t"), one("hosts", "ap-h")
    r, b = one("routers", "ap-r"), one("bridges", "ap-b1")
    rp1, bp1, vm1 = one("ports", "ap-rp1"), one("ports", "ap-bp1"), one("ports", "ap-vm1")
    cin, csub = one("chains", "ap-in"), one("chains", "ap-sub")
    pg, ipg = one("port_groups", "ap-pg"), one("ip_addr_groups", "ap-ipg")
    assert r["tenant_id"] == b["tenant_id"] == t["id"]
    assert (rp1["type"], rp1["device_id"], rp1["peer_id"]) == ("router", r["id"], bp1["id"])
    assert (bp1["type"], bp1["device_id"], bp1["peer_id"]) == ("bridge", b["id"], rp1["id"])
    assert (vm1["host_id"], vm1["interface_name"]) == (h["id"], "apvm1")
    assert vm1["port_group_ids"] == [pg["id"]] and vm1["inbound_filter_id"] == cin["id"]
    rules = http.get("/rules", params={"chain_id": csub["id"]}).json()["items"]
    assert [(x["action"], x["in_port_group_id"], x["ip_addr_group_src_id"]) for x in rules] == [
        ("drop", pg["id"], ipg["id"])
    ]
    jump = http.get("/rules", params={"chain_id": cin["id"]}).json()["items"]
    assert [x["jump_chain_id"] for x in jump] == [csub["id"]]
    (route,) = http.get("/routes", params={"router_id": r["id"], "system": "false"}).json()["items"]
    assert (route["next_hop_port_id"], route["next_hop_gateway"]) == (rp1["id"], "10.8.1.254")
    (subnet,) = http.get("/dhcp_subnets", params={"bridge_id": b["id"]}).json()["items"]
    assert subnet["cidr"] == "10.8.1.0/24"
    # what apply printed is what the API holds now
    everything = (t, h, r, b, rp1, bp1, vm1, cin, csub, pg, ipg, route, subnet, *rules, *jump)
    held = {x["id"]: x for x in everything}
    assert {d["id"] for d in created} == set(held)
    for doc in created:
        assert doc == held[doc["id"]]


def test_apply_failure_rolls_back(cli: CliRunner, http: httpx.Client, tmp_path: Path) -> None:
    docs = [
        {"kind": "tenant", "name": "rb-t"},
        {"kind": "router", "name": "rb-r", "tenant_id": "@rb-t"},
        {"kind": "bridge", "name": "rb-b", "tenant_id": "@rb-t"},
        {
            "kind": "port",
            "name": "rb-rp",
            "device_id": "@rb-r",
            "mac": "02:00:00:00:09:01",
            "address": "10.9.1.1/24",
            "peer_id": "@rb-bp",
        },
        {"kind": "port", "name": "rb-bp", "device_id": "@rb-b"},
        {"kind": "dhcp_subnet", "bridge_id": "@rb-b", "cidr": "10.9.1.1/24"},  # host bits set
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(docs))
    before = count_all(http)
    result = cli.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid_input: document #6"), lines
    assert "nothing kept" in lines[0]
    assert count_all(http) == before


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"kind": "nope"}], "unknown kind 'nope'"),
        ([{"kind": "bridge", "tenant_id": "@missing"}], "unknown reference @missing"),
        (
            [
                {"kind": "chain", "name": "a", "tenant_id": "@b"},
                {"kind": "tenant", "name": "b", "ref": "b", "x": "@a"},
            ],
            "reference cycle",
        ),
        ([{"kind": "tenant", "name": "d"}, {"kind": "tenant", "name": "d"}], "used twice"),
        ({"kind": "tenant"}, "JSON list"),
    ],
)
def test_apply_rejects_bad_files(
    cli: CliRunner, http: httpx.Client, tmp_path: Path, docs: Any, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(docs))
    before = count_all(http)
    result = cli.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert count_all(http) == before


def test_apply_a_yaml_plan_with_parameters(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "params: {tenant: yp-t, nets: []}\n"
        "objects:\n"
        "  - {kind: tenant, ref: t, name: '${tenant}'}\n"
        "  - {each: nets, kind: bridge, name: 'yp-${item}', tenant_id: '@t'}\n"
    )
    result = cli.invoke(
        app, ["--json", "apply", "-f", str(path), "-p", "tenant=yp-t2", "-p", 'nets=["a","b"]']
    )
    assert result.exit_code == 0, result.stderr
    made = {d["name"]: d for d in json.loads(result.stdout)}
    assert set(made) == {"yp-t2", "yp-a", "yp-b"}
    assert made["yp-a"]["tenant_id"] == made["yp-t2"]["id"]
    bad = cli.invoke(app, ["apply", "-f", str(path), "-p", "nope=1"])
    assert bad.exit_code == 1 and "unknown parameter(s) nope" in bad.stderr


def test_apply_a_bundled_plan(cli: CliRunner, http: httpx.Client) -> None:
    before = count_all(http)
    result = cli.invoke(
        app, ["--json", "apply", "--plan", "stateful-sg", "-p", "prefix=bp", "-p", "deny_port=23"]
    )
    assert result.exit_code == 0, result.stderr
    kinds = [d.get("position") for d in json.loads(result.stdout) if "chain_id" in d]
    assert len(kinds) == 8
    after = count_all(http)
    assert after["chains"] == before["chains"] + 2 and after["rules"] == before["rules"] + 8
    both = cli.invoke(app, ["apply", "--plan", "stateful-sg", "-f", "x.yaml"])
    assert both.exit_code == 1 and "exactly one of" in both.stderr
