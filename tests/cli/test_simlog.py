"""``netloom simlog list`` against a real cluster: what an agent ships over its topology
connection is kept in the state dir's log and answered by host, port, kind, time and page;
bad filters are one line."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app
from netloom.cli.simlog import parse_since
from netloom.errors import InvalidInput
from netloom.model import simlog as k
from netloom.model.simlog import SimEntry
from netloom.topology.client import TopologyClient
from netloom.topology.protocol import SimBatch, raw_frame
from waiting import eventually

from .test_topology import nl

pytestmark = pytest.mark.unit


def _entries(host: str, port: str, now: float) -> list[SimEntry]:
    step = ("rule", "r1", "sg #0 ssh", "drop", "")
    return [
        SimEntry(
            t=now - 10 + i,
            host="someone-else",  # the cluster keeps the connection's host, not this
            kind=k.SIM,
            port=port,
            key=(3, 0, 0, 0, 0x800, 0, 0x0A000001, 0x0A000002, 6, 0, 40000 + i, 22, 0),
            read=(1 << 13) - 1,
            reason="miss",
            steps=[step],
            verdict="drop",
            flow=i + 1,
        )
        for i in range(5)
    ] + [SimEntry(t=now, host=host, kind=k.PARKED, port=port, detail="arp 10.0.0.2")]


def _ship(topology_port: int, host: str, entries: list[SimEntry]) -> None:
    async def go() -> None:
        client = TopologyClient(host, ("127.0.0.1", topology_port))
        await client.start()
        try:
            await client.wait_connected(10)
            body = b"".join(msgspec.msgpack.encode(e) for e in entries)
            assert client.send_frame(raw_frame(SimBatch, len(entries), body))
        finally:
            await client.stop()

    asyncio.run(go())


def _list(cli: CliRunner, *args: str) -> dict[str, Any]:
    out = cli.invoke(app, ["simlog", "list", "--json", *args])
    assert out.exit_code == 0, out.stderr or out.output
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def test_shipped_entries_are_listed_by_host_port_kind_and_page(
    cli: CliRunner, http: httpx.Client, cluster: Any
) -> None:
    s = uuid.uuid4().hex[:6]
    host = nl(cli, "host", "create", "--name", f"h{s}")["id"]
    port = str(uuid.uuid4())
    now = time.time()
    _ship(cluster.topology_port, host, _entries(host, port, now))

    def arrived() -> bool:
        return len(_list(cli, "--host", f"h{s}")["entries"]) == 6

    asyncio.run(eventually(arrived, 10, "the shipped entries in the cluster's log"))
    sims = _list(cli, "--host", host, "--port", port, "--kind", "sim", "--limit", "3")
    got = sims["entries"]
    assert [e["flow"] for e in got] == [5, 4, 3] and "next" in sims  # newest first, paged
    assert got[0]["host"] == host and got[0]["verdict"] == "drop"
    assert got[0]["match"]["ip_dst"] == "10.0.0.2" and got[0]["match"]["tp_dst"] == "22"
    assert got[0]["steps"][0] == {
        "kind": "rule", "id": "r1", "name": "sg #0 ssh", "decision": "drop", "detail": ""
    }  # fmt: skip
    older = http.get(sims["next"].split("/api/v1", 1)[1]).json()["entries"]
    assert [e["flow"] for e in older] == [2, 1]
    assert len(_list(cli, "--host", host, "--since", str(now - 6.5))["entries"]) == 2
    table = cli.invoke(app, ["simlog", "list", "--host", host], env={"COLUMNS": "200"})
    assert "tcp 10.0.0.1:40004 > 10.0.0.2:22" in table.stdout and "arp 10.0.0.2" in table.stdout
    assert (cluster.state_dir / "simlog.sqlite").exists()


@pytest.mark.parametrize(
    "args", [("--kind", "nonsense"), ("--since", "yesterday"), ("--host", "no-such-host")]
)
def test_bad_filters_are_one_line(cli: CliRunner, args: tuple[str, ...]) -> None:
    out = cli.invoke(app, ["simlog", "list", *args])
    assert out.exit_code != 0
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_since_takes_a_duration_or_epoch_seconds() -> None:
    assert parse_since("10m", 1000.0) == 400.0 and parse_since("1700000000", 0.0) == 1.7e9
    with pytest.raises(InvalidInput):
        parse_since("", 0.0)
