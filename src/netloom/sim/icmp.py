"""The ICMP errors the simulation sends (RFC 792, RFC 1812) and the trace of a chain's denial."""

from __future__ import annotations

from dataclasses import replace

from netloom.packet.checksum import checksum
from netloom.packet.codec import build, build_ipv4
from netloom.packet.headers import (
    ETH_TYPE_IPV4,
    IPPROTO_ICMP,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    Tcp,
    Udp,
)
from netloom.packet.util import int_to_ip
from netloom.sim.compiled import CPort
from netloom.sim.conditions import REJECT, verdict_name
from netloom.sim.context import ETH_MCAST, ICMP_ERROR_TYPES, Ctx, Inner, Snapshot
from netloom.sim.result import F_IP_FRAG, F_IP_PROTO, F_IP_SRC

# ICMP errors as (type, code), RFC 792 / RFC 1812
IcmpKind = tuple[int, int]
NET_UNREACHABLE: IcmpKind = (3, 0)
HOST_UNREACHABLE: IcmpKind = (3, 1)
PORT_UNREACHABLE: IcmpKind = (3, 3)
FRAG_NEEDED: IcmpKind = (3, 4)  # RFC 1191: carries the next-hop MTU
ADMIN_PROHIBITED: IcmpKind = (3, 13)
TTL_EXCEEDED: IcmpKind = (11, 0)


def deny(c: Ctx, verdict: int, chain_id: str) -> None:
    """A chain did not accept: trace its verdict; a reject answers the sender with ICMP."""
    c.step("chain", chain_id, "", verdict_name(verdict))
    if verdict == REJECT:
        reject(c)


def _entry_frame(c: Ctx) -> Frame:
    """The packet as it is now (headers rewritten so far), for quoting in ICMP errors."""
    f = c.frame
    ip = f.ip
    assert ip is not None
    l4 = f.l4
    if isinstance(l4, (Tcp, Udp)):
        l4 = replace(l4, sport=c.tp_src, dport=c.tp_dst)
    elif isinstance(l4, Icmp) and l4.type in (0, 8):
        l4 = replace(l4, rest=(c.icmp_id << 16) | (l4.rest & 0xFFFF))
    payload = f.payload if c.inner is None else patch_quote(f.payload, c.inner)
    eth = Ethernet(c.eth_dst, c.eth_src, f.eth.ethertype, f.eth.vlan)
    return Frame(eth, ip=replace(ip, src=c.ip_src, dst=c.ip_dst, ttl=c.ttl), l4=l4, payload=payload)


def _may_send_error(c: Ctx, entry: Frame) -> bool:
    """RFC 1812 §4.3.2.7: no ICMP error about an ICMP error, a non-first fragment, or a
    packet to/from a broadcast or multicast address."""
    ip = entry.ip
    assert ip is not None
    if ip.frag_offset:
        return False
    if isinstance(entry.l4, Icmp) and entry.l4.type in ICMP_ERROR_TYPES:
        return False
    if ip.src == 0 or ip.src >> 28 == 0xE or ip.dst >> 28 == 0xE or ip.dst == 0xFFFFFFFF:
        return False
    return not (entry.eth.dst & ETH_MCAST)


def icmp_error(c: Ctx, in_port: CPort, snap: Snapshot, kind: IcmpKind, mtu: int = 0) -> None:
    """Send ICMP ``kind`` (type, code) from the router port the packet came in on, quoting the
    packet as it arrived at the router (IP header + 8 bytes, RFC 792)."""
    itype, code = kind
    c.cacheable = False
    now = c.snapshot()
    c.restore(snap)
    entry = _entry_frame(c)
    c.restore(now)
    c.read |= F_IP_SRC | F_IP_FRAG | F_IP_PROTO
    if not _may_send_error(c, entry):
        return
    ip = entry.ip
    assert ip is not None
    quote = build_ipv4(ip, entry.l4, entry.payload)[: ip.header_len + 8]
    err = Frame(
        Ethernet(entry.eth.src, in_port.mac, ETH_TYPE_IPV4),
        ip=IPv4(in_port.ip, ip.src, IPPROTO_ICMP, ttl=64),
        l4=Icmp(itype, code, mtu & 0xFFFF),
        payload=quote,
    )
    c.generated.append((in_port.id, build(err)))
    c.step("icmp", in_port.id, in_port.name, f"error {itype}/{code}", f"to {int_to_ip(ip.src)}")


def reject(c: Ctx) -> None:
    """A reject rule: ICMP administratively prohibited (RFC 1812 §5.2.7.1) back to the
    sender, out of the port the packet entered the virtual network on."""
    f = c.frame
    c.cacheable = False
    if f.ip is None:
        return
    entry = Frame(f.eth, ip=f.ip, l4=f.l4, payload=f.payload)
    if not _may_send_error(c, entry):
        return
    quote = build_ipv4(f.ip, f.l4, f.payload)[: f.ip.header_len + 8]
    err = Frame(
        Ethernet(f.eth.src, f.eth.dst, ETH_TYPE_IPV4),
        ip=IPv4(f.ip.dst, f.ip.src, IPPROTO_ICMP, ttl=64),
        l4=Icmp(*ADMIN_PROHIBITED, 0),
        payload=quote,
    )
    c.generated.append((c.in_port_id, build(err)))
    c.step("icmp", c.in_port_id, "", "error 3/13", f"reject to {int_to_ip(f.ip.src)}")


def patch_quote(payload: bytes, inner: Inner) -> bytes:
    """Rewrite the addresses/ports of the datagram quoted in an ICMP error."""
    if len(payload) < 20:
        return payload
    proto, src, sport, dst, dport = inner
    ihl = (payload[0] & 0xF) * 4
    hdr = bytearray(payload[:ihl])
    hdr[10:12] = b"\x00\x00"
    hdr[12:16] = src.to_bytes(4, "big")
    hdr[16:20] = dst.to_bytes(4, "big")
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    rest = bytearray(payload[ihl:])
    if proto in (6, 17) and len(rest) >= 4:
        rest[0:2] = sport.to_bytes(2, "big")
        rest[2:4] = dport.to_bytes(2, "big")
        if proto == 17 and len(rest) >= 8:
            rest[6:8] = b"\x00\x00"  # the quoted UDP checksum is now stale: 0 = none
    elif proto == IPPROTO_ICMP and len(rest) >= 6:
        rest[4:6] = (sport if rest[0] == 8 else dport).to_bytes(2, "big")
    return bytes(hdr) + bytes(rest)


__all__ = [
    "ADMIN_PROHIBITED",
    "FRAG_NEEDED",
    "HOST_UNREACHABLE",
    "NET_UNREACHABLE",
    "PORT_UNREACHABLE",
    "TTL_EXCEEDED",
    "IcmpKind",
    "deny",
    "icmp_error",
    "patch_quote",
    "reject",
]
