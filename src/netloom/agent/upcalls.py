"""The agent's upcall path: parse -> simulate -> apply state changes -> install the megaflow
with its tags -> send the parked packet through it -> emit generated packets. A base of
:class:`~netloom.agent.core.Agent` (its state lives there); every simulation and what came of
it goes to the agent's simulation log (:mod:`netloom.agent.simlog`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from netloom.agent.logs import kv, log
from netloom.agent.parking import Parked, wait_key
from netloom.agent.pushes import missing_groups
from netloom.agent.ratelimit import round_robin
from netloom.agent.related import upcall_ct_state
from netloom.agent.simlog import Outcome
from netloom.agent.translate import to_datapath_actions, to_flow
from netloom.agent.view import Interest
from netloom.datapath.base import Upcall, UpcallReason
from netloom.errors import Untranslatable
from netloom.flows.model import Flow, Output, Tunnel
from netloom.model import simlog as k
from netloom.model.records import Port
from netloom.packet import Frame, parse
from netloom.sim import GeneratedPacket, Result, Verdict, simulate

if TYPE_CHECKING:
    from netloom.agent.core import Agent


class UpcallPath:
    """The upcall half of an :class:`~netloom.agent.core.Agent` (see the module docstring)."""

    def __init__(self, agent: Agent) -> None:
        self.a = agent
        self._hosts_used: set[str] = set()  # remote hosts the last translation tunnels to
        self.missed: set[Interest] = set()  # what the last simulation asked and lacked

    def _locate(self, port_id: str) -> Output | Tunnel | None:
        rec = self.a.view.peek("port", port_id)
        if not isinstance(rec, Port) or rec.host_id in (None, self.a.host_id):
            n = self.a.dp_port_of(port_id)  # a local port, or a sidecar (sim/uplink.py)
            return Output(n) if n else None
        ip = self.a._tunnels.host_ip.get(rec.host_id)
        if ip is None or not rec.tunnel_key or not self.a._tunnels.port:
            return None
        self._hosts_used.add(rec.host_id)
        return Tunnel(rec.tunnel_key, ip)

    # ---- upcalls ------------------------------------------------------------------------------

    def handle_upcalls(self, upcalls: Iterable[Upcall], now: float) -> None:
        """Process a polled batch: ports take turns, each within its rate limit when the
        agent is under pressure.

        The limit exists so that one port flooding new flows cannot take the agent (and the
        ring buffer) from the others. Without pressure (a small batch: the ring is nearly
        drained, the agent keeps up) an over-budget upcall is served anyway, since dropping it
        would buy nothing and costs its sender a retransmission, for a TCP SYN 1 s (RFC 6298
        §2): a VM opening connections through NAT (one upcall each) would otherwise be held
        to ``upcall_rate`` connections/s with most of the rest waiting a second. Pressure
        lasts ``upcall_pressure_s`` after the last full batch, so a flood, whose batches are
        full but for the moments the agent catches up, is held to its budget throughout.
        Budgets are charged either way: a port that has been flooding is held back first."""
        batch = list(upcalls)
        if len(batch) >= self.a.cfg.upcall_pressure:
            self.a._pressed_until = now + self.a.cfg.upcall_pressure_s
        pressed = now < self.a._pressed_until
        for up in round_robin(batch, key=lambda u: u.in_port):
            self.a.stats["upcalls"] += 1
            self.a.metrics.upcalls.labels(up.reason.name.lower()).inc()
            port_id = self.a._bindings.port_of(up.in_port)
            if port_id is None:  # unknown VNI from the tunnel, or an unplugged port
                self.a.stats["dropped"] += 1
                continue
            if not self.a._limiter.allow(up.in_port, now) and pressed:
                self.a.stats["rate_limited"] += 1
                self.a.metrics.rate_limited.inc()
                self.a.simlog.event(now, k.RATE_LIMITED, port_id)
                continue
            t0 = self.a._perf()
            self._process(Parked(up, up.packet, port_id, now + self.a.cfg.park_timeout_s), now)
            self.a.metrics.latency.observe(self.a._perf() - t0)

    def _simulate(
        self, packet: Frame | bytes, port_id: str, now: float, ct_state: int = 0
    ) -> Result:
        self.a.view.now = now
        r = simulate(packet, port_id, self.a.view, self.a.state, now, self.a.cfg.sim, ct_state)
        self.a.stats["simulations"] += 1
        self.a.metrics.simulations.labels(r.verdict.value).inc()
        self.missed = self.a.view.take_missed()
        for i in self.missed:
            self.a._subscribe(i)
        return r

    def _process(self, p: Parked, now: float) -> None:
        up = p.upcall
        self._hosts_used = set()
        frame = parse(p.packet)  # once, for the simulation and the related-error check
        ct_state = upcall_ct_state(up, frame, self.a.dp) if up is not None else 0
        r = self._simulate(
            frame if isinstance(frame, Frame) else p.packet, p.port_id, now, ct_state
        )
        # A decision taken while some record was still loading is sent once, never cached.
        cacheable = r.cacheable and not self.missed
        if r.verdict is Verdict.NOT_YET:
            self._log(now, p, r)
            key = wait_key(self.missed, r)
            self._emit(r.generated, now, p.hops + 1)  # e.g. the router's ARP request
            self.a._parking.park(p, key, now)
            self.a._requests.extend(self.a._snat.ask(key))  # a SNAT block: lease one
            if (arps := self.a._arp.watch(key)) is not None:  # a next hop: the shared entries
                self.a.want(arps)
            return
        if need := missing_groups(self.a.view, r):  # where its flow state goes: load, then send
            for i in need:
                self.a.want(i)
            self._log(now, p, r)
            self.a._parking.park(p, need[0], now)
            return
        self.a._apply_changes(r, now)
        self.a._push_state(r)  # before the packet is sent: the peer must know the connection
        flow: tuple[Flow, frozenset[object]] | None = None
        try:
            if up is not None and up.reason is UpcallReason.MISS and cacheable:
                flow = self._install(r, up, p.port_id, now)
            elif up is not None and up.reason is UpcallReason.MTU and cacheable:
                self.a.stats["dropped"] += 1  # over the port MTU, no ICMP to send: drop
            else:
                acts = to_datapath_actions(r.actions, self._locate, ct_commit=r.ct_commit)
                if acts and not (up is not None and up.reason is UpcallReason.TTL):
                    self.a.dp.execute(p.packet, acts, up.in_port if up is not None else 0)
        except Untranslatable as exc:
            self.a.stats["dropped"] += 1
            log.warning("no route to port %s", kv(port=exc.port_id, verdict=r.verdict.value))
        self._log(now, p, r, flow)
        self._emit(r.generated, now, p.hops + 1)

    def _log(
        self, now: float, p: Parked, r: Result, flow: tuple[Flow, frozenset[object]] | None = None
    ) -> None:
        """Record the simulation of ``p`` (``flow``: the flow installed for it, its tags)."""
        simlog = self.a.simlog
        if not simlog.enabled:
            return
        reason = p.upcall.reason.name.lower() if p.upcall is not None else ""
        hosts = sorted(self._hosts_used)
        if flow is None:
            simlog.sim(now, p.port_id, reason, r, Outcome(hosts=hosts))
        else:
            tags = sorted(map(str, flow[1]))
            simlog.sim(now, p.port_id, reason, r, Outcome(flow[0].cookie, tags, hosts))

    def _install(
        self, r: Result, up: Upcall, port_id: str, now: float
    ) -> tuple[Flow, frozenset[object]]:
        """Install the megaflow with its tags, then send the parked packet through it."""
        flow = to_flow(
            r,
            up.in_port,
            self._locate,
            idle_timeout_s=self.a.cfg.idle_timeout_s,
            cookie=self.a._installer.next_cookie(),
        )
        # _locate noted the remote hosts the flow tunnels to: their address is part of it
        tags = r.tags | {("host", h) for h in self._hosts_used}
        self.a._installer.install(flow, tags, up, port_id, now)
        return flow, tags

    # ---- generated packets --------------------------------------------------------------------

    def _emit(self, generated: Iterable[GeneratedPacket], now: float, hops: int = 0) -> None:
        """Deliver generated packets: exterior port -> its interface or tunnel; interior port
        -> simulate from its peer (the packet enters the next device there; it may park)."""
        for g in generated:
            rec = self.a.view.peek("port", g.port_id)
            if not isinstance(rec, Port):
                continue
            if rec.host_id is not None:
                where = self._locate(g.port_id)
                if where is not None:
                    self.a.dp.execute(g.data, [where], 0)
            elif rec.peer_id is not None and hops <= self.a.cfg.max_generated_hops:
                p = Parked(None, g.data, rec.peer_id, now + self.a.cfg.park_timeout_s, hops)
                self._process(p, now)


__all__ = ["UpcallPath"]
