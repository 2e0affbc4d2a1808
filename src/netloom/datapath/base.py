"""The `Datapath` protocol: what the agent needs from a packet forwarder.

Two implementations share these semantics exactly (the same test vectors run against both):
``netloom.datapath.memory.MemoryDatapath`` (pure Python, the reference) and
``netloom.datapath.bpf.BpfDatapath`` (tc eBPF on the host's interfaces).

Semantics every implementation keeps:

* **Ports** are interfaces the datapath owns, numbered by the datapath (the BPF datapath uses the
  ifindex, the memory one a counter). A flow's ``in_port`` and ``Output.port`` are these numbers.
* **Flows** are ``(key, mask) -> actions`` (``netloom.flows.model``). A flow's identity is
  ``(mask, key & mask)``: installing the same identity again replaces it.
* **Priority** (tuple-space search): the masks in use are searched from the most specific (most
  bits set) to the least; among masks with the same number of bits, the one first seen wins. The
  first mask under which the packet's masked key has a flow decides. The simulation produces
  non-overlapping megaflows, so this order only matters for hand-written overlaps.
* **Actions** run in order; a packet is sent by ``Output``/``Tunnel`` (several outputs clone);
  no output means drop. ``DecTtl`` on TTL <= 1 and an output whose port MTU the packet exceeds
  turn into an upcall (reason ``ttl`` / ``mtu``) so the agent can answer with ICMP (RFC 792,
  RFC 1191) instead of a silent drop.
* **Upcalls**: a miss parks the packet with the agent (it is not forwarded); the agent installs a
  flow and calls ``reinject`` (look it up again, as if it had just arrived) or ``execute``.
* **Table size**: bounded; when full, installing evicts the least recently used flow. Never an
  error, never a crash.
* **Conntrack** (``netloom.datapath.conntrack``): IPv4 packets entering from a local port get
  ``ct_state`` from a bounded LRU table before the flow lookup; ``CtCommit`` and outputs with
  ``ct`` fill it (the receiver of a ``Tunnel(ct=True)`` commits on the ``VNI_CT`` bit).
* **Edge checks** (before conntrack and the flow lookup, for packets entering from a local
  port): a frame carrying an 802.1Q or 802.1ad tag is dropped (no port is tagged); an IPv4
  packet a router must not forward (RFC 1812 5.2.2: version, IHL, total length, header
  checksum) is dropped; one with IPv4 options is an upcall (reason ``options``): no flow
  decides for it, the agent executes the simulation's decision per packet.
* **Timeouts**: ``idle_timeout_s`` (since last hit, or since install if never hit) and
  ``hard_timeout_s`` (since install); 0 = none. ``expire(now)`` removes what has timed out, in
  one batched dump.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from netloom.datapath.conntrack import ConntrackSettings, CtEntry, CtTuple
from netloom.errors import InvalidInput
from netloom.flows.model import Action, Flow, FlowKey, FlowMask, FlowStats


class PortKind(enum.IntEnum):
    """What an interface is for (values are shared with the BPF program's ``nl_port_kind``)."""

    VM = 1  # host side of a VM's veth: delivery uses bpf_redirect_peer
    TUNNEL = 2  # the host's VXLAN device (collect_md / external)
    UPLINK = 3  # a gateway's physical-side interface
    INTERNAL = 4  # anything else the host forwards to (e.g. a metadata/agent interface)


class UpcallReason(enum.IntEnum):
    """Why a packet went to the agent (values shared with ``nl_upcall_reason``)."""

    MISS = 1
    TTL = 2
    MTU = 3
    USERSPACE = 4
    OPTIONS = 5  # IPv4 options: simulated and executed per packet, never a flow


@dataclass(frozen=True, slots=True)
class PortInfo:
    port: int
    ifname: str
    kind: PortKind
    mtu: int  # L3 MTU checked on output; 0 = unchecked


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    """The host's VXLAN endpoint (RFC 7348): its underlay address, host byte order, and UDP
    port. ``mtu`` is the overlay MTU (underlay MTU - 50 bytes of VXLAN/UDP/IP/Ethernet)."""

    local_ip: int
    udp_port: int = 4789
    mtu: int = 1450
    ifname: str = "nlvx0"
    # Encapsulate/decapsulate unicast IPv4 in the datapath itself when it can (the bpf
    # datapath: on the NIC holding local_ip); the VXLAN device stays for everything else.
    bpf_encap: bool = True


@dataclass(frozen=True, slots=True)
class Upcall:
    packet: bytes  # as captured (may be shorter than pkt_len for GSO super-packets)
    in_port: int
    reason: UpcallReason
    tun_key: int = 0
    cookie: int = 0  # the flow's cookie for ttl/mtu/userspace upcalls, 0 for a miss
    pkt_len: int = 0
    ct_state: int = 0  # what the datapath's conntrack said (CT_* of flows.model; 0: untracked)

    @property
    def truncated(self) -> bool:
        return self.pkt_len > len(self.packet)


class Fate(enum.Enum):
    OUTPUT = "output"
    TUNNEL = "tunnel"
    DROP = "drop"
    UPCALL = "upcall"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one packet (one entry per copy sent; test vectors compare these)."""

    fate: Fate
    packet: bytes = b""
    port: int = 0  # OUTPUT
    vni: int = 0  # TUNNEL
    remote: int = 0  # TUNNEL (host order)
    reason: UpcallReason | None = None  # UPCALL


def port_kind(kind: object) -> PortKind:
    """Validate a port kind (InvalidInput, not ValueError, for the caller to report)."""
    try:
        return PortKind(kind)  # type: ignore[arg-type]  # validated right here
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"unknown port kind {kind!r}", field="kind") from exc


def check_mtu(mtu: int | None) -> None:
    if mtu is not None and not 0 <= mtu <= 65535:
        raise InvalidInput(f"MTU {mtu} out of range", field="mtu")


def flow_id(flow: Flow) -> tuple[FlowMask, FlowKey]:
    """A flow's identity: its mask and its key under that mask."""
    return flow.mask, flow.key.masked(flow.mask)


def mask_bits(mask: FlowMask) -> int:
    """Number of bits a mask looks at: the tuple-space search priority (more = first)."""
    return sum(int(getattr(mask, f)).bit_count() for f in mask.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UpcallLimit:
    """Per-port upcall budget enforced by the datapath itself, before the agent sees anything
    (a token bucket: ``rate`` upcalls per second, ``burst`` back to back)."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.rate <= 1_000_000:
            raise InvalidInput(f"upcall rate {self.rate} out of range (1..1e6 per s)", field="rate")
        if not 1 <= self.burst <= 1_000_000:
            raise InvalidInput(f"upcall burst {self.burst} out of range (1..1e6)", field="burst")


@dataclass(frozen=True, slots=True)
class DatapathCounters:
    """What the datapath did without the agent seeing it (totals since load)."""

    upcalls_throttled: int = 0  # over their port's UpcallLimit
    upcalls_lost: int = 0  # no room in the upcall queue
    ct_commits: int = 0  # conntrack entries created (CtCommit, receiver commits)
    ct_lost: int = 0  # TCP packets without SYN that found no entry (evicted or expired)
    ip_header_errors: int = 0  # IPv4 headers a router must not forward (RFC 1812 5.2.2)
    tagged_dropped: int = 0  # 802.1Q / 802.1ad tagged frames from a local port


@runtime_checkable
class Datapath(Protocol):
    """The operations the agent uses; see the module docstring for the shared semantics."""

    def add_port(self, ifname: str, kind: PortKind, *, mtu: int | None = None) -> int:
        """Start forwarding for ``ifname``; returns its datapath port number."""
        ...

    def remove_port(self, port: int) -> None: ...

    def port_present(self, port: int) -> bool:
        """Whether ``port``'s interface still exists (a VM's tap goes when the VM does)."""
        ...

    def ports(self) -> list[PortInfo]: ...

    def set_tunnel(self, settings: TunnelSettings) -> int:
        """Set the VXLAN endpoint (creating the collect_md device if needed); returns its port."""
        ...

    def bind_tunnel_key(self, vni: int, port: int) -> None:
        """Packets arriving from the tunnel with ``vni`` go straight to local ``port``."""
        ...

    def unbind_tunnel_key(self, vni: int) -> None: ...

    def install(self, flows: Sequence[Flow]) -> None:
        """Install (or replace, resetting stats) flows in one batch."""
        ...

    def modify(self, flows: Sequence[Flow]) -> None:
        """Replace the actions/timeouts/cookie of existing flows, keeping their stats."""
        ...

    def delete(self, matches: Sequence[tuple[FlowKey, FlowMask]]) -> int:
        """Delete flows by (key, mask); returns how many existed."""
        ...

    def dump(self) -> list[tuple[Flow, FlowStats]]: ...

    def expire(self, now: float | None = None) -> list[Flow]:
        """Remove idle/hard timed-out flows (``now``: monotonic seconds); return them."""
        ...

    def poll_upcalls(self, timeout: float = 0.0, max_count: int = 256) -> list[Upcall]: ...

    def set_upcall_limit(self, limit: UpcallLimit | None) -> None:
        """Enforce ``limit`` on every port's upcalls (None: unlimited)."""
        ...

    def counters(self) -> DatapathCounters: ...

    def set_conntrack(self, settings: ConntrackSettings) -> None:
        """Conntrack lifetimes (and, where the table can be resized live, its bound)."""
        ...

    def conntrack_entry(self, t: CtTuple) -> CtEntry | None:
        """The live conntrack entry of ``t`` (read only), None if absent or expired."""
        ...

    def reinject(self, upcall: Upcall) -> object:
        """Send a parked packet through the flow table again (after installing its flow).
        Returns an implementation's report (memory: the outcomes; kernel: None)."""
        ...

    def execute(self, packet: bytes, actions: Sequence[Action], in_port: int = 0) -> object:
        """Packet-out: apply ``actions`` to ``packet`` (e.g. an ARP/ICMP reply). Returns an
        implementation's report (memory: the outcomes; kernel: None)."""
        ...

    def close(self) -> None:
        """Release this process's handles; kernel state (flows, pins) stays."""
        ...


__all__ = [
    "Datapath",
    "DatapathCounters",
    "Fate",
    "Outcome",
    "PortInfo",
    "PortKind",
    "TunnelSettings",
    "Upcall",
    "UpcallLimit",
    "UpcallReason",
    "check_mtu",
    "flow_id",
    "mask_bits",
    "port_kind",
]
