"""`netloom trace` routes between a router's subnets with no route made by hand: the router
ports' connected routes do it (router MACs generated, VM addresses allocated with "auto")."""

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


def test_trace_needs_no_hand_made_routes(cli: CliRunner, http: httpx.Client) -> None:
    router = _post(http, "routers", {"name": "conn-r"})["id"]
    host = _post(http, "hosts", {"name": "conn-h1"})["id"]
    ips = []
    for i in (1, 2):
        bridge = _post(http, "bridges", {"name": f"conn-b{i}"})["id"]
        _post(
            http,
            "dhcp_subnets",
            {"bridge_id": bridge, "cidr": f"10.3.{i}.0/24", "gateway": f"10.3.{i}.1"},
        )
        rport = {"device_id": router, "type": "router", "address": f"10.3.{i}.1/24"}
        rp = _post(http, "ports", rport)["id"]
        bp = _post(http, "ports", {"device_id": bridge, "type": "bridge"})["id"]
        assert http.post(f"/ports/{rp}/link", json={"peer_id": bp}).status_code == 200
        vm = {"device_id": bridge, "type": "bridge", "name": f"conn-vm{i}", "fixed_ips": ["auto"]}
        port = _post(http, "ports", vm)
        ips.append(port["fixed_ips"][0])
        bind = {"host_id": host, "interface_name": f"cnvm{i}"}
        assert http.post(f"/ports/{port['id']}/binding", json=bind).status_code == 200
    hand_made = http.get("/routes", params={"router_id": router, "system": "false"}).json()
    assert hand_made["items"] == []
    result = cli.invoke(
        app, ["trace", "--from-port", "conn-vm1", "--dst-ip", ips[1], "--proto", "icmp", "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["verdict"] == "forward", body
