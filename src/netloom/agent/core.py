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
from netloom.agent.metrics import AgentMetrics
from netloom.agent.parking import ParkingLot
from netloom.agent.pushes import group_interests, push_hosts, push_keys
from netloom.agent.simlog import SimLog
from netloom.agent.snat import LeaseSnat, SnatLeases
from netloom.agent.tags import state_tags, topology_tags
from netloom.agent.tunnels import TunnelPeers
from netloom.agent.upcalls import UpcallPath
from netloom.agent.view import AgentView, Interest, related
from netloom.datapath.base import Datapath, PortKind, Upcall, UpcallLimit
from netloom.datapath.conntrack import ConntrackSettings
from netloom.model.neighbors import ARP_KIND
from netloom.model.records import Port, TunnelZone
from netloom.ratelimit import PortLimiter
from netloom.sim import Result, SimConfig, SimState
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
    simlog: bool = True  # record every simulation and flow event (agent/simlog.py)


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
        self._group_interests: set[Interest] = set()  # pinned for bound ports' port groups
        self.stats: dict[str, int] = dict.fromkeys(
            ("upcalls", "simulations", "installed", "invalidated", "expired", "rate_limited",
             "parked", "park_dropped", "resimulated", "pushed", "dropped"),
            0,
        )  # fmt: skip
        self._snat, self._arp = SnatLeases(), SharedArp(config.host_id)
        self.simlog = SimLog(enabled=config.simlog)
        self._parking = ParkingLot(
            config.park_per_key, config.park_total, self.stats, self.metrics, self.simlog
        )
        self._installer = FlowInstaller(datapath, self.flows, self.stats, self.metrics, self.simlog)
        self._path = UpcallPath(self)

    def handle_upcalls(self, upcalls: Iterable[Upcall], now: float) -> None:
        """Process a polled batch of upcalls (:meth:`UpcallPath.handle_upcalls`)."""
        self._path.handle_upcalls(upcalls, now)

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
        return self._installer.invalidate(tags, why, self.view.now)

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
                self._parking.drop("timeout", p, now)
                continue
            # What it waited for came: the timeout guards a wait that never ends, not a walk
            # through many records that each come (on a loaded cluster, ~0.5 s each).
            p.waits += 1
            p.deadline = now + self.cfg.park_timeout_s
            self.stats["resimulated"] += 1
            self._path._process(p, now)

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
