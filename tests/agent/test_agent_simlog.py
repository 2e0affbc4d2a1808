"""The simulation log: every simulation and flow event of every agent reaches the cluster's log,
with its trace, its flow, its output; the agent's half is bounded and its file rotates."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netloom.agent.core import Agent, AgentConfig
from netloom.agent.simlog import SimLog, SimLogFile, SimLogOutlet, read_entries
from netloom.datapath.memory import MemoryDatapath
from netloom.insights.simlog import SimLogQuery
from netloom.model import simlog as k
from netloom.model.simlog import SimEntry, match_fields, outputs
from netloom.model.types import new_id
from netloom.packet import IPPROTO_TCP, build
from netloom.topology.protocol import SimBatch, decode_frames
from waiting import eventually

from .agentlab import IP, MAC_R1, Cluster, applied, ping, run, tcp
from .agentlab import cluster as agent_cluster

pytestmark = pytest.mark.unit


async def _shipped(
    c: Cluster, *, kind: str, port: str, want: Callable[[SimEntry], bool] = lambda e: True
) -> list[SimEntry]:
    """Drain every agent's log to the cluster; the entries of ``kind`` on ``port``, once one
    of them is ``want``-ed."""
    for node in c.nodes.values():
        node.driver.drain_simlog()
    q = SimLogQuery(kind=kind, port=port, limit=1000)

    def found() -> bool:
        return any(want(e) for _, e in c.simlog.query(q))

    await eventually(found, 5.0, f"{kind} entries of {port} in the cluster's log")
    return [e for _, e in c.simlog.query(q)]


def _forward(e: SimEntry) -> bool:
    return e.verdict == "forward"


def _drop(e: SimEntry) -> bool:
    return e.verdict == "drop"


def test_a_routed_packet_is_logged_with_its_trace_flow_and_tunnel() -> None:
    async def scenario() -> None:
        async with agent_cluster() as c:
            await c.send("A", ping("A", IP["C"], MAC_R1))
            assert len(c.got("C")) == 1
            sims = await _shipped(c, kind=k.SIM, port=c.ids["A"], want=_forward)
            done = [e for e in sims if e.verdict == "forward"]
            assert len(done) == 1 and any(e.verdict == "not-yet" for e in sims)
            e = done[0]
            assert e.host == c.ids["h1"] and e.reason == "miss"
            kinds = [s[0] for s in e.steps]
            assert kinds[0] == "port" and "bridge" in kinds and "router" in kinds
            assert e.flow != 0 and c.ids["r1"] in e.tags
            assert outputs(e.steps) == [c.ids["C"]] and e.hosts == [c.ids["h2"]]
            m = match_fields(e.key, e.read)
            assert m["ip_src"] == IP["A"] and m["ip_dst"] == IP["C"]
            assert abs(e.t - time.time()) < 60  # wall clock once shipped
            installed = await _shipped(c, kind=k.INSTALLED, port=c.ids["A"])
            assert [x.flow for x in installed] == [e.flow]
            parked = await _shipped(c, kind=k.PARKED, port=c.ids["A"])
            assert parked and parked[0].detail

    run(scenario())


def test_a_security_group_drop_and_the_invalidation_that_follows() -> None:
    async def scenario() -> None:
        async with agent_cluster() as c:
            rule = c.create(
                "rule",
                chain_id=c.ids["c_in"],
                position=0,
                action="drop",
                nw_proto=IPPROTO_TCP,
                tp_dst={"start": 22, "end": 22},
            )
            await applied(c, "h1", "h2", "h3")
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
            assert c.got("C") == []
            sims = await _shipped(c, kind=k.SIM, port=c.ids["A"], want=_drop)
            drop = next(e for e in sims if e.verdict == "drop")
            assert any(s[0] == "rule" and s[1] == rule and s[3] == "drop" for s in drop.steps)
            c.svc.delete("rule", rule)
            await applied(c, "h1")
            gone = await _shipped(c, kind=k.INVALIDATED, port=c.ids["A"])
            assert gone[0].flow == drop.flow and gone[0].detail

    run(scenario())


def _agent(**cfg: object) -> tuple[Agent, MemoryDatapath, int]:
    host, port, bridge = new_id(), new_id(), new_id()
    dp = MemoryDatapath(clock=0.0)
    a = Agent(AgentConfig(host, **cfg), dp)  # type: ignore[arg-type]
    a.start(0.0)
    doc = {
        "id": port,
        "device_id": bridge,
        "type": "bridge",
        "mac": "02:00:00:00:01:0a",
        "fixed_ips": [IP["A"]],
        "host_id": host,
        "interface_name": "tap-a",
        "tunnel_key": 7,
    }
    a.on_topology("port", port, doc, 0.0)
    return a, dp, a.dp_port_of(port)


def test_rate_limited_upcalls_and_dropped_parks_are_logged() -> None:
    a, dp, n = _agent(upcall_rate=1.0, upcall_burst=1.0, upcall_pressure=2, park_per_key=1)
    for seq in range(4):
        dp.receive(build(ping("A", IP["C"], MAC_R1, seq=seq)), n)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    kinds = [e.kind for e in a.simlog.take_entries()]
    assert kinds.count(k.RATE_LIMITED) == 3  # one upcall within budget, under pressure
    assert kinds.count(k.SIM) == 1 and kinds.count(k.PARKED) == 1
    assert a.simlog.take_entries() == []


def test_nothing_is_logged_when_the_log_is_off() -> None:
    a, dp, n = _agent(simlog=False)
    dp.receive(build(ping("A", IP["C"], MAC_R1)), n)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert a.stats["simulations"] == 1 and len(a.simlog) == 0


def test_the_buffer_is_bounded_until_drained() -> None:
    log = SimLog(max_bytes=100)
    for i in range(20):
        log.event(float(i), k.PARKED, "p")
    kept = [e.t for e in log.take_entries()]
    assert 0 < len(kept) < 20 and kept == [float(i) for i in range(len(kept))]
    assert log.dropped == 20 - len(kept)
    log.event(99.0, k.PARKED, "p")  # drained: room again
    assert [e.t for e in log.take_entries()] == [99.0]


def test_the_file_rotates_by_size_and_keeps_a_bound(tmp_path: Path) -> None:
    out = SimLogOutlet(SimLogFile(tmp_path, max_bytes=2000, keep=2))
    log = SimLog()
    for i in range(100):
        log.event(float(i), k.PARKED, "p", detail="x" * 40)
        out.drain(log.take(), lambda _: True)
    out.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["simlog.msgpack", "simlog.msgpack.1", "simlog.msgpack.2"]
    assert all(p.stat().st_size < 2200 for p in tmp_path.iterdir())
    kept = [e.t for n in files[::-1] for e in read_entries(tmp_path / n)]  # oldest file first
    assert kept == [float(i) for i in range(100 - len(kept), 100)] and len(kept) < 100


def test_unshipped_frames_wait_for_the_connection() -> None:
    sent: list[bytes] = []
    up = False

    def send(b: bytes) -> bool:
        if up:
            sent.append(b)
        return up

    log, out = SimLog(), SimLogOutlet(None, pending=3)
    log.wall_offset = 100.0
    for i in range(4):
        log.event(float(i), k.PARKED, "p")
        out.drain(log.take(), send)
    assert sent == [] and out.pending == 3 and out.unshipped_dropped == 1
    up = True
    out.drain(log.take(), send)
    got = [e.t for b in decode_frames(b"".join(sent), SimBatch) for e in b.entries]
    assert got == [101.0, 102.0, 103.0] and out.shipped == 3 and out.pending == 0
