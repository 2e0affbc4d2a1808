"""Datapath flows: the contract between the agent (which translates simulation results) and the
datapaths (memory and bpf), which must give a packet the same fate for the same flows.

A flow is ``(key, mask) -> actions``: a packet matches when ``packet_key & mask == key & mask``
field by field. Every field is an unsigned integer (MACs as 48-bit, IPv4 as 32-bit host order),
which keeps hashing cheap in Python and maps 1:1 onto the BPF C struct. The mask holds exactly
the bits the simulation read (a megaflow); fields it never looked at are 0 = wildcard.

Field meanings follow OVS's conventions: for ICMP, ``tp_src``/``tp_dst`` carry type/code;
``ip_frag`` is 0 (not a fragment), 1 (first fragment), 2 (later fragment).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

ETH_ALL = (1 << 48) - 1
IP_ALL = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class FlowKey:
    in_port: int = 0  # datapath port number (the agent's numbering, e.g. ifindex)
    tun_key: int = 0  # VNI of a packet received from the tunnel (0 = not from a tunnel)
    eth_src: int = 0
    eth_dst: int = 0
    eth_type: int = 0
    vlan: int = 0  # VLAN id, 0 = untagged
    ip_src: int = 0
    ip_dst: int = 0
    ip_proto: int = 0
    ip_frag: int = 0
    tp_src: int = 0
    tp_dst: int = 0

    def masked(self, mask: FlowKey) -> FlowKey:
        # field by field: every install and every flow lookup of the agent goes through here
        return FlowKey(
            self.in_port & mask.in_port,
            self.tun_key & mask.tun_key,
            self.eth_src & mask.eth_src,
            self.eth_dst & mask.eth_dst,
            self.eth_type & mask.eth_type,
            self.vlan & mask.vlan,
            self.ip_src & mask.ip_src,
            self.ip_dst & mask.ip_dst,
            self.ip_proto & mask.ip_proto,
            self.ip_frag & mask.ip_frag,
            self.tp_src & mask.tp_src,
            self.tp_dst & mask.tp_dst,
        )


# A mask is a FlowKey whose values are bit masks.
FlowMask = FlowKey

EXACT = FlowKey(
    in_port=0xFFFFFFFF,
    tun_key=0xFFFFFF,
    eth_src=ETH_ALL,
    eth_dst=ETH_ALL,
    eth_type=0xFFFF,
    vlan=0xFFF,
    ip_src=IP_ALL,
    ip_dst=IP_ALL,
    ip_proto=0xFF,
    ip_frag=0x3,
    tp_src=0xFFFF,
    tp_dst=0xFFFF,
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FlowKey))


# ---- actions (applied in order) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetEthSrc:
    mac: int


@dataclass(frozen=True, slots=True)
class SetEthDst:
    mac: int


@dataclass(frozen=True, slots=True)
class SetIpSrc:
    ip: int


@dataclass(frozen=True, slots=True)
class SetIpDst:
    ip: int


@dataclass(frozen=True, slots=True)
class SetTpSrc:
    port: int


@dataclass(frozen=True, slots=True)
class SetTpDst:
    port: int


@dataclass(frozen=True, slots=True)
class DecTtl:
    """Decrement IPv4 TTL (fixing the header checksum). A packet arriving with TTL <= 1 is not
    forwarded: the datapath sends it to the agent (upcall reason ``ttl``) for an ICMP error."""


@dataclass(frozen=True, slots=True)
class PushVlan:
    vid: int


@dataclass(frozen=True, slots=True)
class PopVlan:
    pass


@dataclass(frozen=True, slots=True)
class Output:
    """Deliver to a local datapath port."""

    port: int


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Encapsulate in VXLAN with ``vni`` (the destination port's tunnel key) towards
    ``remote`` (the destination host's underlay IPv4, host order) and send."""

    vni: int
    remote: int


@dataclass(frozen=True, slots=True)
class Drop:
    pass


@dataclass(frozen=True, slots=True)
class Userspace:
    """Send the packet to the agent (e.g. DHCP, ARP for the agent to answer)."""

    reason: str = "action"


Action = (
    SetEthSrc
    | SetEthDst
    | SetIpSrc
    | SetIpDst
    | SetTpSrc
    | SetTpDst
    | DecTtl
    | PushVlan
    | PopVlan
    | Output
    | Tunnel
    | Drop
    | Userspace
)


@dataclass(frozen=True, slots=True)
class Flow:
    key: FlowKey
    mask: FlowMask
    actions: tuple[Action, ...]
    idle_timeout_s: float = 60.0
    hard_timeout_s: float = 0.0  # 0 = none
    cookie: int = 0  # the agent's handle (links a kernel flow to its tags)


@dataclass(frozen=True, slots=True)
class FlowStats:
    packets: int
    bytes: int
    last_used_s: float  # seconds since the flow last matched (monotonic clock)


__all__ = [
    "EXACT",
    "FIELD_NAMES",
    "Action",
    "DecTtl",
    "Drop",
    "Flow",
    "FlowKey",
    "FlowMask",
    "FlowStats",
    "Output",
    "PopVlan",
    "PushVlan",
    "SetEthDst",
    "SetEthSrc",
    "SetIpDst",
    "SetIpSrc",
    "SetTpDst",
    "SetTpSrc",
    "Tunnel",
    "Userspace",
]
