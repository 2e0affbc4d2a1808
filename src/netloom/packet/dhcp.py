"""DHCP messages (RFC 2131) and the options netloom serves (RFC 2132, RFC 3442).

A DHCP message is the payload of a UDP datagram (ports 67/68). It is parsed on demand (only
when the simulation reaches a DHCP server), so ordinary upcalls never pay for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from netloom.packet.headers import ParseError

BOOTREQUEST = 1
BOOTREPLY = 2
SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC = b"\x63\x82\x53\x63"  # RFC 2131 §3
FLAG_BROADCAST = 0x8000

# Message types (option 53, RFC 2132 §9.6)
DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

# Option codes (RFC 2132 unless noted)
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN_NAME = 15
OPT_MTU = 26
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_LIST = 55
OPT_RENEWAL_T1 = 58
OPT_REBINDING_T2 = 59
OPT_CLIENT_ID = 61
OPT_CLASSLESS_ROUTES = 121  # RFC 3442
OPT_END = 255

_FIXED = struct.Struct("!BBBBIHHIIII16s64s128s")  # 236 bytes, RFC 2131 figure 1
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")


@dataclass(slots=True)
class DhcpMessage:
    op: int
    xid: int
    chaddr: int  # client MAC (htype 1, hlen 6)
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    flags: int = 0
    secs: int = 0
    hops: int = 0
    sname: bytes = b""
    file: bytes = b""
    # (code, value) in wire order; repeated codes are concatenated by get() (RFC 3396).
    options: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, code: int) -> bytes | None:
        parts = [v for c, v in self.options if c == code]
        return b"".join(parts) if parts else None

    @property
    def msg_type(self) -> int | None:
        v = self.get(OPT_MSG_TYPE)
        return v[0] if v else None

    @property
    def requested_ip(self) -> int | None:
        v = self.get(OPT_REQUESTED_IP)
        return _U32.unpack(v)[0] if v is not None and len(v) == 4 else None

    @property
    def server_id(self) -> int | None:
        v = self.get(OPT_SERVER_ID)
        return _U32.unpack(v)[0] if v is not None and len(v) == 4 else None


def parse_dhcp(data: bytes) -> DhcpMessage | ParseError:
    """Parse a DHCP message (the UDP payload). Never raises."""
    if len(data) < _FIXED.size + 4:
        return ParseError("truncated DHCP message", 0, data)
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = (
        _FIXED.unpack_from(data, 0)
    )
    if htype != 1 or hlen != 6:
        return ParseError("DHCP hardware type is not Ethernet", 1, data)
    if data[_FIXED.size : _FIXED.size + 4] != MAGIC:
        return ParseError("DHCP magic cookie missing", _FIXED.size, data)
    options: list[tuple[int, bytes]] = []
    i, n = _FIXED.size + 4, len(data)
    while i < n:
        code = data[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            break
        if i + 1 >= n or i + 2 + data[i + 1] > n:
            return ParseError("truncated DHCP option", i, data)
        length = data[i + 1]
        options.append((code, data[i + 2 : i + 2 + length]))
        i += 2 + length
    mac = int.from_bytes(chaddr[:6], "big")
    return DhcpMessage(
        op,
        xid,
        mac,
        ci,
        yi,
        si,
        gi,
        flags,
        secs,
        hops,
        sname.rstrip(b"\x00"),
        file.rstrip(b"\x00"),
        options,
    )


def build_dhcp(msg: DhcpMessage) -> bytes:
    """Serialise ``msg``; options longer than 255 bytes are split (RFC 3396)."""
    fixed = _FIXED.pack(
        msg.op,
        1,
        6,
        msg.hops,
        msg.xid,
        msg.secs,
        msg.flags,
        msg.ciaddr,
        msg.yiaddr,
        msg.siaddr,
        msg.giaddr,
        msg.chaddr.to_bytes(6, "big"),
        msg.sname,
        msg.file,
    )
    out = [fixed, MAGIC]
    for code, value in msg.options:
        for start in range(0, max(len(value), 1), 255):
            chunk = value[start : start + 255]
            out.append(bytes((code, len(chunk))) + chunk)
    out.append(bytes((OPT_END,)))
    body = b"".join(out)
    if len(body) < 300:  # BOOTP minimum message size some clients expect (RFC 1542 §3.2)
        body += b"\x00" * (300 - len(body))
    return body


# ---- option value encoders --------------------------------------------------------------------


def opt_u8(v: int) -> bytes:
    return bytes((v,))


def opt_u16(v: int) -> bytes:
    return _U16.pack(v)


def opt_u32(v: int) -> bytes:
    return _U32.pack(v)


def opt_ips(ips: list[int]) -> bytes:
    return b"".join(_U32.pack(ip) for ip in ips)


def opt_classless_routes(routes: list[tuple[int, int, int]]) -> bytes:
    """RFC 3442 §3: each route is the prefix length, the significant octets of the
    destination (ceil(len/8)), then the router. ``routes`` are (dst, prefix_len, gateway)."""
    out = bytearray()
    for dst, plen, gw in routes:
        width = (plen + 7) // 8
        out.append(plen)
        out += _U32.pack(dst)[:width]
        out += _U32.pack(gw)
    return bytes(out)


def parse_classless_routes(value: bytes) -> list[tuple[int, int, int]] | ParseError:
    """Decode option 121 into (dst, prefix_len, gateway); the inverse of the encoder."""
    routes: list[tuple[int, int, int]] = []
    i = 0
    while i < len(value):
        plen = value[i]
        width = (plen + 7) // 8
        if plen > 32 or i + 1 + width + 4 > len(value):
            return ParseError("malformed classless static route", i, value)
        dst = int.from_bytes(value[i + 1 : i + 1 + width].ljust(4, b"\x00"), "big")
        gw = _U32.unpack_from(value, i + 1 + width)[0]
        routes.append((dst, plen, gw))
        i += 1 + width + 4
    return routes


__all__ = [
    "ACK",
    "BOOTREPLY",
    "BOOTREQUEST",
    "CLIENT_PORT",
    "DECLINE",
    "DISCOVER",
    "FLAG_BROADCAST",
    "INFORM",
    "NAK",
    "OFFER",
    "OPT_CLASSLESS_ROUTES",
    "OPT_CLIENT_ID",
    "OPT_DNS",
    "OPT_DOMAIN_NAME",
    "OPT_HOSTNAME",
    "OPT_LEASE_TIME",
    "OPT_MSG_TYPE",
    "OPT_MTU",
    "OPT_PARAM_LIST",
    "OPT_REBINDING_T2",
    "OPT_RENEWAL_T1",
    "OPT_REQUESTED_IP",
    "OPT_ROUTER",
    "OPT_SERVER_ID",
    "OPT_SUBNET_MASK",
    "RELEASE",
    "REQUEST",
    "SERVER_PORT",
    "DhcpMessage",
    "build_dhcp",
    "opt_classless_routes",
    "opt_ips",
    "opt_u8",
    "opt_u16",
    "opt_u32",
    "parse_classless_routes",
    "parse_dhcp",
]
