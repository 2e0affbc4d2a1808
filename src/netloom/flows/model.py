"""Datapath flows: the contract between the agent (which translates simulation results) and the
datapaths (memory and bpf), which must give a packet the same fate for the same flows.

A flow is ``(key, mask) -> actions``: a packet matches when ``packet_key & mask == key & mask``
field by field. Every field is an unsigned integer (MACs as 48-bit, IPv4 as 32-bit host order),
which keeps hashing cheap in Python and maps 1:1 onto the BPF C struct. The mask holds exactly
the bits the simulation read (a megaflow); fields it never looked at are 0 = wildcard.

Field meanings follow OVS's conventions: for ICMP, ``tp_src``/``tp_dst`` carry type/code;
``ip_frag`` is 0 (not a fragment), 1 (first fragment), 2 (later fragment).

``ct_state`` is filled by the datapath from its connection tracking table (see
``netloom.datapath.conntrack``) for IPv4 packets entering from a local port: ``CT_NEW`` (no
entry), ``CT_EST`` (an entry), plus ``CT_RPL`` when the entry is the connection's reply
direction; 0 = not tracked. A flow that never reads it masks it out, like any other field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from netloom.errors import InvalidInput

ETH_ALL = (1 << 48) - 1
IP_ALL = (1 << 32) - 1

# ct_state bits (values shared with NL_CT_* in netloom.h)
CT_NEW = 1  # no conntrack entry for the packet's tuple at its in_port
CT_EST = 2  # an entry exists
CT_RPL = 4  # ... and it is the reply direction of its connection
CT_ALL = CT_NEW | CT_EST | CT_RPL
# Given to the simulation only, never in a flow key: an ICMP error quoting a connection the
# datapath tracks at the error's in_port (related traffic, as Linux conntrack calls it).
CT_REL = 8

# Spare VNI bits (tunnel keys use 20 bits; RFC 7348 carries 24) telling the receiving host what
# to do with its conntrack table on delivery (values shared with NL_VNI_* in netloom.h).
VNI_CT = 1 << 23  # commit the reversed tuple of the delivered packet at the destination port
VNI_CT_CLOSE = 1 << 22  # a TCP FIN/RST: shorten the destination port's reversed entry
VNI_FLAGS = VNI_CT | VNI_CT_CLOSE


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
    ct_state: int = 0  # CT_* bits, filled by the datapath's conntrack lookup

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
            self.ct_state & mask.ct_state,
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
    ct_state=CT_ALL,
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
class CtCommit:
    """Commit the packet's tuple, as it is when the action runs, to the conntrack table at its
    in_port, direction original, unless an entry exists. The agent puts it first, before any
    rewrite, so the tuple committed is the one the packet arrived with."""


@dataclass(frozen=True, slots=True)
class Output:
    """Deliver to a local datapath port. ``ct``: commit the reversed tuple of the delivered
    packet at ``port``, direction reply (so the connection's replies are CT_RPL there)."""

    port: int
    ct: bool = False


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Encapsulate in VXLAN with ``vni`` (the destination port's tunnel key) towards
    ``remote`` (the destination host's underlay IPv4, host order) and send. ``ct``: the
    receiving host commits as for ``Output(ct=True)`` (the sender sets ``VNI_CT`` on the wire)."""

    vni: int
    remote: int
    ct: bool = False


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
    | CtCommit
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


def check_action(a: Action) -> None:
    """:class:`InvalidInput` for an action whose values do not fit its header field."""
    if isinstance(a, Tunnel) and not 0 < a.vni < 1 << 24:
        raise InvalidInput(f"VNI {a.vni} out of range (24 bits, RFC 7348)", field="actions")
    if isinstance(a, (SetTpSrc, SetTpDst)) and not 0 <= a.port < 65536:
        raise InvalidInput(f"L4 port {a.port} out of range", field="actions")
    if isinstance(a, (SetIpSrc, SetIpDst)) and not 0 <= a.ip < 1 << 32:
        raise InvalidInput(f"IPv4 {a.ip} out of range", field="actions")
    if isinstance(a, (SetEthSrc, SetEthDst)) and not 0 <= a.mac < 1 << 48:
        raise InvalidInput(f"MAC {a.mac} out of range", field="actions")


def check_flow(f: Flow, max_actions: int) -> None:
    """:class:`InvalidInput` for a flow a datapath must refuse: negative timeouts, more than
    ``max_actions`` actions, an action out of range."""
    if f.idle_timeout_s < 0 or f.hard_timeout_s < 0:
        raise InvalidInput("timeouts must be >= 0", field="timeout")
    if len(f.actions) > max_actions:
        raise InvalidInput(f"at most {max_actions} actions per flow", field="actions")
    for a in f.actions:
        check_action(a)


__all__ = [
    "CT_ALL",
    "CT_EST",
    "CT_NEW",
    "CT_REL",
    "CT_RPL",
    "EXACT",
    "FIELD_NAMES",
    "VNI_CT",
    "VNI_CT_CLOSE",
    "VNI_FLAGS",
    "Action",
    "CtCommit",
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
    "check_action",
    "check_flow",
]
