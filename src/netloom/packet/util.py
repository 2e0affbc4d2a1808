"""Conversions between the model's strings and the integers packets and flows use."""

from __future__ import annotations

import socket
import struct

_U32 = struct.Struct("!I")


def ip_to_int(ip: str) -> int:
    """Dotted quad to a 32-bit host-order integer (the caller has validated the string)."""
    return int(_U32.unpack(socket.inet_aton(ip))[0])


def int_to_ip(v: int) -> str:
    return socket.inet_ntoa(_U32.pack(v & 0xFFFFFFFF))


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", "").replace("-", ""), 16)


def int_to_mac(v: int) -> str:
    h = f"{v & 0xFFFFFFFFFFFF:012x}"
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


def prefix(cidr: str) -> tuple[int, int, int]:
    """``a.b.c.d/n`` (host bits allowed) to (network, mask, n) as integers."""
    addr, _, plen_s = cidr.partition("/")
    plen = int(plen_s) if plen_s else 32
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return ip_to_int(addr) & mask, mask, plen


__all__ = ["int_to_ip", "int_to_mac", "ip_to_int", "mac_to_int", "prefix"]
