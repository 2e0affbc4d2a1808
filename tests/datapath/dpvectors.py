"""ONE set of flow test vectors (packet in + flows -> outcomes) for every datapath.

Packets are built here from scratch with full checksums computed independently of the code under
test, and expected outputs are built from scratch too: a datapath's incremental checksum updates
must land exactly on a fresh computation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from netloom.datapath.base import Fate, Outcome, UpcallReason
from netloom.flows.model import (
    EXACT,
    DecTtl,
    Drop,
    Flow,
    FlowKey,
    Output,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
    Tunnel,
    Userspace,
)

MAC_VM1, MAC_VM2, MAC_GW = 0x020000000001, 0x020000000002, 0x02000000FFFE


def ip(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _csum(data: bytes) -> int:
    return (~_sum(data)) & 0xFFFF


def frame(
    *,
    src_mac: int = MAC_VM1,
    dst_mac: int = MAC_GW,
    src: str = "10.1.0.1",
    dst: str = "10.1.0.2",
    proto: int = 6,
    sport: int = 40000,
    dport: int = 80,
    ttl: int = 64,
    payload: bytes = b"hello netloom",
    vlan: int | None = None,
    udp_zero_csum: bool = False,
    icmp_type: int = 8,
    tcp_flags: int = 0x02,
) -> bytes:
    """Ethernet + IPv4 + TCP/UDP/ICMP with correct checksums."""
    s, d = ip(src).to_bytes(4, "big"), ip(dst).to_bytes(4, "big")
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 65535, 0, 0)
        l4 += payload
        c = _csum(s + d + struct.pack("!BBH", 0, 6, len(l4)) + l4)
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        if not udp_zero_csum:
            c = _csum(s + d + struct.pack("!BBH", 0, 17, len(l4)) + l4) or 0xFFFF
            l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    else:
        l4 = struct.pack("!BBHHH", icmp_type, 0, 0, 7, 1) + payload
        l4 = l4[:2] + struct.pack("!H", _csum(l4)) + l4[4:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, ttl, proto, 0, s, d)
    iph = iph[:10] + struct.pack("!H", _csum(iph)) + iph[12:]
    eth = dst_mac.to_bytes(6, "big") + src_mac.to_bytes(6, "big")
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + b"\x08\x00" + iph + l4


def arp_request(spa: str, tpa: str, sha: int = MAC_VM1) -> bytes:
    eth = (0xFFFFFFFFFFFF).to_bytes(6, "big") + sha.to_bytes(6, "big") + b"\x08\x06"
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sha.to_bytes(6, "big")
    body += ip(spa).to_bytes(4, "big") + bytes(6) + ip(tpa).to_bytes(4, "big")
    return eth + body + bytes(18)


def m(**fields: int) -> FlowKey:
    """A mask with exact bits for the named fields."""
    return FlowKey(**{k: getattr(EXACT, k) for k, v in fields.items() if v})


Ports = dict[str, int]


@dataclass(frozen=True)
class Expect:
    fate: Fate
    packet: bytes | None = None  # None: the input packet unchanged
    port: str = ""
    vni: int = 0
    remote: int = 0
    reason: UpcallReason | None = None


@dataclass(frozen=True)
class Vector:
    name: str
    packet: bytes
    in_port: str
    flows: Callable[[Ports], list[Flow]]
    expect: list[Expect]
    bpf: bool = True  # False: cannot be observed through BPF_PROG_TEST_RUN
    notes: str = field(default="")


def resolve(v: Vector, ports: Ports) -> list[Outcome]:
    out = []
    for e in v.expect:
        pkt = v.packet if e.packet is None else e.packet
        if e.fate == Fate.OUTPUT:
            out.append(Outcome(Fate.OUTPUT, pkt, port=ports[e.port]))
        elif e.fate == Fate.TUNNEL:
            out.append(Outcome(Fate.TUNNEL, pkt, vni=e.vni, remote=e.remote))
        elif e.fate == Fate.UPCALL:
            out.append(Outcome(Fate.UPCALL, pkt, reason=e.reason))
        else:
            out.append(Outcome(Fate.DROP))
    return out


PORTS = (("vm1", "vm", 1500), ("vm2", "vm", 1500), ("vm3", "vm", 1000))
TUNNEL_REMOTE = ip("192.0.2.2")

_tcp = frame()
_vip = frame(dst="10.9.9.9", dport=8080)
_udp = frame(proto=17, sport=5353, dport=53)
_udp0 = frame(proto=17, sport=5353, dport=53, udp_zero_csum=True)
_icmp = frame(proto=1)
_big = frame(proto=17, payload=bytes(1200))


def _in(p: Ports, port: str = "vm1") -> FlowKey:
    return FlowKey(in_port=p[port])


VECTORS: list[Vector] = [
    Vector(
        "output-unchanged",
        _tcp,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], ip_dst=ip("10.1.0.2")),
                m(in_port=1, ip_dst=1),
                (Output(p["vm2"]),),
            )
        ],
        [Expect(Fate.OUTPUT, port="vm2")],
    ),
    Vector(
        "dnat-tcp-dst-ip-port-mac-ttl",
        _vip,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(
                    in_port=p["vm1"], eth_type=0x800, ip_dst=ip("10.9.9.9"), ip_proto=6, tp_dst=8080
                ),
                m(in_port=1, eth_type=1, ip_dst=1, ip_proto=1, tp_dst=1),
                (
                    SetEthSrc(MAC_GW),
                    SetEthDst(MAC_VM2),
                    DecTtl(),
                    SetIpDst(ip("10.1.0.2")),
                    SetTpDst(80),
                    Output(p["vm2"]),
                ),
            )
        ],
        [Expect(Fate.OUTPUT, frame(src_mac=MAC_GW, dst_mac=MAC_VM2, ttl=63), port="vm2")],
    ),
    Vector(
        "snat-udp-src-ip-port",
        _udp,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], ip_proto=17),
                m(in_port=1, ip_proto=1),
                (SetIpSrc(ip("203.0.113.7")), SetTpSrc(61000), Output(p["vm2"])),
            )
        ],
        [
            Expect(
                Fate.OUTPUT, frame(proto=17, src="203.0.113.7", sport=61000, dport=53), port="vm2"
            )
        ],
    ),
    Vector(
        "snat-udp-zero-checksum-stays-zero",
        _udp0,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], ip_proto=17),
                m(in_port=1, ip_proto=1),
                (SetIpSrc(ip("203.0.113.7")), SetTpSrc(61000), Output(p["vm2"])),
            )
        ],
        [
            Expect(
                Fate.OUTPUT,
                frame(proto=17, src="203.0.113.7", sport=61000, dport=53, udp_zero_csum=True),
                port="vm2",
            )
        ],
    ),
    Vector(
        "icmp-snat-and-type-match",
        _icmp,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], ip_proto=1, tp_src=8),
                m(in_port=1, ip_proto=1, tp_src=1),
                (SetIpSrc(ip("198.51.100.1")), DecTtl(), Output(p["vm2"])),
            )
        ],
        [Expect(Fate.OUTPUT, frame(proto=1, src="198.51.100.1", ttl=63), port="vm2")],
    ),
    Vector(
        "tunnel-vni-remote",
        _tcp,
        "vm1",
        lambda p: [Flow(FlowKey(in_port=p["vm1"]), m(in_port=1), (Tunnel(5001, TUNNEL_REMOTE),))],
        [Expect(Fate.TUNNEL, vni=5001, remote=TUNNEL_REMOTE)],
    ),
    Vector(
        "drop",
        _tcp,
        "vm1",
        lambda p: [Flow(FlowKey(in_port=p["vm1"]), m(in_port=1), (Drop(),))],
        [Expect(Fate.DROP)],
    ),
    Vector(
        "no-actions-is-drop",
        _tcp,
        "vm1",
        lambda p: [Flow(FlowKey(in_port=p["vm1"]), m(in_port=1), ())],
        [Expect(Fate.DROP)],
    ),
    Vector(
        "miss-upcalls-unchanged",
        _tcp,
        "vm1",
        lambda p: [Flow(FlowKey(in_port=p["vm2"]), m(in_port=1), (Output(p["vm1"]),))],
        [Expect(Fate.UPCALL, reason=UpcallReason.MISS)],
    ),
    Vector(
        "ttl-1-upcalls",
        frame(ttl=1),
        "vm1",
        lambda p: [Flow(_in(p), m(in_port=1), (DecTtl(), Output(p["vm2"])))],
        [Expect(Fate.UPCALL, reason=UpcallReason.TTL)],
    ),
    Vector(
        "over-mtu-upcalls",
        _big,
        "vm1",
        lambda p: [Flow(_in(p), m(in_port=1), (Output(p["vm3"]),))],
        [Expect(Fate.UPCALL, reason=UpcallReason.MTU)],
    ),
    Vector(
        "under-mtu-passes",
        frame(proto=17, payload=bytes(900)),
        "vm1",
        lambda p: [Flow(_in(p), m(in_port=1), (Output(p["vm3"]),))],
        [Expect(Fate.OUTPUT, port="vm3")],
    ),
    Vector(
        "most-specific-mask-wins",
        _tcp,
        "vm1",
        lambda p: [
            Flow(FlowKey(ip_dst=ip("10.1.0.0")), FlowKey(ip_dst=0xFFFFFF00), (Drop(),)),
            Flow(
                FlowKey(in_port=p["vm1"], ip_dst=ip("10.1.0.2"), tp_dst=80),
                m(in_port=1, ip_dst=1, tp_dst=1),
                (Output(p["vm2"]),),
            ),
        ],
        [Expect(Fate.OUTPUT, port="vm2")],
    ),
    Vector(
        "broad-mask-catches-the-rest",
        frame(dport=443),
        "vm1",
        lambda p: [
            Flow(FlowKey(ip_dst=ip("10.1.0.0")), FlowKey(ip_dst=0xFFFFFF00), (Drop(),)),
            Flow(
                FlowKey(in_port=p["vm1"], ip_dst=ip("10.1.0.2"), tp_dst=80),
                m(in_port=1, ip_dst=1, tp_dst=1),
                (Output(p["vm2"]),),
            ),
        ],
        [Expect(Fate.DROP)],
    ),
    Vector(
        "userspace-action",
        _udp,
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], tp_dst=53),
                m(in_port=1, tp_dst=1),
                (Userspace("dns"),),
                cookie=77,
            )
        ],
        [Expect(Fate.UPCALL, reason=UpcallReason.USERSPACE)],
    ),
    Vector(
        "arp-request-tpa-match",
        arp_request("10.1.0.1", "10.1.0.254"),
        "vm1",
        lambda p: [
            Flow(
                FlowKey(in_port=p["vm1"], eth_type=0x0806, ip_proto=1, ip_dst=ip("10.1.0.254")),
                m(in_port=1, eth_type=1, ip_proto=1, ip_dst=1),
                (Userspace("arp"),),
            )
        ],
        [Expect(Fate.UPCALL, reason=UpcallReason.USERSPACE)],
    ),
]
