"""A worker process of ``netloom bench scale``: many REAL agents in one asyncio loop.

Each agent is the production stack: :class:`~netloom.agent.core.Agent` +
:class:`~netloom.agent.driver.AgentDriver` + its own
:class:`~netloom.topology.client.TopologyClient` connection (host registration and heartbeat
included) + a :class:`~netloom.datapath.memory.MemoryDatapath`. Only the underlay is absent:
flow-state pushes are handed to the target agent when it lives in this process and counted
otherwise (a first-packet check never needs them).

The parent drives the worker over a :mod:`multiprocessing` pipe, one command at a time, each
answered with one reply (see :meth:`Worker.handle`). Timestamps crossing the pipe are
``time.time()``: parent and workers read the same system clock on one machine.

Why the driver's own upcall polling is slowed down (``poll_s``): a thousand agents polling
every 2 ms would be half a million wake-ups a second on two cores; the harness injects packets
itself and then drains the upcalls with :meth:`AgentDriver.settle`, which polls on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psutil

from netloom.agent.core import Agent, AgentConfig, PushState
from netloom.agent.driver import AgentDriver
from netloom.datapath.base import Fate, Outcome
from netloom.datapath.memory import MemoryDatapath
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.packet import ETH_TYPE_IPV4, IPPROTO_TCP, Ethernet, Frame, IPv4, Tcp, build
from netloom.packet.util import ip_to_int, mac_to_int
from netloom.topology.client import TopologyClient

# (src host id, src port id, src mac, src ip, dst mac, dst ip, tcp sport, expect)
# expect: ("local", dst port id) | ("tunnel", vni, remote ip) | ("drop",)
Check = tuple[str, str, str, str, str, str, int, tuple[Any, ...]]
TRACK_FIELD = {"rule": "chain_id", "route": "router_id"}
# the agent counters summed over a worker's agents (parking: the warm-up's failure mode)
AGENT_STATS = ("upcalls", "simulations", "parked", "resimulated", "park_dropped", "dropped")


@dataclass(slots=True)
class _Slot:
    host_id: str
    expected: int
    agent: Agent
    driver: AgentDriver
    dp: MemoryDatapath
    active_at: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)  # tracked parent id -> first arrival


def rss_mb() -> float:
    return round(float(psutil.Process().memory_info().rss) / 2**20, 1)


class Worker:
    """The agents of one process and the commands the parent sends them."""

    def __init__(self, conn: Connection, topology: tuple[str, int]) -> None:
        self.conn = conn
        self.topology = topology
        self.slots: dict[str, _Slot] = {}
        self.tracked: set[str] = set()
        self.pushes_local = 0
        self.pushes_remote = 0
        self.retransmits = 0
        self._done = asyncio.Event()

    # ---- agents -----------------------------------------------------------------------------

    def _push(self, req: PushState) -> None:
        target = self.slots.get(req.host_id)
        if target is None:
            self.pushes_remote += 1
            return
        self.pushes_local += 1
        target.driver.receive_state(req)

    async def start(self, agents: list[tuple[str, str, int]]) -> dict[str, float]:
        """Start every agent; answer when each has all its bindings plugged and its tunnel
        set (``host id -> time.time()`` it got there)."""
        for host_id, ip, expected in agents:
            dp = MemoryDatapath()
            # caches held for the length of the run (the propagation test needs what the
            # warm-up loaded still loaded minutes later on a big run)
            cfg = AgentConfig(
                host_id,
                underlay_ip=ip,
                idle_timeout_s=3600.0,
                interest_idle_s=3600.0,
                upcall_rate=1e6,
                upcall_burst=1e6,
            )
            agent = Agent(cfg, dp)
            client = TopologyClient(host_id, self.topology)
            driver = AgentDriver(
                agent,
                client,
                poll_s=0.5,
                tick_s=5.0,
                metrics_port=None,
                state_port=None,
                push_state=self._push,
            )
            slot = _Slot(host_id, expected, agent, driver, dp)
            client.add_listener(self._tracker(slot))  # after the driver's: sees applied state
            self.slots[host_id] = slot
            await driver.start()
        while True:
            now = time.time()
            waiting = 0
            for s in self.slots.values():
                if s.active_at:
                    continue
                plugged = sum(1 for n in s.agent.bound.values() if n)
                if plugged >= s.expected and s.agent.tunnel_port:
                    s.active_at = now
                else:
                    waiting += 1
            if not waiting:
                return {s.host_id: s.active_at for s in self.slots.values()}
            await asyncio.sleep(0.02)

    def _tracker(self, slot: _Slot) -> Any:
        def on_change(kind: str, id: str, data: dict[str, Any] | None, rev: int) -> None:
            f = TRACK_FIELD.get(kind)
            if f is None or data is None:
                return
            parent = data.get(f)
            if parent in self.tracked and parent not in slot.seen:
                slot.seen[parent] = time.time()

        return on_change

    # ---- first-packet checks ------------------------------------------------------------------

    async def check(self, c: Check) -> tuple[bool, str]:
        host_id, port_id, smac, sip, dmac, dip, sport, expect = c
        s = self.slots[host_id]
        dp_port = s.agent.dp_port_of(port_id)
        if not dp_port:
            return False, f"port {port_id} not plugged on {host_id}"
        frame = Frame(
            Ethernet(mac_to_int(dmac), mac_to_int(smac), ETH_TYPE_IPV4),
            ip=IPv4(ip_to_int(sip), ip_to_int(dip), IPPROTO_TCP, ttl=64),
            l4=Tcp(sport, 22, flags=0x02),
        )
        data = build(frame)
        # A first packet parked longer than the agent's park timeout (a loaded cluster answering
        # a new subscription late) is dropped, and the VM's TCP retransmits its SYN: so do we,
        # up to 3 sends. A drop must be seen on 2 sends (not a park timeout passing for one).
        verdict: tuple[bool, str] = (False, "not sent")
        for attempt in range(2 if expect[0] == "drop" else 3):
            if attempt:
                self.retransmits += 1
            n0 = len(s.dp.sent)
            s.dp.receive(data, dp_port)
            await s.driver.settle(timeout=20.0)
            outs = s.dp.sent[n0:]
            del s.dp.sent[:]
            verdict = _judge(s.agent, dp_port, outs, expect)
            if verdict[0] != (expect[0] == "drop"):
                return verdict
        return verdict

    async def checks(self, cs: list[Check]) -> list[tuple[bool, str]]:
        """Run the checks, one agent's in order, agents concurrently."""
        by_host: dict[str, list[int]] = {}
        for i, c in enumerate(cs):
            by_host.setdefault(c[0], []).append(i)
        out: list[tuple[bool, str]] = [(False, "not run")] * len(cs)

        async def run(idx: list[int]) -> None:
            for i in idx:
                try:
                    out[i] = await self.check(cs[i])
                except Exception as exc:  # reported as a failed check, not a dead worker
                    out[i] = (False, f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(run(idx) for idx in by_host.values()))
        return out

    # ---- the control channel ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        records = [s.agent.view.record_count() for s in self.slots.values()]
        agent = dict.fromkeys(AGENT_STATS, 0)
        waits = [0] * 16
        wait_sum = wait_max = 0.0
        for s in self.slots.values():
            for k in AGENT_STATS:
                agent[k] += s.agent.stats[k]
            c = s.driver.client
            waits = [a + b for a, b in zip(waits, c.timings.snap_waits, strict=True)]
            wait_sum += c.timings.snap_wait_sum_s
            wait_max = max(wait_max, c.timings.snap_wait_max_s)
        return {
            "rss_mb": rss_mb(),
            "agents": len(self.slots),
            "records_max": max(records, default=0),
            "records_sum": sum(records),
            "connected": sum(1 for s in self.slots.values() if s.driver.client.connected),
            "pushes_local": self.pushes_local,
            "pushes_remote": self.pushes_remote,
            "retransmits": self.retransmits,
            "agent": agent,
            "snap_waits": waits,
            "snap_wait_sum_s": wait_sum,
            "snap_wait_max_s": wait_max,
        }

    def learn(self, items: list[tuple[str, str, str, str, list[str]]]) -> bool:
        """Each gateway agent reports the routes its uplink's peer announces (all from the
        peer's address) and its session established, as a BGP sidecar would."""
        for host_id, uplink, peer, next_hop, prefixes in items:
            client = self.slots[host_id].driver.client
            routes = [LearnedRoute(p, next_hop, peer) for p in prefixes]
            client.report_learned_routes(uplink, routes)
            client.report_peer_status(
                PeerStatus(peer, uplink, SessionState.ESTABLISHED, time.time(), len(routes))
            )
        return True

    async def handle(self, msg: tuple[Any, ...]) -> Any:
        cmd = msg[0]
        if cmd == "start":
            return await self.start(msg[1])
        if cmd == "track":
            self.tracked = set(msg[1])
            for s in self.slots.values():
                s.seen.clear()
            return True
        if cmd == "tracked":
            return {s.host_id: dict(s.seen) for s in self.slots.values() if s.seen}
        if cmd == "checks":
            return await self.checks(msg[1])
        if cmd == "stats":
            return self.stats()
        if cmd == "learn":
            return self.learn(msg[1])
        if cmd == "stop":
            for s in self.slots.values():
                await s.driver.stop()
            self._done.set()
            return True
        raise ValueError(f"unknown command {cmd!r}")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

        def readable() -> None:
            try:
                inbox.put_nowait(self.conn.recv())
            except EOFError:  # the parent is gone: stop
                loop.remove_reader(self.conn.fileno())
                inbox.put_nowait(None)

        loop.add_reader(self.conn.fileno(), readable)
        self.conn.send(("ready", rss_mb()))
        while not self._done.is_set():
            msg = await inbox.get()
            if msg is None:
                for s in self.slots.values():
                    await s.driver.stop()
                return
            try:
                reply: Any = ("ok", await self.handle(msg))
            except Exception as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}")
            self.conn.send(reply)
        with contextlib.suppress(Exception):
            loop.remove_reader(self.conn.fileno())


def _judge(
    agent: Agent, in_dp: int, outs: list[Outcome], expect: tuple[Any, ...]
) -> tuple[bool, str]:
    """Did the first packet land where the plan says (or nowhere, for a cross-tenant pair)?"""
    tunnels = [(o.vni, o.remote) for o in outs if o.fate is Fate.TUNNEL]
    locals_ = [o.port for o in outs if o.fate is Fate.OUTPUT and o.port != in_dp]
    got = f"tunnels={tunnels} outputs={locals_}"
    if expect[0] == "local":
        want = agent.dp_port_of(expect[1])
        ok = bool(want) and locals_ == [want] and not tunnels
        return ok, "" if ok else f"want output {want}, {got}"
    if expect[0] == "tunnel":
        ok = tunnels == [(expect[1], expect[2])] and not locals_
        return ok, "" if ok else f"want tunnel {expect[1:]}, {got}"
    ok = not tunnels and not locals_
    return ok, "" if ok else f"want drop, {got}"


def worker_main(conn: Connection, topology: tuple[str, int], fds: int) -> None:
    """Process entry point (multiprocessing, spawn)."""
    from netloom.bench.fanout import raise_fd_limit

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    raise_fd_limit(fds)
    asyncio.run(Worker(conn, topology).run())


__all__ = ["Check", "Worker", "rss_mb", "worker_main"]
