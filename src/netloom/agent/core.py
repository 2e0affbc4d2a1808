"""The agent core: bindings, the upcall loop, parking, invalidation, expiry (sans-IO).

Like aioquic's connection objects, :class:`Agent` does no network I/O and reads no clock:
every input carries an explicit ``now`` and what needs the network comes back as requests
(:meth:`Agent.take_requests`: subscribe/unsubscribe topology interests, push flow state to a
peer host) for the driver (:mod:`netloom.agent.driver`) to carry out. The datapath is an
injected, synchronous dependency (the :class:`~netloom.datapath.base.Datapath` protocol), so
the same core runs against the pure-Python datapath in unit tests and the BPF one on hosts.

The upcall path (MidoNet's): parse -> simulate -> apply state changes (invalidating the flows
that read the changed keys) -> install the megaflow with its tags -> send the parked packet
through it (``reinject``) -> emit generated packets (ARP/ICMP/DHCP replies: straight to a
local VM, tunnelled to a remote one, or simulated onwards from the peer of an interior port).

A "not yet" result parks the packet (bounded, timed out) under what it waits for (an
interest being loaded, an ARP entry); when that arrives the packet is simulated again. Helpers:
``bindings`` (ports, uplink sidecars), ``tunnels``, ``installer`` (flows), ``parking`` (NOT_YET
packets), ``pushes`` (where flow state goes), ``tags`` (what a change invalidates), ``snat``
(port blocks), ``arpshare`` (next-hop ARP entries shared through the NSDB)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from netloom.agent.arpshare import ReportArp, SharedArp
from netloom.agent.bindings import PortBindings
from netloom.agent.flowtable import FlowTable
from netloom.agent.installer import FlowInstaller
from netloom.agent.logs import kv, log
from netloom.agent.metrics import AgentMetrics
from netloom.agent.parking import Parked, ParkingLot, wait_key
from netloom.agent.pushes import group_interests, missing_groups, push_hosts, push_keys
from netloom.agent.ratelimit import round_robin
from netloom.agent.related import upcall_ct_state
from netloom.agent.snat import LeaseSnat, SnatLeases
from netloom.agent.tags import state_tags, topology_tags
from netloom.agent.translate import to_datapath_actions, to_flow
from netloom.agent.tunnels import TunnelPeers
from netloom.agent.view import AgentView, Interest, related
from netloom.datapath.base import Datapath, PortKind, Upcall, UpcallLimit, UpcallReason
from netloom.datapath.conntrack import ConntrackSettings
from netloom.errors import Untranslatable
from netloom.flows.model import Output, Tunnel
from netloom.model.neighbors import ARP_KIND
from netloom.model.records import Port, TunnelZone
from netloom.packet import Frame, parse
from netloom.ratelimit import PortLimiter
from netloom.sim import GeneratedPacket, Result, SimConfig, SimState, Verdict, simulate
from netloom.sim.state import StateChange
from netloom.sim.uplink import sidecar_id

# ---- requests for the driver ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    interest: Interest


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    interest: Interest


@dataclass(frozen=True, slots=True)
class PushState:
    """Send conntrack/NAT entries to ``host_id`` (underlay ``ip``, host order) before the
    packet they belong to arrives there (flow state between hosts)."""

    host_id: str
    ip: int
    changes: tuple[StateChange, ...]


Request = Subscribe | Unsubscribe | PushState | LeaseSnat | ReportArp


@dataclass(slots=True)
class AgentConfig:
    host_id: str
    underlay_ip: str | None = None  # else this host's address in its tunnel zone
    sim: SimConfig = field(default_factory=SimConfig)
    tunnel_udp_port: int = 4789
    # VXLAN encap/decap in the datapath program when it can (bpf); False: the kernel's
    # collect_md device for everything (kept for comparison and as the fallback anyway)
    vxlan_in_datapath: bool = True
    idle_timeout_s: float = 60.0
    park_per_key: int = 64
    park_total: int = 4096
    park_timeout_s: float = 3.0  # per wait: each answered wait restarts it (see _release)
    park_max_waits: int = 32  # waits one packet may go through (a first packet needs ~4)
    upcall_rate: float = 200.0  # per port per second, enforced under pressure only:
    upcall_burst: float = 100.0
    # a polled batch this big means upcalls are queueing in the ring: ports are then held to
    # their budget, for upcall_pressure_s after the last such batch (see handle_upcalls)
    upcall_pressure: int = 64
    upcall_pressure_s: float = 1.0
    # Enforced by the datapath itself, before the agent reads anything: a port scan costs the
    # agent at most this many upcalls/s, and the upcall queue keeps room for the other ports
    # (the agent's own budget above then decides which of those it simulates).
    kernel_upcall_rate: float = 5000.0
    kernel_upcall_burst: int = 2000
    interest_idle_s: float = 120.0
    max_generated_hops: int = 4
    # the datapath's connection tracking (lifetimes, size); used by stateful rules when
    # sim.kernel_conntrack is on
    conntrack: ConntrackSettings = field(default_factory=ConntrackSettings)


class Agent:
    """One host's agent core (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        datapath: Datapath,
        *,
        metrics: AgentMetrics | None = None,
        perf_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cfg = config
        self.host_id = config.host_id
        self.dp = datapath
        self.view = AgentView()
        self.flows = FlowTable()
        self.state = SimState()
        self.metrics = metrics or AgentMetrics()
        self._perf = perf_clock  # only for the latency histogram
        self._limiter = PortLimiter(config.upcall_rate, config.upcall_burst)
        self._pressed_until = float("-inf")  # upcall budgets enforced until then
        self._requests: list[Request] = []
        # Where flow-state pushes go at once (the driver's sender): they must leave before the
        # packet they belong to (flow state between hosts); None queues them with the other
        # requests.
        self.push_now: Callable[[PushState], None] | None = None
        self._requested: set[Interest] = set()
        self._bindings = PortBindings(datapath, config.sim.overlay_mtu, self._limiter)
        self._tunnels = TunnelPeers(datapath, config)
        self._hosts_used: set[str] = set()
        self._missed: set[Interest] = set()  # what the last simulation asked and lacked
        self._group_interests: set[Interest] = set()  # pinned for bound ports' port groups
        self.stats: dict[str, int] = dict.fromkeys(
            ("upcalls", "simulations", "installed", "invalidated", "expired", "rate_limited",
             "parked", "park_dropped", "resimulated", "pushed", "dropped"),
            0,
        )  # fmt: skip
        self._snat, self._arp = SnatLeases(), SharedArp(config.host_id)
        self._parking = ParkingLot(config.park_per_key, config.park_total, self.stats, self.metrics)
        self._installer = FlowInstaller(datapath, self.flows, self.stats, self.metrics)

    # ---- start / requests ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Ask for what this host always needs: its ports, its host record, tunnel zones."""
        self.view.now = now
        self.dp.set_upcall_limit(
            UpcallLimit(self.cfg.kernel_upcall_rate, self.cfg.kernel_upcall_burst)
        )
        self.dp.set_conntrack(self.cfg.conntrack)
        self.metrics.ct_capacity.set(self.cfg.conntrack.max_entries)
        self.metrics.watch_datapath(self.dp.counters)
        for i in (
            Interest.where("port", "host_id", self.host_id),
            Interest.where("tunnel_zone", "type", "vxlan"),
            Interest.obj("host", self.host_id),
        ):
            self.view.pin(i)
            self._subscribe(i)
        if self._tunnels.local_ip:
            self._tunnels.ensure()

    def want(self, interest: Interest) -> None:
        """Keep ``interest`` loaded for as long as this agent runs (pinned, never idle)."""
        self.view.pin(interest)
        self._subscribe(interest)

    def take_requests(self) -> list[Request]:
        out, self._requests = self._requests, []
        return out

    def _subscribe(self, interest: Interest) -> None:
        if interest not in self._requested and not self.view.is_loaded(interest):
            self._requested.add(interest)
            self._requests.append(Subscribe(interest))

    def on_loaded(self, interest: Interest, now: float) -> None:
        """The snapshot of ``interest`` has been applied to the view (driver callback). A
        failed subscription is reported the same way: the view then answers "absent"."""
        self._requested.discard(interest)
        self.view.now = now
        self.view.mark_loaded(interest)
        self.metrics.interests.set(len(self.view.loaded))
        if interest.id is not None:  # what the next simulation round will ask: ask it now
            for i in related(self.view.peek(interest.kind, interest.id)):
                self._subscribe(i)
        self._release(interest, now)

    # ---- topology changes ---------------------------------------------------------------------

    def on_topology(self, kind: str, id: str, data: dict[str, Any] | None, now: float) -> None:
        """A change from the topology client: update the view, the bindings and the tunnel
        peers, and invalidate exactly the flows tagged with what changed; a router's shared
        ARP entry (expiry in this agent's clock) goes to the simulation state."""
        if kind == ARP_KIND:
            if (arp := self._arp.learned(data, self.state, now)) is not None:
                self.apply_state((arp,), now)
            return
        old = self.view.apply(kind, id, data)
        new = self.view.peek(kind, id)
        if old is None and new is None:
            return
        tags = topology_tags(kind, id, old, new)
        if kind == "port":
            self._rebind(id, new if isinstance(new, Port) else None, now)
        elif kind == "tunnel_zone":
            tags |= self._tunnels.update_zone(id, new if isinstance(new, TunnelZone) else None)
        if kind in ("port", "port_group"):
            self._sync_groups()
        self._invalidate(tags, why=f"{kind} {id[:8]}")

    def _invalidate(self, tags: Iterable[object], why: str) -> int:
        return self._installer.invalidate(tags, why)

    # ---- bindings -----------------------------------------------------------------------------

    def _rebind(self, port_id: str, port: Port | None, now: float) -> None:
        mine = port is not None and port.host_id == self.host_id and port.interface_name
        cur = self._bindings.get(port_id)
        if cur is not None and (
            not mine
            or port is None
            or cur.ifname != port.interface_name
            or cur.tunnel_key != port.tunnel_key
        ):
            self._bindings.unbind(cur)
        if mine and port is not None and port_id not in self._bindings:
            assert port.interface_name is not None
            kind = PortKind.UPLINK if port.type == "router" else PortKind.VM
            self._bindings.bind(port_id, port.interface_name, port.tunnel_key, kind)
            for i in related(port, bound=True):  # its first packet needs them: load now
                self._subscribe(i)

    def dp_port_of(self, port_id: str) -> int:
        """The datapath port of a port bound here (0 if not bound or not plugged)."""
        b = self._bindings.get(port_id)
        return b.dp_port if b is not None else 0

    def set_sidecar(self, uplink_id: str, ifname: str | None) -> None:
        """Plug (``ifname``) or unplug (None) the routing sidecar of uplink ``uplink_id``."""
        if self._bindings.set_sidecar(uplink_id, ifname):
            (self.state.sidecars.add if ifname else self.state.sidecars.discard)(uplink_id)
            self._invalidate({sidecar_id(uplink_id)}, why=f"sidecar {uplink_id[:8]}")

    @property
    def bound(self) -> dict[str, int]:
        return self._bindings.dp_ports()

    # ---- tunnel peers -------------------------------------------------------------------------

    @property
    def tunnel_port(self) -> int:
        """The datapath's tunnel port (0 until the tunnel is set up)."""
        return self._tunnels.port

    @property
    def peers(self) -> dict[str, int]:
        return dict(self._tunnels.host_ip)

    @property
    def local_ip(self) -> int:
        """This host's underlay address (host order; 0 until known)."""
        return self._tunnels.local_ip

    def _locate(self, port_id: str) -> Output | Tunnel | None:
        rec = self.view.peek("port", port_id)
        if not isinstance(rec, Port) or rec.host_id in (None, self.host_id):
            n = self.dp_port_of(port_id)  # a local port, or a sidecar (sim/uplink.py)
            return Output(n) if n else None
        ip = self._tunnels.host_ip.get(rec.host_id)
        if ip is None or not rec.tunnel_key or not self._tunnels.port:
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
        if len(batch) >= self.cfg.upcall_pressure:
            self._pressed_until = now + self.cfg.upcall_pressure_s
        pressed = now < self._pressed_until
        for up in round_robin(batch, key=lambda u: u.in_port):
            self.stats["upcalls"] += 1
            self.metrics.upcalls.labels(up.reason.name.lower()).inc()
            port_id = self._bindings.port_of(up.in_port)
            if port_id is None:  # unknown VNI from the tunnel, or an unplugged port
                self.stats["dropped"] += 1
                continue
            if not self._limiter.allow(up.in_port, now) and pressed:
                self.stats["rate_limited"] += 1
                self.metrics.rate_limited.inc()
                continue
            t0 = self._perf()
            self._process(Parked(up, up.packet, port_id, now + self.cfg.park_timeout_s), now)
            self.metrics.latency.observe(self._perf() - t0)

    def _simulate(
        self, packet: Frame | bytes, port_id: str, now: float, ct_state: int = 0
    ) -> Result:
        self.view.now = now
        r = simulate(packet, port_id, self.view, self.state, now, self.cfg.sim, ct_state)
        self.stats["simulations"] += 1
        self.metrics.simulations.labels(r.verdict.value).inc()
        self._missed = self.view.take_missed()
        for i in self._missed:
            self._subscribe(i)
        return r

    def _process(self, p: Parked, now: float) -> None:
        up = p.upcall
        frame = parse(p.packet)  # once, for the simulation and the related-error check
        ct_state = upcall_ct_state(up, frame, self.dp) if up is not None else 0
        r = self._simulate(
            frame if isinstance(frame, Frame) else p.packet, p.port_id, now, ct_state
        )
        # A decision taken while some record was still loading is sent once, never cached.
        cacheable = r.cacheable and not self._missed
        if r.verdict is Verdict.NOT_YET:
            key = wait_key(self._missed, r)
            self._emit(r.generated, now, p.hops + 1)  # e.g. the router's ARP request
            self._parking.park(p, key, now)
            self._requests.extend(self._snat.ask(key))  # a SNAT block: lease one
            if (arps := self._arp.watch(key)) is not None:  # a next hop: the shared entries
                self.want(arps)
            return
        if need := missing_groups(self.view, r):  # where its flow state goes: load, then send
            for i in need:
                self.want(i)
            self._parking.park(p, need[0], now)
            return
        self._apply_changes(r, now)
        self._push_state(r)  # before the packet is sent: the peer must know the connection
        self._hosts_used = set()
        try:
            if up is not None and up.reason is UpcallReason.MISS and cacheable:
                self._install(r, up, p.port_id, now)
            elif up is not None and up.reason is UpcallReason.MTU and cacheable:
                self.stats["dropped"] += 1  # over the port MTU, no ICMP to send: drop
            else:
                acts = to_datapath_actions(r.actions, self._locate, ct_commit=r.ct_commit)
                if acts and not (up is not None and up.reason is UpcallReason.TTL):
                    self.dp.execute(p.packet, acts, up.in_port if up is not None else 0)
        except Untranslatable as exc:
            self.stats["dropped"] += 1
            log.warning("no route to port %s", kv(port=exc.port_id, verdict=r.verdict.value))
        self._emit(r.generated, now, p.hops + 1)

    def _install(self, r: Result, up: Upcall, port_id: str, now: float) -> None:
        """Install the megaflow with its tags, then send the parked packet through it."""
        flow = to_flow(
            r,
            up.in_port,
            self._locate,
            idle_timeout_s=self.cfg.idle_timeout_s,
            cookie=self._installer.next_cookie(),
        )
        # _locate noted the remote hosts the flow tunnels to: their address is part of it
        tags = r.tags | {("host", h) for h in self._hosts_used}
        self._installer.install(flow, tags, up, port_id, now)

    # ---- generated packets --------------------------------------------------------------------

    def _emit(self, generated: Iterable[GeneratedPacket], now: float, hops: int = 0) -> None:
        """Deliver generated packets: exterior port -> its interface or tunnel; interior port
        -> simulate from its peer (the packet enters the next device there; it may park)."""
        for g in generated:
            rec = self.view.peek("port", g.port_id)
            if not isinstance(rec, Port):
                continue
            if rec.host_id is not None:
                where = self._locate(g.port_id)
                if where is not None:
                    self.dp.execute(g.data, [where], 0)
            elif rec.peer_id is not None and hops <= self.cfg.max_generated_hops:
                p = Parked(None, g.data, rec.peer_id, now + self.cfg.park_timeout_s, hops)
                self._process(p, now)

    # ---- state changes ------------------------------------------------------------------------

    def _apply_changes(self, r: Result, now: float) -> None:
        self.apply_state(r.changes, now)
        self._requests.extend(self._arp.reports(self.view, self._bindings, r.changes))

    def apply_state(self, changes: Iterable[StateChange], now: float) -> None:
        """Apply state changes (local, or pushed by a peer); invalidate the flows that read the
        changed keys (MAC move, new ARP entry, new connection) and wake what waited on them."""
        batch = tuple(changes)
        tags, arps = state_tags(self.state, batch)
        self.state.apply(batch)
        if tags:
            self._invalidate(tags, why="state")
        for key in arps:
            self._release(key, now)

    def _push_state(self, r: Result) -> None:
        """Conntrack/NAT entries go to the hosts the packet is sent to, before the packet: the
        reply is simulated there and must see the connection (flow state between hosts)."""
        keys = push_keys(r)
        if not keys:
            return
        for h in sorted(push_hosts(self.view, self.host_id, r)):
            ip = self._tunnels.host_ip.get(h)
            if ip is not None:
                req = PushState(h, ip, keys)
                if self.push_now is not None:
                    self.push_now(req)
                else:
                    self._requests.append(req)
                self.stats["pushed"] += len(keys)
                self.metrics.state_pushed.inc(len(keys))

    def _sync_groups(self) -> None:
        """Follow the port groups of this host's bound ports: each group's record (is it
        stateful?) and, for the stateful ones, its member ports, so :meth:`_push_state`
        knows their hosts before the first packet. Interests no longer needed are unpinned
        and expire like any other (a simulation may still be using them)."""
        want = group_interests(self.view, self._bindings)
        for i in want - self._group_interests:
            self.view.pin(i)
            self._subscribe(i)
        for i in self._group_interests - want:
            self.view.unpin(i)
        self._group_interests = want

    # ---- parking ------------------------------------------------------------------------------

    def _release(self, key: object, now: float) -> None:
        """Re-simulate the packets parked under ``key`` (each may park again on the next thing
        it needs)."""
        for p in self._parking.take(key):
            if now >= p.deadline or p.waits >= self.cfg.park_max_waits:
                self._parking.drop("timeout")
                continue
            # What it waited for came: the timeout guards a wait that never ends, not a walk
            # through many records that each come (on a loaded cluster, ~0.5 s each).
            p.waits += 1
            p.deadline = now + self.cfg.park_timeout_s
            self.stats["resimulated"] += 1
            self._process(p, now)

    def on_leased(self, device_id: str, ip: str, block: tuple[int, int] | None, now: float) -> None:
        """The cluster answered a SNAT lease (None: refused, the packets waiting time out)."""
        if (key := self._snat.answered(device_id, ip, block, self.state)) is not None:
            self._release(key, now)

    @property
    def parked(self) -> int:
        return self._parking.count

    # ---- timers -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Periodic work: flow expiry, state expiry, parked timeouts, interest expiry, retrying
        bindings whose interface was missing."""
        self.view.now = now
        # a flow idles for idle_timeout_s before it goes: checking 10 times in that span is
        # plenty, and spares a dump of the whole table every tick
        self._installer.expire(now, self.cfg.idle_timeout_s / 10)
        if dead := self.state.expire(now):
            self._invalidate(dead, why="state expiry")
        self._parking.expire(now)
        self._expire_interests(now)
        self._invalidate(self._bindings.replug(), why="replug")

    def _expire_interests(self, now: float) -> None:
        waited = self._parking.waited()
        for i in self.view.idle(now, self.cfg.interest_idle_s):
            if i in waited or (i.anchor is not None and self.flows.has_tag(i.anchor)):
                continue
            self.view.forget(i)
            self._requests.append(Unsubscribe(i))
        self.metrics.interests.set(len(self.view.loaded))


__all__ = ["Agent", "AgentConfig", "PushState", "Request", "Subscribe", "Unsubscribe"]
