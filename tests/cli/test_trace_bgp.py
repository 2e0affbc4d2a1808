"""`netloom trace` says which uplink a flow leaves by and why: the route learned from which
BGP peer (address, AS), reported by the gateway's agent through the topology service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.topology.client import TopologyClient
from waiting import eventually

pytestmark = pytest.mark.unit


def _post(http: httpx.Client, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"/{collection}", json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _build(http: httpx.Client) -> dict[str, str]:
    """A VM behind a router whose uplink (on gateway host tgw-1) peers with 198.19.1.1."""
    ids: dict[str, str] = {}
    ids["gw"] = _post(http, "hosts", {"name": "tgw-1"})["id"]
    ids["h"] = _post(http, "hosts", {"name": "tgw-h"})["id"]
    r = _post(http, "routers", {"name": "tgw-r"})["id"]
    b = _post(http, "bridges", {"name": "tgw-b"})["id"]
    rp = _post(http, "ports", {"device_id": r, "type": "router", "address": "10.9.1.1/24"})["id"]
    bp = _post(http, "ports", {"device_id": b, "type": "bridge"})["id"]
    assert http.post(f"/ports/{rp}/link", json={"peer_id": bp}).status_code == 200
    ids["vm"] = _post(
        http,
        "ports",
        {"device_id": b, "type": "bridge", "name": "tgw-vm", "fixed_ips": ["10.9.1.10"],
         "host_id": ids["h"], "interface_name": "tgwvm"},
    )["id"]  # fmt: skip
    ids["uplink"] = _post(
        http,
        "ports",
        {"device_id": r, "type": "router", "name": "tgw-uplink1", "address": "198.19.1.2/24",
         "host_id": ids["gw"], "interface_name": "tgwup1"},
    )["id"]  # fmt: skip
    ids["peer"] = _post(
        http,
        "bgp_peers",
        {"router_id": r, "address": "198.19.1.1", "asn": 64512, "local_as": 64513},
    )["id"]
    return ids


def test_trace_names_the_uplink_and_the_peer_a_route_was_learned_from(
    cli: CliRunner, http: httpx.Client, cluster: Any
) -> None:
    ids = _build(http)

    async def report() -> None:
        client = TopologyClient(ids["gw"], ("127.0.0.1", cluster.topology_port))
        await client.start()
        try:
            await client.wait_connected(10)
            client.report_learned_routes(
                ids["uplink"], [LearnedRoute("198.18.0.0/15", "198.19.1.1", ids["peer"])]
            )
            client.report_peer_status(
                PeerStatus(ids["peer"], ids["uplink"], SessionState.ESTABLISHED, time.time(), 1)
            )

            def learned() -> bool:
                got = http.get("/routes", params={"learned_from": ids["peer"]}).json()
                return len(got["items"]) == 1

            await eventually(learned, 10, "the learned route")
            args = ["trace", "--from-port", "tgw-vm", "--dst-ip", "198.18.0.10"]
            body = json.loads(cli.invoke(app, [*args, "--proto", "tcp", "--json"]).stdout)
            (egress,) = body["egress"]
            assert egress["uplink_port_id"] == ids["uplink"] and egress["host_id"] == ids["gw"]
            assert egress["learned_from"] == ids["peer"]
            assert (egress["peer_address"], egress["peer_asn"]) == ("198.19.1.1", 64512)
            text = cli.invoke(app, args, env={"COLUMNS": "200"}).stdout
            assert "leaves by uplink tgw-uplink1 of host tgw-1 via 198.19.1.1" in text
            assert "learned from bgp peer 198.19.1.1 AS 64512" in text
        finally:
            await client.stop()

    asyncio.run(report())
