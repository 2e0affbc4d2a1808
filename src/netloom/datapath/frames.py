"""Just enough packet handling for the datapaths: flow-key extraction and the header rewrites
of the flow actions, in pure Python, mirroring the BPF program byte for byte.

Kept separate from ``netloom.packet`` on purpose: the datapath must give exactly the kernel's
result (incremental checksum updates, RFC 1624 eqn. 3, the way the kernel's csum_replace does
them), not a re-encoded packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from netloom.errors import InvalidInput
from netloom.flows.model import FlowKey

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class Parsed:
    key: FlowKey
    l3_off: int  # offset of the network header
    l4_off: int  # offset of the transport header; 0 = none (not IPv4)


def parse(packet: bytes, in_port: int = 0, tun_key: int = 0) -> Parsed:
    """Parse Ethernet / 802.1Q / IPv4 (TCP, UDP, ICMP) / ARP into a flow key (OVS conventions:
    ICMP type/code in tp_src/tp_dst, ARP opcode in ip_proto and SPA/TPA in ip_src/ip_dst).

    Truncated upper layers leave their fields 0, as the kernel program does."""
    if len(packet) < 14:
        raise InvalidInput(f"frame of {len(packet)} bytes is shorter than an Ethernet header")
    eth_dst = int.from_bytes(packet[0:6], "big")
    eth_src = int.from_bytes(packet[6:12], "big")
    eth_type = int.from_bytes(packet[12:14], "big")
    vlan, off = 0, 14
    if eth_type in (ETH_P_8021Q, ETH_P_8021AD) and len(packet) >= 18:
        vlan = int.from_bytes(packet[14:16], "big") & 0xFFF
        eth_type = int.from_bytes(packet[16:18], "big")
        off = 18
    f: dict[str, int] = {}
    l4_off = 0
    if eth_type == ETH_P_IP and len(packet) >= off + 20 and packet[off] & 0x0F >= 5:
        f, l4_off = _parse_ipv4(packet, off)
    elif eth_type == ETH_P_ARP and len(packet) >= off + 28:
        f = {
            "ip_proto": packet[off + 7],
            "ip_src": int.from_bytes(packet[off + 14 : off + 18], "big"),
            "ip_dst": int.from_bytes(packet[off + 24 : off + 28], "big"),
        }
    key = FlowKey(
        in_port=in_port,
        tun_key=tun_key,
        eth_src=eth_src,
        eth_dst=eth_dst,
        eth_type=eth_type,
        vlan=vlan,
        **f,
    )
    return Parsed(key, off, l4_off)


def _parse_ipv4(p: bytes, off: int) -> tuple[dict[str, int], int]:
    ihl = (p[off] & 0x0F) * 4
    frag_off = int.from_bytes(p[off + 6 : off + 8], "big")
    frag = 2 if frag_off & 0x1FFF else (1 if frag_off & 0x2000 else 0)
    proto = p[off + 9]
    f = {
        "ip_src": int.from_bytes(p[off + 12 : off + 16], "big"),
        "ip_dst": int.from_bytes(p[off + 16 : off + 20], "big"),
        "ip_proto": proto,
        "ip_frag": frag,
    }
    l4 = off + ihl
    if frag != 2:
        if proto in (IPPROTO_TCP, IPPROTO_UDP) and len(p) >= l4 + 4:
            f["tp_src"] = int.from_bytes(p[l4 : l4 + 2], "big")
            f["tp_dst"] = int.from_bytes(p[l4 + 2 : l4 + 4], "big")
        elif proto == IPPROTO_ICMP and len(p) >= l4 + 2:
            f["tp_src"], f["tp_dst"] = p[l4], p[l4 + 1]
    return f, l4


# ---- edge checks (the kernel's edge_check, before conntrack and the flow lookup) ---------------


def tagged(pr: Parsed) -> bool:
    """The frame carries an 802.1Q or 802.1ad tag (no port is tagged: dropped on entry)."""
    return pr.l3_off != 14 or pr.key.eth_type in (ETH_P_8021Q, ETH_P_8021AD)  # or truncated


def ipv4_header_ok(packet: bytes, pr: Parsed) -> bool:
    """RFC 1812 5.2.2 on an untagged IPv4 frame: version 4, IHL >= 5, a total length between
    the header's and the frame's, and a valid header checksum (RFC 1071)."""
    off = pr.l3_off
    if len(packet) < off + 20 or packet[off] >> 4 != 4:
        return False
    hlen = (packet[off] & 0x0F) * 4
    total = int.from_bytes(packet[off + 2 : off + 4], "big")
    if hlen < 20 or not hlen <= total <= len(packet) - off:
        return False
    return ones_sum(packet[off : off + hlen]) == 0xFFFF


def edge_drop(packet: bytes, pr: Parsed) -> str:
    """Why a frame entering from a local port is dropped before the flow lookup (the kernel's
    ``edge_check``): ``"tagged"``, ``"ip_header"`` (RFC 1812 5.2.2), or "" to go on."""
    if tagged(pr):
        return "tagged"
    if pr.key.eth_type == ETH_P_IP and not ipv4_header_ok(packet, pr):
        return "ip_header"
    return ""


def has_options(pr: Parsed) -> bool:
    """An IPv4 header longer than 20 bytes (checked by :func:`ipv4_header_ok` first)."""
    return pr.key.eth_type == ETH_P_IP and pr.l4_off - pr.l3_off > 20


def extract_key(packet: bytes, in_port: int = 0, tun_key: int = 0) -> FlowKey:
    """The flow key of a frame (see :func:`parse`)."""
    return parse(packet, in_port, tun_key).key


# ---- checksums -------------------------------------------------------------------------------


def ones_sum(data: bytes, start: int = 0) -> int:
    """16-bit one's complement sum (RFC 1071), folded."""
    if len(data) % 2:
        data += b"\0"
    s: int = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_replace(csum: int, old: bytes, new: bytes) -> int:
    """Incremental update HC' = ~(~HC + ~m + m') (RFC 1624 eqn. 3), as the kernel's
    csum_replace2/4 compute it."""
    s = (~csum) & 0xFFFF
    for i in range(0, len(old), 2):
        s += (~int.from_bytes(old[i : i + 2], "big")) & 0xFFFF
        s += int.from_bytes(new[i : i + 2], "big")
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _l4_csum_off(proto: int) -> int | None:
    return {IPPROTO_TCP: 16, IPPROTO_UDP: 6}.get(proto)


def complete_l4_checksum(packet: bytes) -> bytes:
    """Recompute the IPv4 header checksum and the TCP/UDP checksum from scratch.

    Packets a VM sends over veth carry CHECKSUM_PARTIAL: the L4 field holds only the
    pseudo-header sum. Re-injected as raw bytes they would be dropped by the receiver, so the
    agent completes them first. A UDP checksum of 0 ("none", RFC 768) stays 0; a computed 0 is
    sent as 0xffff. Fragments (no full datagram here) are left as they are."""
    pr = parse(packet)
    k = pr.key
    if k.eth_type != ETH_P_IP or not pr.l4_off or k.ip_frag:
        return packet
    b = bytearray(packet)
    l3 = pr.l3_off
    total = int.from_bytes(b[l3 + 2 : l3 + 4], "big")
    end = min(len(b), l3 + total)
    b[l3 + 10 : l3 + 12] = b"\0\0"
    b[l3 + 10 : l3 + 12] = ((~ones_sum(bytes(b[l3 : pr.l4_off]))) & 0xFFFF).to_bytes(2, "big")
    off = _l4_csum_off(k.ip_proto)
    if off is None or end < pr.l4_off + off + 2:
        return bytes(b)
    c = pr.l4_off + off
    if k.ip_proto == IPPROTO_UDP and b[c : c + 2] == b"\0\0":
        return bytes(b)
    b[c : c + 2] = b"\0\0"
    seg = bytes(b[pr.l4_off : end])
    pseudo = bytes(b[l3 + 12 : l3 + 20]) + struct.pack("!BBH", 0, k.ip_proto, len(seg))
    v = (~ones_sum(seg, ones_sum(pseudo))) & 0xFFFF
    if v == 0 and k.ip_proto == IPPROTO_UDP:
        v = 0xFFFF
    b[c : c + 2] = v.to_bytes(2, "big")
    return bytes(b)


# ---- rewrites (in place, on a bytearray; the mirror of the BPF helpers) ---------------------


def _put16(b: bytearray, off: int, v: int) -> None:
    b[off : off + 2] = v.to_bytes(2, "big")


def _l4_fix(b: bytearray, pr: Parsed, old: bytes, new: bytes) -> None:
    """bpf_l4_csum_replace: UDP with BPF_F_MARK_MANGLED_0 (0 = no checksum stays 0)."""
    off = _l4_csum_off(pr.key.ip_proto)
    if off is None or len(b) < pr.l4_off + off + 2:
        return
    c = pr.l4_off + off
    cur = int.from_bytes(b[c : c + 2], "big")
    if pr.key.ip_proto == IPPROTO_UDP and cur == 0:
        return
    v = csum_replace(cur, old, new)
    if pr.key.ip_proto == IPPROTO_UDP and v == 0:
        v = 0xFFFF
    _put16(b, c, v)


def set_ip(b: bytearray, pr: Parsed, field_off: int, ip: int) -> None:
    """Set IPv4 src (field_off 12) or dst (16); fix the header checksum and, the addresses
    being in the TCP/UDP pseudo-header, the L4 checksum."""
    if pr.key.eth_type != ETH_P_IP or not pr.l4_off:
        return
    o = pr.l3_off + field_off
    old, new = bytes(b[o : o + 4]), ip.to_bytes(4, "big")
    b[o : o + 4] = new
    hc = pr.l3_off + 10
    _put16(b, hc, csum_replace(int.from_bytes(b[hc : hc + 2], "big"), old, new))
    if pr.key.ip_frag != 2:
        _l4_fix(b, pr, old, new)


def set_tp(b: bytearray, pr: Parsed, field_off: int, port: int) -> None:
    """Set the TCP/UDP source (0) or destination (2) port with checksum fix."""
    k = pr.key
    if k.eth_type != ETH_P_IP or not pr.l4_off or k.ip_frag == 2:
        return
    if k.ip_proto not in (IPPROTO_TCP, IPPROTO_UDP) or len(b) < pr.l4_off + 4:
        return
    o = pr.l4_off + field_off
    old, new = bytes(b[o : o + 2]), port.to_bytes(2, "big")
    b[o : o + 2] = new
    _l4_fix(b, pr, old, new)


def ttl(b: bytes | bytearray, pr: Parsed) -> int | None:
    """The IPv4 TTL, or None for non-IPv4."""
    if pr.key.eth_type != ETH_P_IP or not pr.l4_off:
        return None
    return b[pr.l3_off + 8]


def dec_ttl(b: bytearray, pr: Parsed) -> None:
    """Decrement TTL (caller checked it is > 1) and fix the header checksum."""
    o = pr.l3_off + 8
    old = bytes(b[o : o + 2])
    b[o] -= 1
    hc = pr.l3_off + 10
    _put16(b, hc, csum_replace(int.from_bytes(b[hc : hc + 2], "big"), old, bytes(b[o : o + 2])))


def tcp_flags(b: bytes | bytearray, pr: Parsed) -> int:
    """The TCP flags octet (RFC 793 3.1: FIN 0x01, SYN 0x02, RST 0x04), 0 if not TCP."""
    k = pr.key
    if k.eth_type != ETH_P_IP or k.ip_proto != IPPROTO_TCP or k.ip_frag == 2 or not pr.l4_off:
        return 0
    return b[pr.l4_off + 13] if len(b) > pr.l4_off + 13 else 0


def push_vlan(b: bytearray, vid: int) -> None:
    b[12:12] = struct.pack("!HH", ETH_P_8021Q, vid & 0xFFF)


def pop_vlan(b: bytearray) -> None:
    if int.from_bytes(b[12:14], "big") in (ETH_P_8021Q, ETH_P_8021AD):
        del b[12:16]


__all__ = [
    "Parsed",
    "complete_l4_checksum",
    "csum_replace",
    "edge_drop",
    "extract_key",
    "has_options",
    "ipv4_header_ok",
    "ones_sum",
    "parse",
    "tagged",
    "tcp_flags",
]
