"""The working state of one simulation: the packet's current headers and the accumulators.

One :class:`Ctx` lives for one ``simulate`` call. Devices rewrite its header fields in place;
a flood runs its branches one after the other, saving and restoring the headers with
:meth:`Ctx.snapshot`/:meth:`Ctx.restore`. Everything else (fields read, tags, state changes,
generated packets, trace, egress) accumulates across branches.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from netloom.packet.headers import ETH_TYPE_ARP, ETH_TYPE_IPV4, IPPROTO_ICMP, Frame, Icmp
from netloom.sim.result import SimConfig
from netloom.sim.state import SimState, StateChange
from netloom.sim.trace import RawStep

if TYPE_CHECKING:
    from netloom.sim.compiled import CompiledTopology, CPort

# ICMP types that carry a quoted datagram (RFC 792): unreachable, source quench, redirect,
# time exceeded, parameter problem.
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMP_ECHO_TYPES = frozenset({0, 8})
ETH_MCAST = 1 << 40  # the I/G bit of the first octet of a 48-bit MAC
# the port bits an equal-cost path choice reads (64 values of each port spread connections)
ECMP_PORT_MASK = 0x3F
_INNER = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")

# (proto, src, sport, dst, dport) of the datagram quoted in an ICMP error
Inner = tuple[int, int, int, int, int]
Snapshot = tuple[Any, ...]


class Egress:
    """A copy of the packet leaving through an exterior port, with its final headers."""

    __slots__ = ("headers", "inner", "port_id", "ttl_decs")

    def __init__(
        self, port_id: str, headers: tuple[int, ...], ttl_decs: int, inner: Inner | None
    ) -> None:
        self.port_id = port_id
        self.headers = headers
        self.ttl_decs = ttl_decs
        self.inner = inner


class Ctx:
    """The packet's current headers and the accumulators, for one ``simulate`` call."""

    __slots__ = (
        "cacheable",
        "cfg",
        "changes",
        "consumed",
        "ct_commit",
        "ct_seen",
        "ct_state",
        "devices",
        "egress",
        "eth_dst",
        "eth_src",
        "eth_type",
        "frame",
        "frame_inner",
        "generated",
        "icmp_id",
        "in_port",
        "in_port_id",
        "inner",
        "ip_dst",
        "ip_src",
        "is_ip",
        "nat_state",
        "now",
        "orig_icmp_id",
        "out_port",
        "proto",
        "read",
        "state",
        "tags",
        "topo",
        "tp_bits",
        "tp_dst",
        "tp_src",
        "trace",
        "ttl",
        "ttl_decs",
        "vlan",
        "zone",
    )
    in_port: CPort | None
    out_port: CPort | None
    inner: Inner | None

    def __init__(
        self,
        frame: Frame,
        in_port_id: str,
        topo: CompiledTopology,
        state: SimState,
        now: float,
        cfg: SimConfig,
        ct_state: int = 0,
    ) -> None:
        self.frame, self.in_port_id, self.topo = frame, in_port_id, topo
        self.state, self.now, self.cfg = state, now, cfg
        self.ct_state = ct_state  # the datapath's conntrack answer (CT_* bits; 0: untracked)
        self.ct_commit = False  # a new forward connection the flow commits in the kernel
        self.nat_state = False  # a stateful NAT rule read bindings: the agent's conntrack
        self.read = 1  # in_port
        self.tp_bits = 0  # bits of both L4 ports read without reading the whole ports
        self.tags: set[object] = set()
        self.changes: list[StateChange] = []
        self.generated: list[tuple[str, bytes]] = []
        self.trace: list[RawStep] = []
        self.egress: list[Egress] = []
        # The datapaths send every packet with IPv4 options to the agent (no flow key field
        # holds them, so no flow may decide for one): such a decision is never a flow.
        self.cacheable = not (frame.ip is not None and frame.ip.options)
        self.consumed = False
        self.ct_seen: dict[tuple[str, str, int, int, int, int, int], bool] = {}
        self.devices = self.ttl_decs = 0
        self.zone = ""
        self.in_port = self.out_port = self.inner = None
        self._load(frame)
        self.frame_inner = self.inner
        self.orig_icmp_id = self.icmp_id

    def _load(self, frame: Frame) -> None:
        """The packet's headers as the simulation reads and rewrites them."""
        eth = frame.eth
        self.eth_src, self.eth_dst, self.eth_type = eth.src, eth.dst, eth.ethertype
        self.vlan = eth.vlan.vid if eth.vlan is not None else 0
        self.icmp_id = 0
        ip = frame.ip
        if ip is not None:
            self.is_ip = True
            self.ip_src = ip.src
            self.ip_dst = ip.dst
            self.proto = ip.proto
            self.ttl = ip.ttl
            l4 = frame.l4
            if l4 is None:
                self.tp_src = self.tp_dst = 0
            elif type(l4) is Icmp:
                self.tp_src = l4.type
                self.tp_dst = l4.code
                if l4.type in ICMP_ECHO_TYPES:
                    self.icmp_id = l4.rest >> 16
                elif l4.type in ICMP_ERROR_TYPES:
                    self.inner = quoted(frame.payload)
            else:
                self.tp_src = l4.sport  # type: ignore[union-attr]
                self.tp_dst = l4.dport  # type: ignore[union-attr]
        else:
            self.is_ip = False
            self.ttl = self.tp_src = self.tp_dst = 0
            arp = frame.arp
            if arp is not None:  # OVS convention: ARP spa/tpa/op in the IP fields
                self.ip_src, self.ip_dst, self.proto = arp.spa, arp.tpa, arp.op
            else:
                self.ip_src = self.ip_dst = self.proto = 0

    # -- branch save/restore -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return (
            self.eth_src,
            self.eth_dst,
            self.ip_src,
            self.ip_dst,
            self.tp_src,
            self.tp_dst,
            self.icmp_id,
            self.ttl,
            self.ttl_decs,
            self.inner,
            self.devices,
            self.in_port,
            self.out_port,
        )

    def restore(self, s: Snapshot) -> None:
        (
            self.eth_src,
            self.eth_dst,
            self.ip_src,
            self.ip_dst,
            self.tp_src,
            self.tp_dst,
            self.icmp_id,
            self.ttl,
            self.ttl_decs,
            self.inner,
            self.devices,
            self.in_port,
            self.out_port,
        ) = s

    def headers(self) -> tuple[int, ...]:
        return (
            self.eth_src,
            self.eth_dst,
            self.ip_src,
            self.ip_dst,
            self.tp_src,
            self.tp_dst,
            self.icmp_id,
        )

    # -- helpers -------------------------------------------------------------------------------

    def step(self, kind: str, id: str, name: str, decision: str, detail: str = "") -> None:
        self.trace.append((kind, id, name, decision, detail))

    def flow_hash(self) -> int:
        """A deterministic hash of the 5-tuple (ECMP, NAT address choice). Python's hash of a
        tuple of ints does not depend on PYTHONHASHSEED, so every host computes the same."""
        self.read |= 0xFC0  # ip src/dst, proto, frag, tp src/dst
        return hash((self.ip_src, self.ip_dst, self.proto, self.tp_src, self.tp_dst)) & 0x7FFFFFFF

    def ecmp_hash(self) -> int:
        """The equal-cost path choice's hash: addresses, protocol and the low
        :data:`ECMP_PORT_MASK` bits of each port. A connection always hashes the same and the
        connections between two hosts spread over paths, while the flow masks only those port
        bits: a host's new connections reuse a few flows instead of one upcall each (a full
        5-tuple hash made every connection through the gateways an exact-match flow)."""
        self.read |= 0x3C0  # ip src/dst, proto, frag
        self.tp_bits |= ECMP_PORT_MASK
        m = ECMP_PORT_MASK
        key = (self.ip_src, self.ip_dst, self.proto, self.tp_src & m, self.tp_dst & m)
        return hash(key) & 0x7FFFFFFF

    def l4_ports(self) -> tuple[int, int]:
        """Ports as conntrack/NAT see them: TCP/UDP ports, the ICMP echo id, else 0."""
        if self.proto == IPPROTO_ICMP:
            # The echo id identifies the requester's end: the source side of a request, the
            # destination side of a reply, so a reply's tuple is the request's reversed.
            if self.tp_src == 8:
                self.cacheable = False  # the id is not part of a datapath flow key
                return self.icmp_id, 0
            if self.tp_src == 0:
                self.cacheable = False
                return 0, self.icmp_id
            return 0, 0
        if self.frame.l4 is None:
            return 0, 0
        return self.tp_src, self.tp_dst

    @property
    def is_arp(self) -> bool:
        return self.eth_type == ETH_TYPE_ARP

    @property
    def is_ipv4(self) -> bool:
        return self.eth_type == ETH_TYPE_IPV4 and self.is_ip


def quoted(payload: bytes) -> Inner | None:
    """(proto, src, sport, dst, dport) of the datagram an ICMP error quotes, or None."""
    if len(payload) < 20:
        return None
    vihl, _tos, _tl, _id, _frag, _ttl, proto, _cs, src, dst = _INNER.unpack_from(payload, 0)
    ihl = (vihl & 0xF) * 4
    sport = dport = 0
    if len(payload) >= ihl + 4 and proto in (6, 17):
        sport, dport = _PORTS.unpack_from(payload, ihl)
    elif len(payload) >= ihl + 8 and proto == IPPROTO_ICMP and payload[ihl] in ICMP_ECHO_TYPES:
        ident = _PORTS.unpack_from(payload, ihl + 4)[0]
        sport, dport = (ident, 0) if payload[ihl] == 8 else (0, ident)
    return proto, src, sport, dst, dport


__all__ = [
    "ECMP_PORT_MASK",
    "ICMP_ECHO_TYPES",
    "ICMP_ERROR_TYPES",
    "Ctx",
    "Egress",
    "Inner",
    "Snapshot",
    "quoted",
]
