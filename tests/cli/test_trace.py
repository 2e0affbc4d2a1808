"""`netloom trace`: the what-if trace runs the real simulator on the live topology."""

from __future__ import annotations

import json
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
    """Router between two bridges; VM B's port drops tcp/22 inbound (a security group)."""
    t = _post(http, "tenants", {"name": "trace-t"})["id"]
    r = _post(http, "routers", {"tenant_id": t, "name": "trace-r"})["id"]
    host = _post(http, "hosts", {"name": "trace-h1"})["id"]
    ids: dict[str, str] = {}
    for i, (net, mac) in enumerate((("10.1.1", "02:01"), ("10.1.2", "02:02")), start=1):
        b = _post(http, "bridges", {"tenant_id": t, "name": f"trace-b{i}"})["id"]
        rp = _post(
            http,
            "ports",
            {
                "device_id": r,
                "type": "router",
                "mac": f"{mac}:00:00:00:01",
                "address": f"{net}.1/24",
            },
        )["id"]
        bp = _post(http, "ports", {"device_id": b, "type": "bridge"})["id"]
        assert http.post(f"/ports/{rp}/link", json={"peer_id": bp}).status_code == 200
        _post(http, "routes", {"router_id": r, "dst": f"{net}.0/24", "next_hop_port_id": rp})
        ids[f"vm{i}"] = _post(
            http,
            "ports",
            {
                "device_id": b,
                "type": "bridge",
                "name": f"trace-vm{i}",
                "mac": f"{mac}:00:00:00:10",
                "fixed_ips": [f"{net}.10"],
            },
        )["id"]
        bound = http.post(
            f"/ports/{ids[f'vm{i}']}/binding", json={"host_id": host, "interface_name": f"trvm{i}"}
        )
        assert bound.status_code == 200, bound.text
    chain = _post(http, "chains", {"tenant_id": t, "name": "trace-sg"})["id"]
    ids["rule"] = _post(
        http,
        "rules",
        {
            "chain_id": chain,
            "position": 1,
            "action": "drop",
            "nw_proto": 6,
            "tp_dst": {"start": 22, "end": 22},
        },
    )["id"]
    r2 = http.patch(f"/ports/{ids['vm2']}", json={"outbound_filter_id": chain})
    assert r2.status_code == 200, r2.text
    return ids


def test_trace_shows_path_rule_and_verdict(cli: CliRunner, http: httpx.Client) -> None:
    ids = _build(http)
    ok = cli.invoke(
        app,
        [
            "trace",
            "--from-port",
            "trace-vm1",
            "--dst-ip",
            "10.1.2.10",
            "--proto",
            "tcp",
            "--dport",
            "5201",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.output)
    assert body["verdict"] == "forward"
    assert body["outputs"] == [ids["vm2"]]
    assert any(
        step.get("device_type") == "router" or "router" in json.dumps(step)
        for step in body["trace"]
    )
    denied = cli.invoke(
        app,
        [
            "trace",
            "--from-port",
            "trace-vm1",
            "--dst-ip",
            "10.1.2.10",
            "--proto",
            "tcp",
            "--dport",
            "22",
            "--json",
        ],
    )
    assert denied.exit_code == 0, denied.output
    body = json.loads(denied.output)
    assert body["verdict"] == "drop"
    assert ids["rule"] in json.dumps(body["trace"])
    human = cli.invoke(
        app, ["trace", "--from-port", "trace-vm1", "--dst-ip", "10.1.2.10"], env={"COLUMNS": "200"}
    )
    assert human.exit_code == 0 and "verdict: forward" in human.output


def test_trace_bad_input_is_one_line(cli: CliRunner) -> None:
    bad = cli.invoke(app, ["trace", "--from-port", "no-such-port", "--dst-ip", "10.0.0.1"])
    assert bad.exit_code != 0
    assert "not_found" in bad.output
