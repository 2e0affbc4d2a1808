"""The reference datapath: pure Python, no privileges, deterministic time.

Same semantics as the kernel program (see ``netloom.datapath.base``): tuple-space search over
the masks in use (most bits first, then first seen), per-flow counters, idle/hard expiry against
an explicit ``now``, a bounded table that evicts the least recently used flow, upcalls on miss /
TTL / MTU / userspace / IP options, the edge checks (tagged frames, RFC 1812 5.2.2) and the
reference conntrack table (``netloom.datapath.conntrack``) for every packet entering from a
local port. ``receive`` is what the kernel does for one arriving frame; it returns the
outcomes, and ``sent`` collects everything the datapath emitted (also via ``execute``).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from netloom.datapath import frames
from netloom.datapath.base import (
    DatapathCounters,
    Fate,
    Outcome,
    PortInfo,
    PortKind,
    TunnelSettings,
    Upcall,
    UpcallLimit,
    UpcallReason,
    check_mtu,
    flow_id,
    port_kind,
)
from netloom.datapath.conntrack import (
    Conntrack,
    ConntrackSettings,
    CtEntry,
    CtTuple,
    closes,
    commit_delivered,
    commit_sent,
)
from netloom.datapath.sizing import DEFAULT_FLOWS
from netloom.datapath.tss import MaskTable
from netloom.errors import InvalidInput, NotFound
from netloom.flows.model import (
    VNI_CT,
    VNI_CT_CLOSE,
    VNI_FLAGS,
    Action,
    CtCommit,
    DecTtl,
    Drop,
    Flow,
    FlowKey,
    FlowMask,
    FlowStats,
    Output,
    PopVlan,
    PushVlan,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
    Tunnel,
    Userspace,
    check_action,
    check_flow,
)
from netloom.ratelimit import PortLimiter

MAX_MASKS = 32


@dataclass
class _Entry:
    flow: Flow
    mask_id: int
    created: float
    last_used: float
    packets: int = 0
    bytes: int = 0
    seq: int = 0  # install order, breaks LRU ties deterministically


class MemoryDatapath:
    """Pure-Python datapath (see module docstring)."""

    def __init__(
        self,
        max_flows: int = DEFAULT_FLOWS,
        clock: float | None = None,
        conntrack: ConntrackSettings | None = None,
    ) -> None:
        if max_flows < 1:
            raise InvalidInput("max_flows must be >= 1", field="max_flows")
        self.max_flows = max_flows
        self._clock = clock  # fixed time for tests; None = time.monotonic()
        self._ports: dict[int, PortInfo] = {}
        self._next_port = 1
        self._masks = MaskTable(MAX_MASKS)
        self._tables: dict[int, dict[FlowKey, _Entry]] = {}
        self._order: list[tuple[int, FlowMask]] = []
        self._seq = 0
        self._vni: dict[int, int] = {}
        self._tunnel: TunnelSettings | None = None
        self._tunnel_port = 0
        self._upcalls: deque[Upcall] = deque()
        self._limiter: PortLimiter | None = None
        self._throttled = 0
        self._edge_drops = {"tagged": 0, "ip_header": 0}  # frames.edge_drop's reasons
        self.sent: list[Outcome] = []
        self.evictions = 0
        # (last_used, seq, entry), a lazy heap: an entry's item may be older than its use
        # (re-pushed when it comes to the top) or outlive it (dropped there)
        self._lru: list[tuple[float, int, _Entry]] = []
        self._lru_rebuild = False  # a packet came with an earlier `now`: the heap is unsound
        self.ct = Conntrack(conntrack)

    # ---- time -------------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        if now is not None:
            return now
        return self._clock if self._clock is not None else time.monotonic()

    def set_clock(self, now: float) -> None:
        self._clock = now

    # ---- ports ------------------------------------------------------------------------------

    def add_port(self, ifname: str, kind: PortKind, *, mtu: int | None = None) -> int:
        if not ifname:
            raise InvalidInput("interface name is empty", field="ifname")
        kind = port_kind(kind)
        check_mtu(mtu)
        for p in self._ports.values():
            if p.ifname == ifname:
                return p.port
        port = self._next_port
        self._next_port += 1
        self._ports[port] = PortInfo(port, ifname, PortKind(kind), 1500 if mtu is None else mtu)
        return port

    def remove_port(self, port: int) -> None:
        if self._ports.pop(port, None) is None:
            raise NotFound(f"no port {port}", field="port")
        if port == self._tunnel_port:
            self._tunnel_port = 0

    def port_present(self, port: int) -> bool:
        return port in self._ports

    def ports(self) -> list[PortInfo]:
        return list(self._ports.values())

    def set_tunnel(self, settings: TunnelSettings) -> int:
        if not 0 < settings.udp_port < 65536:
            raise InvalidInput("bad VXLAN UDP port", field="udp_port")
        self._tunnel = settings
        self._tunnel_port = self.add_port(settings.ifname, PortKind.TUNNEL, mtu=settings.mtu)
        return self._tunnel_port

    def bind_tunnel_key(self, vni: int, port: int) -> None:
        if not 0 < vni < 1 << 24:
            raise InvalidInput(f"VNI {vni} out of range (24 bits, RFC 7348)", field="vni")
        if port not in self._ports:
            raise NotFound(f"no port {port}", field="port")
        self._vni[vni] = port

    def unbind_tunnel_key(self, vni: int) -> None:
        self._vni.pop(vni, None)

    # ---- flows ------------------------------------------------------------------------------

    def _reorder(self) -> None:
        self._order = self._masks.ordered()

    def install(self, flows: Sequence[Flow], now: float | None = None) -> None:
        t = self._now(now)
        for f in flows:
            check_flow(f, MAX_ACTIONS)
        for f in flows:
            self._install_one(f, t)

    def _install_one(self, f: Flow, t: float) -> None:
        mask, key = flow_id(f)
        mid = self._masks.id_of(mask)
        if mid is not None and key in self._tables.get(mid, {}):
            self._seq += 1
            self._add(_Entry(f, mid, t, t, seq=self._seq), key)
            return
        if self._count() >= self.max_flows:
            self._evict_lru()
        mid, new = self._masks.acquire(mask)
        if new:
            self._tables[mid] = {}
            self._reorder()
        self._seq += 1
        self._add(_Entry(f, mid, t, t, seq=self._seq), key)

    def _add(self, e: _Entry, key: FlowKey) -> None:
        self._tables[e.mask_id][key] = e
        heapq.heappush(self._lru, (e.last_used, e.seq, e))
        if len(self._lru) > 2 * self._count() + 64:  # items of deleted flows pile up
            self._lru_rebuild = True

    def _count(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def _live(self, e: _Entry) -> bool:
        return self._tables.get(e.mask_id, {}).get(flow_id(e.flow)[1]) is e

    def _evict_lru(self) -> None:
        """Remove the entry of least (last use, install order), in O(log n) amortized."""
        if self._lru_rebuild:
            live = (e for t in self._tables.values() for e in t.values())
            self._lru = [(e.last_used, e.seq, e) for e in live]
            heapq.heapify(self._lru)
            self._lru_rebuild = False
        while True:
            used, _seq, e = self._lru[0]
            if not self._live(e):
                heapq.heappop(self._lru)
            elif used != e.last_used:  # used since: back in at its last use
                heapq.heapreplace(self._lru, (e.last_used, e.seq, e))
            else:
                heapq.heappop(self._lru)
                self._remove(e)
                self.evictions += 1
                return

    def _remove(self, e: _Entry) -> None:
        _mask, key = flow_id(e.flow)
        del self._tables[e.mask_id][key]
        if self._masks.release(e.mask_id):
            del self._tables[e.mask_id]
            self._reorder()

    def _find(self, key: FlowKey, mask: FlowMask) -> _Entry | None:
        mid = self._masks.id_of(mask)
        if mid is None:
            return None
        return self._tables[mid].get(key.masked(mask))

    def modify(self, flows: Sequence[Flow]) -> None:
        entries = []
        for f in flows:
            check_flow(f, MAX_ACTIONS)
            e = self._find(f.key, f.mask)
            if e is None:
                raise NotFound("no such flow to modify", field="flows")
            entries.append((e, f))
        for e, f in entries:
            e.flow = f

    def delete(self, matches: Sequence[tuple[FlowKey, FlowMask]]) -> int:
        n = 0
        for key, mask in matches:
            e = self._find(key, mask)
            if e is not None:
                self._remove(e)
                n += 1
        return n

    def dump(self, now: float | None = None) -> list[tuple[Flow, FlowStats]]:
        t = self._now(now)
        return [
            (e.flow, FlowStats(e.packets, e.bytes, max(0.0, t - e.last_used)))
            for table in self._tables.values()
            for e in table.values()
        ]

    def expire(self, now: float | None = None) -> list[Flow]:
        t = self._now(now)
        dead = [
            e
            for table in self._tables.values()
            for e in table.values()
            if _expired(e.flow, e.created, e.last_used, t)
        ]
        for e in dead:
            self._remove(e)
        return [e.flow for e in dead]

    def lookup(self, key: FlowKey) -> Flow | None:
        """Tuple-space search (no counters): the flow a packet with ``key`` would hit."""
        e = self._lookup(key)
        return e.flow if e else None

    def _lookup(self, key: FlowKey) -> _Entry | None:
        for mid, mask in self._order:
            e = self._tables[mid].get(key.masked(mask))
            if e is not None:
                return e
        return None

    # ---- packets ----------------------------------------------------------------------------

    def receive(
        self, packet: bytes, in_port: int, *, tun_key: int = 0, now: float | None = None
    ) -> list[Outcome]:
        """Process one frame arriving on ``in_port`` as the kernel would."""
        port = self._ports.get(in_port)
        if port is None:
            raise NotFound(f"no port {in_port}", field="in_port")
        if port.kind == PortKind.TUNNEL:
            vni = tun_key & ~VNI_FLAGS  # the receiver's conntrack duties ride on spare bits
            if vni in self._vni:
                out = Output(self._vni[vni], ct=bool(tun_key & VNI_CT))
                close = bool(tun_key & VNI_CT_CLOSE)
                return self._run(
                    bytearray(packet), in_port, vni, (out,), 0, self._now(now), ct_close=close
                )
            tun_key = vni
        return self._lookup_and_act(packet, in_port, tun_key, self._now(now))

    def set_upcall_limit(self, limit: UpcallLimit | None) -> None:
        self._limiter = PortLimiter(limit.rate, limit.burst) if limit else None

    def conntrack_entry(self, t: CtTuple) -> CtEntry | None:
        """The live entry of ``t`` (read only: no refresh)."""
        e = self.ct.entries().get(t)
        return e if e is not None and e.expires > self._now(None) else None

    def set_conntrack(self, settings: ConntrackSettings) -> None:
        """Conntrack lifetimes and bound (entries kept; a smaller bound applies on insert)."""
        self.ct.settings = settings

    def counters(self) -> DatapathCounters:
        return DatapathCounters(
            upcalls_throttled=self._throttled,
            ct_commits=self.ct.commits,
            ct_lost=self.ct.lost,
            ip_header_errors=self._edge_drops["ip_header"],
            tagged_dropped=self._edge_drops["tagged"],
        )

    def _lookup_and_act(self, packet: bytes, in_port: int, tun_key: int, t: float) -> list[Outcome]:
        pr = frames.parse(packet, in_port, tun_key)
        key, close = pr.key, False
        local = self._is_local(in_port)
        drop = frames.edge_drop(packet, pr) if local else ""
        if drop:
            self._edge_drops[drop] += 1
            return [Outcome(Fate.DROP)]
        if pr.l4_off and key.eth_type == frames.ETH_P_IP and local:
            flags = frames.tcp_flags(packet, pr)
            key = replace(key, ct_state=self.ct.lookup(key, in_port, flags, t))
            close = closes(key, flags)
        if local and frames.has_options(pr):  # no flow decides for a packet with IP options
            reason = UpcallReason.OPTIONS
            return [self._upcall(bytes(packet), in_port, tun_key, reason, 0, t, key.ct_state)]
        e = self._lookup(key)
        if e is None:
            miss = UpcallReason.MISS
            return [self._upcall(bytes(packet), in_port, tun_key, miss, 0, t, key.ct_state)]
        e.packets += 1
        e.bytes += len(packet)
        self._lru_rebuild |= t < e.last_used
        e.last_used = t
        return self._run(
            bytearray(packet), in_port, tun_key, e.flow.actions, e.flow.cookie, t, ct_close=close
        )

    def _is_local(self, port: int) -> bool:
        """A port whose packets are conntracked (a VM, an uplink, an internal port)."""
        info = self._ports.get(port)
        return info is not None and info.kind != PortKind.TUNNEL

    def _upcall(
        self,
        pkt: bytes,
        in_port: int,
        tun_key: int,
        reason: UpcallReason,
        cookie: int,
        t: float,
        ct_state: int = 0,
    ) -> Outcome:
        if self._limiter is not None and not self._limiter.allow(in_port, t):
            self._throttled += 1
            return Outcome(Fate.DROP)
        self._upcalls.append(Upcall(pkt, in_port, reason, tun_key, cookie, len(pkt), ct_state))
        return Outcome(Fate.UPCALL, pkt, reason=reason)

    def _run(
        self,
        b: bytearray,
        in_port: int,
        tun_key: int,
        actions: Sequence[Action],
        cookie: int = 0,
        t: float = 0.0,  # the packet's time: the upcall limiter's and conntrack's clock
        *,
        ct_close: bool = False,  # a tracked TCP FIN/RST: deliveries shorten the reply entry
    ) -> list[Outcome]:
        out: list[Outcome] = []
        pr = frames.parse(bytes(b), in_port, tun_key)
        flags = frames.tcp_flags(b, pr)
        for a in actions:
            if isinstance(a, (SetEthSrc, SetEthDst)):
                off = 6 if isinstance(a, SetEthSrc) else 0
                b[off : off + 6] = a.mac.to_bytes(6, "big")
            elif isinstance(a, (SetIpSrc, SetIpDst)):
                frames.set_ip(b, pr, 12 if isinstance(a, SetIpSrc) else 16, a.ip)
            elif isinstance(a, (SetTpSrc, SetTpDst)):
                frames.set_tp(b, pr, 0 if isinstance(a, SetTpSrc) else 2, a.port)
            elif isinstance(a, DecTtl):
                ttl = frames.ttl(b, pr)
                if ttl is not None and ttl <= 1:
                    out.append(
                        self._upcall(bytes(b), in_port, tun_key, UpcallReason.TTL, cookie, t)
                    )
                    return out
                if ttl is not None:
                    frames.dec_ttl(b, pr)
            elif isinstance(a, (PushVlan, PopVlan)):
                if isinstance(a, PushVlan):
                    frames.push_vlan(b, a.vid)
                else:
                    frames.pop_vlan(b)
                pr = frames.parse(bytes(b), in_port, tun_key)
            elif isinstance(a, CtCommit):
                commit_sent(self.ct, bytes(b), in_port, flags, t)
            elif isinstance(a, (Output, Tunnel)):
                o = self._send(b, pr, a, (in_port, tun_key, cookie), t, ct_close=ct_close)
                out.append(o)
                if o.fate in (Fate.UPCALL, Fate.DROP):
                    return out
            elif isinstance(a, Userspace):
                out.append(
                    self._upcall(bytes(b), in_port, tun_key, UpcallReason.USERSPACE, cookie, t)
                )
                return out
            elif isinstance(a, Drop):
                break
        if not out:
            out.append(Outcome(Fate.DROP))
        return out

    def _send(
        self,
        b: bytearray,
        pr: frames.Parsed,
        a: Output | Tunnel,
        origin: tuple[int, int, int],  # in_port, tun_key, cookie
        t: float,
        *,
        ct_close: bool,
    ) -> Outcome:
        pnum = a.port if isinstance(a, Output) else self._tunnel_port
        port = self._ports.get(pnum)
        if port is None:
            return Outcome(Fate.DROP)
        if port.mtu and len(b) - pr.l3_off > port.mtu:
            in_port, tun_key, cookie = origin
            return self._upcall(bytes(b), in_port, tun_key, UpcallReason.MTU, cookie, t)
        if isinstance(a, Output):
            commit_delivered(self.ct, bytes(b), a, t, close=ct_close)
            o = Outcome(Fate.OUTPUT, bytes(b), port=pnum)
        else:
            vni = a.vni | (VNI_CT if a.ct else 0) | (VNI_CT_CLOSE if ct_close else 0)
            o = Outcome(Fate.TUNNEL, bytes(b), vni=vni, remote=a.remote)
        self.sent.append(o)
        return o

    # ---- agent side -------------------------------------------------------------------------

    def poll_upcalls(self, timeout: float = 0.0, max_count: int = 256) -> list[Upcall]:
        out: list[Upcall] = []
        while self._upcalls and len(out) < max_count:
            out.append(self._upcalls.popleft())
        return out

    def reinject(self, upcall: Upcall, now: float | None = None) -> list[Outcome]:
        """Look the parked packet up again (its flow is installed by now)."""
        pkt = frames.complete_l4_checksum(upcall.packet)
        return self._lookup_and_act(pkt, upcall.in_port, upcall.tun_key, self._now(now))

    def execute(self, packet: bytes, actions: Sequence[Action], in_port: int = 0) -> list[Outcome]:
        for a in actions:
            check_action(a)
        return self._run(bytearray(packet), in_port, 0, actions, t=self._now(None))

    def close(self) -> None:
        """Nothing to release."""


def _expired(f: Flow, created: float, last_used: float, now: float) -> bool:
    hard = bool(f.hard_timeout_s) and now - created >= f.hard_timeout_s
    return hard or (bool(f.idle_timeout_s) and now - last_used >= f.idle_timeout_s)


MAX_ACTIONS = 8  # as the kernel datapath (NL_MAX_ACTIONS)

__all__ = ["MAX_ACTIONS", "MAX_MASKS", "MemoryDatapath"]
