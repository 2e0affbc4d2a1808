"""Parse and build Ethernet frames: Ethernet II, 802.1Q, ARP, IPv4, ICMP, TCP, UDP.

Parsing is on the agent's upcall path, so it uses precompiled :class:`struct.Struct` objects
and ``unpack_from`` (no slicing copies for headers) and returns a :class:`ParseError` value on
malformed input instead of raising: a hostile VM must not be able to crash the agent. An IPv4
header that a router must not forward (RFC 1812 5.2.2: version, lengths, checksum) is one.

Building always recomputes lengths and checksums (RFC 1071), except the L4 checksum of an IP
fragment, which covers bytes the frame does not hold and is kept as parsed.
"""

from __future__ import annotations

import struct

from netloom.packet.checksum import checksum, l4_checksum
from netloom.packet.headers import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_QINQ,
    ETH_TYPE_VLAN,
    IPOPT_EOL,
    IPOPT_NOP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    ParseError,
    Tcp,
    Udp,
    Vlan,
)

_ETH = struct.Struct("!HIHIH")  # dst (hi16, lo32), src (hi16, lo32), type
_TAG = struct.Struct("!HH")
_ARP = struct.Struct("!HHBBHHIIHII")  # htype ptype hlen plen op sha(2+4) spa tha(2+4) tpa
_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHI")
_SHORT = struct.Struct("!H")


def parse(data: bytes) -> Frame | ParseError:
    """Parse an Ethernet frame. Never raises on any input (property-tested)."""
    n = len(data)
    if n < 14:
        return ParseError("truncated ethernet header", 0, data)
    dh, dl, sh, sl, etype = _ETH.unpack_from(data, 0)
    eth = Ethernet((dh << 32) | dl, (sh << 32) | sl, etype)
    off = 14
    if etype in (ETH_TYPE_VLAN, ETH_TYPE_QINQ):
        if n < 18:
            return ParseError("truncated 802.1Q tag", off, data)
        tci, inner = _TAG.unpack_from(data, off)
        eth.vlan = Vlan(tci & 0xFFF, tci >> 13, (tci >> 12) & 1, etype)
        eth.ethertype = etype = inner
        off = 18
    if etype == ETH_TYPE_IPV4:
        return _parse_ipv4(data, off, eth)
    if etype == ETH_TYPE_ARP:
        return _parse_arp(data, off, eth)
    return Frame(eth, payload=data[off:])


def _parse_arp(data: bytes, off: int, eth: Ethernet) -> Frame | ParseError:
    if len(data) < off + 28:
        return ParseError("truncated ARP", off, data)
    htype, ptype, hlen, plen, op, shh, shl, spa, thh, thl, tpa = _ARP.unpack_from(data, off)
    if htype != 1 or ptype != ETH_TYPE_IPV4 or hlen != 6 or plen != 4:
        return ParseError("ARP other than IPv4 over Ethernet", off, data)
    arp = Arp(op, (shh << 32) | shl, spa, (thh << 32) | thl, tpa)
    return Frame(eth, arp=arp, trailer=data[off + 28 :])


def _parse_ipv4(data: bytes, off: int, eth: Ethernet) -> Frame | ParseError:
    n = len(data)
    if n < off + 20:
        return ParseError("truncated IPv4 header", off, data)
    vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _IP.unpack_from(data, off)
    ihl = (vihl & 0xF) * 4
    bad = _ipv4_header_error(data, off, vihl, total)
    if bad:
        return ParseError(f"{bad} (RFC 1812 5.2.2)", off, data)
    opts = data[off + 20 : off + ihl]
    ip = IPv4(src, dst, proto, ttl, tos, ident, frag >> 13, frag & 0x1FFF, opts)
    end = off + total
    frame = Frame(eth, ip=ip, trailer=data[end:])
    l4off = off + ihl
    if ip.frag_offset != 0:
        frame.payload = data[l4off:end]
        return frame
    first_fragment = bool(ip.flags & 1)
    if proto == IPPROTO_TCP:
        return _parse_tcp(data, l4off, end, frame)
    if proto == IPPROTO_UDP:
        return _parse_udp(data, l4off, end, frame, first_fragment)
    if proto == IPPROTO_ICMP:
        if end - l4off < 8:
            return ParseError("truncated ICMP header", l4off, data)
        itype, code, icsum, rest = _ICMP.unpack_from(data, l4off)
        frame.l4 = Icmp(itype, code, rest, icsum)
        frame.payload = data[l4off + 8 : end]
        return frame
    frame.payload = data[l4off:end]
    return frame


def _ipv4_header_error(data: bytes, off: int, vihl: int, total: int) -> str:
    """What makes the IPv4 header at ``off`` one a router must not forward (RFC 1812 5.2.2),
    "" if nothing. The datapaths check the same before their flow lookup (``frames.py``
    ``ipv4_header_error``, ``ipv4_check`` in ``netloom.bpf.c``)."""
    ihl = (vihl & 0xF) * 4
    if vihl >> 4 != 4:
        return "IP version is not 4"
    if ihl < 20:
        return "IPv4 header length below 20"
    if total < ihl or off + total > len(data):
        return "IPv4 total length inconsistent with frame"
    if checksum(data[off : off + ihl]):
        return "IPv4 header checksum is wrong"
    return ""


def _parse_tcp(data: bytes, off: int, end: int, frame: Frame) -> Frame | ParseError:
    if end - off < 20:
        return ParseError("truncated TCP header", off, data)
    sport, dport, seq, ack, doff, flags, win, csum, urg = _TCP.unpack_from(data, off)
    hlen = (doff >> 4) * 4
    if hlen < 20 or off + hlen > end:
        return ParseError("TCP data offset inconsistent", off, data)
    flags |= (doff & 0x0F) << 8  # NS and reserved bits, kept for a faithful round trip
    frame.l4 = Tcp(sport, dport, seq, ack, flags, win, urg, data[off + 20 : off + hlen], csum)
    frame.payload = data[off + hlen : end]
    return frame


def _parse_udp(
    data: bytes, off: int, end: int, frame: Frame, first_fragment: bool
) -> Frame | ParseError:
    if end - off < 8:
        return ParseError("truncated UDP header", off, data)
    sport, dport, ulen, csum = _UDP.unpack_from(data, off)
    if first_fragment:
        if ulen < end - off:
            return ParseError("UDP length shorter than first fragment", off, data)
    elif ulen != end - off:
        return ParseError("UDP length does not match IP payload", off, data)
    frame.l4 = Udp(sport, dport, csum, ulen)
    frame.payload = data[off + 8 : end]
    return frame


# ---- build -----------------------------------------------------------------------------------


def build(frame: Frame) -> bytes:
    """Serialise ``frame``; lengths and checksums are computed (RFC 791, 792, 768, 9293)."""
    eth = frame.eth
    head = _ETH.pack(eth.dst >> 32, eth.dst & 0xFFFFFFFF, eth.src >> 32, eth.src & 0xFFFFFFFF, 0)
    if eth.vlan is not None:
        v = eth.vlan
        tci = (v.pcp << 13) | (v.dei << 12) | v.vid
        head = head[:12] + _TAG.pack(v.tpid, tci) + _SHORT.pack(eth.ethertype)
    else:
        head = head[:12] + _SHORT.pack(eth.ethertype)
    if frame.arp is not None:
        return head + build_arp(frame.arp) + frame.trailer
    if frame.ip is not None:
        return head + build_ipv4(frame.ip, frame.l4, frame.payload) + frame.trailer
    return head + frame.payload + frame.trailer


def build_arp(a: Arp) -> bytes:
    return _ARP.pack(
        1,
        ETH_TYPE_IPV4,
        6,
        4,
        a.op,
        a.sha >> 32,
        a.sha & 0xFFFFFFFF,
        a.spa,
        a.tha >> 32,
        a.tha & 0xFFFFFFFF,
        a.tpa,
    )


def build_l4(ip: IPv4, l4: Tcp | Udp | Icmp | None, payload: bytes) -> bytes:
    """The IP payload: the L4 header (checksummed over the pseudo-header) and ``payload``."""
    fragment = ip.is_fragment
    if l4 is None:
        return payload
    if isinstance(l4, Tcp):
        opts = l4.options
        doff = ((20 + len(opts)) // 4) << 4 | ((l4.flags >> 8) & 0x0F)
        hdr = _TCP.pack(
            l4.sport, l4.dport, l4.seq, l4.ack, doff, l4.flags & 0xFF, l4.window, 0, l4.urgent
        )
        seg = hdr + opts + payload
        csum = l4.checksum if fragment else l4_checksum(ip.src, ip.dst, IPPROTO_TCP, seg)
        return seg[:16] + _SHORT.pack(csum) + seg[18:]
    if isinstance(l4, Udp):
        ulen = l4.length if (fragment and l4.length) else 8 + len(payload)
        seg = _UDP.pack(l4.sport, l4.dport, ulen & 0xFFFF, 0) + payload
        csum = l4.checksum if fragment else l4_checksum(ip.src, ip.dst, IPPROTO_UDP, seg)
        return seg[:6] + _SHORT.pack(csum) + seg[8:]
    msg = _ICMP.pack(l4.type, l4.code, 0, l4.rest) + payload
    csum = l4.checksum if fragment else checksum(msg)
    return msg[:2] + _SHORT.pack(csum) + msg[4:]


def build_ipv4(ip: IPv4, l4: Tcp | Udp | Icmp | None, payload: bytes) -> bytes:
    body = build_l4(ip, l4, payload)
    opts = ip.options
    if len(opts) % 4:
        opts += b"\x00" * (4 - len(opts) % 4)  # end-of-options padding (RFC 791)
    ihl = (20 + len(opts)) // 4
    total = ihl * 4 + len(body)
    frag = (ip.flags << 13) | ip.frag_offset
    hdr = (
        _IP.pack(
            0x40 | ihl, ip.tos, total & 0xFFFF, ip.ident, frag, ip.ttl, ip.proto, 0, ip.src, ip.dst
        )
        + opts
    )
    csum = checksum(hdr)
    return hdr[:10] + _SHORT.pack(csum) + hdr[12:] + body


def ip_option_types(options: bytes) -> tuple[int, ...] | None:
    """The types of the IPv4 options in ``options`` (RFC 791 §3.1: EOL ends the list, NOP is
    one octet, every other option is type, length >= 2, data); None when malformed."""
    out: list[int] = []
    i, n = 0, len(options)
    while i < n:
        t = options[i]
        if t == IPOPT_EOL:
            break
        if t == IPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n or options[i + 1] < 2 or i + options[i + 1] > n:
            return None
        out.append(t)
        i += options[i + 1]
    return tuple(out)


def ipv4_header_ok(data: bytes, off: int = 14) -> bool:
    """True when the IPv4 header at ``off`` has a valid RFC 1071 checksum."""
    if len(data) < off + 20:
        return False
    ihl = (data[off] & 0xF) * 4
    return len(data) >= off + ihl and checksum(data[off : off + ihl]) == 0


__all__ = [
    "build",
    "build_arp",
    "build_ipv4",
    "build_l4",
    "ip_option_types",
    "ipv4_header_ok",
    "parse",
]
