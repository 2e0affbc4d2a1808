"""Header records of the packets netloom parses and builds.

All addresses are unsigned integers (MACs 48-bit, IPv4 32-bit, host order), like
:class:`netloom.flows.model.FlowKey`, so a parsed frame maps onto a flow key without conversion.
Records are mutable ``slots`` dataclasses: the simulation copies a frame once and rewrites
fields in place, and building a reply is a matter of filling a few fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_QINQ = 0x88A8
ETH_TYPE_IPV6 = 0x86DD

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

ARP_REQUEST = 1
ARP_REPLY = 2

ETH_BROADCAST = (1 << 48) - 1

# IPv4 flags (RFC 791 §3.1), as the 3 high bits of the flags/fragment-offset word.
IP_FLAG_RESERVED = 0x4
IP_FLAG_DF = 0x2
IP_FLAG_MF = 0x1

# IPv4 options (RFC 791 §3.1): end of list, no operation, loose and strict source routes.
IPOPT_EOL = 0
IPOPT_NOP = 1
IPOPT_LSRR = 131
IPOPT_SSRR = 137

# TCP flags (RFC 9293 §3.1).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


@dataclass(slots=True)
class Vlan:
    """An 802.1Q tag: priority (PCP), drop eligible (DEI) and VLAN id."""

    vid: int
    pcp: int = 0
    dei: int = 0
    tpid: int = ETH_TYPE_VLAN


@dataclass(slots=True)
class Ethernet:
    dst: int
    src: int
    ethertype: int
    vlan: Vlan | None = None


@dataclass(slots=True)
class Arp:
    """ARP for IPv4 over Ethernet (RFC 826); other hardware/protocol pairs are not parsed."""

    op: int
    sha: int
    spa: int
    tha: int
    tpa: int


@dataclass(slots=True)
class IPv4:
    """IPv4 header (RFC 791). ``frag_offset`` is in 8-byte units; ``options`` raw bytes
    (a multiple of 4 long, so the IHL stays exact on build)."""

    src: int
    dst: int
    proto: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0
    frag_offset: int = 0
    options: bytes = b""

    @property
    def df(self) -> bool:
        return bool(self.flags & IP_FLAG_DF)

    @property
    def mf(self) -> bool:
        return bool(self.flags & IP_FLAG_MF)

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags & IP_FLAG_MF) or self.frag_offset != 0

    @property
    def header_len(self) -> int:
        return 20 + len(self.options)


@dataclass(slots=True)
class Tcp:
    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = TCP_SYN
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    # Only used when the segment is part of an IP fragment (the checksum then covers bytes
    # this frame does not have, so it cannot be recomputed); otherwise build computes it.
    checksum: int = 0


@dataclass(slots=True)
class Udp:
    sport: int
    dport: int
    checksum: int = 0
    # UDP length as carried: equals 8 + payload for whole datagrams, the datagram's length for
    # a first fragment. 0 means "compute" on build.
    length: int = 0


@dataclass(slots=True)
class Icmp:
    """ICMP (RFC 792). ``rest`` is the 4-byte field after the checksum: identifier and sequence
    for echo, unused/next-hop MTU for destination unreachable."""

    type: int
    code: int
    rest: int = 0
    checksum: int = 0

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF


L4 = Tcp | Udp | Icmp


@dataclass(slots=True)
class Frame:
    """A parsed Ethernet frame.

    Exactly one of ``arp``/``ip`` is set for ARP/IPv4; both are None for other ethertypes
    (``payload`` then holds everything after the Ethernet header). ``l4`` is None for
    non-first fragments and protocols other than TCP/UDP/ICMP. ``payload`` is what follows the
    innermost parsed header; ``trailer`` holds bytes after the IP datagram or ARP body
    (Ethernet padding), kept so that building a parsed frame returns the same bytes.
    """

    eth: Ethernet
    arp: Arp | None = None
    ip: IPv4 | None = None
    l4: L4 | None = None
    payload: bytes = b""
    trailer: bytes = b""


@dataclass(slots=True, frozen=True)
class ParseError:
    """Why a frame could not be parsed, and at which byte offset. A value, never raised."""

    reason: str
    offset: int = 0
    data: bytes = field(default=b"", repr=False)


__all__ = [
    "ARP_REPLY",
    "ARP_REQUEST",
    "ETH_BROADCAST",
    "ETH_TYPE_ARP",
    "ETH_TYPE_IPV4",
    "ETH_TYPE_IPV6",
    "ETH_TYPE_QINQ",
    "ETH_TYPE_VLAN",
    "IPOPT_EOL",
    "IPOPT_LSRR",
    "IPOPT_NOP",
    "IPOPT_SSRR",
    "IPPROTO_ICMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IP_FLAG_DF",
    "IP_FLAG_MF",
    "IP_FLAG_RESERVED",
    "L4",
    "TCP_ACK",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "Arp",
    "Ethernet",
    "Frame",
    "IPv4",
    "Icmp",
    "ParseError",
    "Tcp",
    "Udp",
    "Vlan",
]
