"""`netloom trace` names the rule that decided; `-v` says why the earlier rules of its chain
did not match. The rule matches a port group's addresses across a router."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit


def _post(http: httpx.Client, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"/{collection}", json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _build(http: httpx.Client) -> dict[str, str]:
    """vm1 (in port group tv-admin) and vm3 on tv-b1, vm2 on tv-b2 behind tv-r; vm2 accepts
    ICMP, and ssh from tv-admin's addresses only."""
    t = _post(http, "tenants", {"name": "tv-t"})["id"]
    host = _post(http, "hosts", {"name": "tv-h1"})["id"]
    r = _post(http, "routers", {"tenant_id": t, "name": "tv-r"})["id"]
    pg = _post(http, "port_groups", {"tenant_id": t, "name": "tv-admin"})
    chain = _post(http, "chains", {"tenant_id": t, "name": "tv-sg"})["id"]
    rules = (
        {"name": "icmp", "action": "accept", "nw_proto": "1"},
        {
            "name": "ssh-from-admin",
            "action": "accept",
            "nw_proto": 6,
            "tp_dst": {"start": 22, "end": 22},
            "remote_group_src_id": pg["id"],
        },
        {"name": "default-deny", "action": "drop"},
    )
    ids = {"pg": pg["id"], "host": host}
    for rule in rules:
        ids[str(rule["name"])] = _post(http, "rules", {"chain_id": chain, **rule})["id"]
    for i in (1, 2):
        b = _post(http, "bridges", {"tenant_id": t, "name": f"tv-b{i}"})["id"]
        rp = _post(http, "ports", {"device_id": r, "type": "router", "address": f"10.7.{i}.1/24"})[
            "id"
        ]
        bp = _post(http, "ports", {"device_id": b, "type": "bridge"})["id"]
        assert http.post(f"/ports/{rp}/link", json={"peer_id": bp}).status_code == 200
        ids[f"b{i}"] = b
    vms: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
        ("tv-vm1", "b1", "10.7.1.10", {"port_group_ids": [pg["id"]]}),
        ("tv-vm3", "b1", "10.7.1.11", {}),
        ("tv-vm2", "b2", "10.7.2.10", {"outbound_filter_id": chain}),
    )
    for name, bridge, ip, extra in vms:
        vm = {"type": "bridge", "device_id": ids[bridge], "name": name, "fixed_ips": [ip]}
        port_id = _post(http, "ports", {**vm, **extra})["id"]
        bind = {"host_id": host, "interface_name": name.replace("-", "")}
        assert http.post(f"/ports/{port_id}/binding", json=bind).status_code == 200
    return ids


def _trace(cli: CliRunner, src: str, *extra: str) -> str:
    args = ["trace", "--from-port", src, "--dst-ip", "10.7.2.10", "--proto", "tcp"]
    got = cli.invoke(app, [*args, "--dport", "22", *extra], env={"COLUMNS": "200"})
    assert got.exit_code == 0, got.output
    return got.output


def test_trace_names_the_rule_and_explains_with_v(cli: CliRunner, http: httpx.Client) -> None:
    ids = _build(http)
    member = _trace(cli, "tv-vm1")
    assert "verdict: forward" in member
    assert f"decided by: rule tv-sg #1 ssh-from-admin ({ids['ssh-from-admin']}): accept" in member
    other = _trace(cli, "tv-vm3")
    assert "verdict: drop" in other and "no-match" not in other
    assert f"decided by: rule tv-sg #2 default-deny ({ids['default-deny']}): drop" in other
    verbose = _trace(cli, "tv-vm3", "-v")
    lines = verbose.splitlines()
    icmp = next(line for line in lines if "tv-sg #0 icmp" in line)
    assert "no-match" in icmp and "nw_proto differs (packet: 6)" in icmp
    ssh = next(line for line in lines if "tv-sg #1 ssh-from-admin" in line)
    assert "no-match" in ssh and "remote_group_src_id differs (packet: 10.7.1.11)" in ssh
    assert "decided by: rule tv-sg #2 default-deny" in verbose
