"""``netloom bgp-peer`` and ``netloom bgp-network`` against a real cluster: create, list, show
(the session state in words, the learned routes, never the password), update, delete, and bad
input as one line with nothing stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.topology.client import TopologyClient
from waiting import eventually, wait_until

from .test_topology import nl

pytestmark = pytest.mark.unit


def _gateway(cli: CliRunner, s: str) -> dict[str, Any]:
    host = nl(cli, "host", "create", "--name", f"gw{s}")
    router = nl(cli, "router", "create", "--name", f"provider{s}")
    uplink = nl(
        cli,
        "port",
        "create",
        "--device-id",
        router["id"],
        "--type",
        "router",
        "--address",
        "198.19.1.2/24",
        "--host-id",
        host["id"],
        "--interface-name",
        "uplink1",
    )
    return {"host": host, "router": router, "uplink": uplink}


def test_peer_and_network_commands(cli: CliRunner, http: httpx.Client) -> None:
    s = uuid.uuid4().hex[:6]
    gw = _gateway(cli, s)
    rid = gw["router"]["id"]
    peer = nl(
        cli,
        "bgp-peer",
        "create",
        "--router-id",
        f"provider{s}",
        "--name",
        "upstream",
        "--address",
        "198.19.1.1",
        "--asn",
        "64512",
        "--local-as",
        "64513",
        "--password",
        "s3cret",
        "--bfd",
    )
    assert peer["password"] == "********" and peer["bfd"] is True
    net = nl(cli, "bgp-network", "create", "--router-id", rid, "--prefix", "203.0.113.0/24")
    assert net["prefix"] == "203.0.113.0/24"
    listed = nl(cli, "bgp-peer", "list", "--router-id", rid)
    assert [p["id"] for p in listed] == [peer["id"]]
    shown = cli.invoke(app, ["bgp-peer", "show", "upstream"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "s3cret" not in shown.stdout
    assert "********" in shown.stdout  # says a password is set
    assert "down" in shown.stdout and "learned routes (0)" in shown.stdout
    nl(cli, "bgp-peer", "update", "upstream", "--hold-time", "9", "--keepalive", "3")
    got = http.get(f"/bgp_peers/{peer['id']}").json()
    assert got["hold_time"] == 9 and got["password"] == "********"
    assert nl(cli, "bgp-network", "delete", net["id"]) is None
    assert http.get(f"/bgp_networks/{net['id']}").status_code == 404


BAD: list[tuple[str, ...]] = [
    ("bgp-peer", "create", "--address", "198.19.1.1", "--asn", "0", "--local-as", "1"),
    ("bgp-peer", "create", "--address", "198.19.1.1", "--asn", "4294967296", "--local-as", "1"),
    ("bgp-peer", "create", "--address", "198.19.9.1", "--asn", "65000", "--local-as", "1"),
    ("bgp-peer", "create", "--address", "198.19.1.1", "--asn", "65000", "--local-as", "1",
     "--hold-time", "2", "--keepalive", "0"),
    ("bgp-network", "create", "--prefix", "203.0.113.7/24"),
    ("bgp-network", "create", "--prefix", "not-a-prefix"),
]  # fmt: skip


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a[2:4]) + f" #{i}" for i, a in enumerate(BAD)])
def test_bad_bgp_input_is_one_line_and_stores_nothing(
    cli: CliRunner, http: httpx.Client, args: tuple[str, ...]
) -> None:
    s = uuid.uuid4().hex[:6]
    gw = _gateway(cli, s)
    rid = gw["router"]["id"]
    result = cli.invoke(app, [*args, "--router-id", rid])
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert http.get("/bgp_peers", params={"router_id": rid}).json()["items"] == []
    assert http.get("/bgp_networks", params={"router_id": rid}).json()["items"] == []


def test_show_prints_the_state_and_the_routes_an_agent_reported(
    cli: CliRunner, cluster: Any
) -> None:
    s = uuid.uuid4().hex[:6]
    gw = _gateway(cli, s)
    peer = nl(
        cli, "bgp-peer", "create", "--router-id", gw["router"]["id"], "--name", f"up{s}",
        "--address", "198.19.1.1", "--asn", "64512", "--local-as", "64513",
    )  # fmt: skip
    uplink = gw["uplink"]["id"]

    async def report() -> None:
        client = TopologyClient(gw["host"]["id"], ("127.0.0.1", cluster.topology_port))
        await client.start()
        try:
            await client.wait_connected(10)
            client.report_learned_routes(
                uplink,
                [
                    LearnedRoute("0.0.0.0/0", "198.19.1.1", peer["id"]),
                    LearnedRoute("198.18.0.0/15", "198.19.1.1", peer["id"]),
                ],
            )
            client.report_peer_status(
                PeerStatus(peer["id"], uplink, SessionState.ESTABLISHED, time.time(), 2)
            )

            def shown() -> str:
                out = cli.invoke(app, ["bgp-peer", "show", f"up{s}"], env={"COLUMNS": "200"})
                return str(out.stdout)

            await eventually(
                lambda: "established" in (text := shown()) and "198.18.0.0/15" in text,
                10,
                "the reported state and routes",
            )
            # while the agent is connected: its routes go with its connection
            text = shown()
            assert "learned routes (2)" in text and "0.0.0.0/0" in text
        finally:
            await client.stop()

    asyncio.run(report())

    def gone() -> bool:  # the agent closed its connection: what it learned goes with it
        out = cli.invoke(app, ["bgp-peer", "show", f"up{s}"], env={"COLUMNS": "200"}).stdout
        return "0.0.0.0/0" not in out and "down" in out

    wait_until(gone, 10, "the routes of a gone agent removed")
