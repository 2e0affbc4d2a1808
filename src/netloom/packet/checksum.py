"""The Internet checksum (RFC 1071) and the IPv4 pseudo-header (RFC 793 §3.1, RFC 768).

The ones' complement sum of 16-bit words equals the big-endian integer of the data modulo
0xFFFF (because 2**16 ≡ 1 mod 0xFFFF), except that a non-zero sum is represented as 0xFFFF
rather than 0. Doing the arithmetic on one Python big integer keeps the loop in C, which is
several times faster than summing words in Python.
"""

from __future__ import annotations

import struct

_PSEUDO = struct.Struct("!IIBBH")


def ones_sum(data: bytes) -> int:
    """Ones' complement sum of ``data`` as 16-bit big-endian words (odd length zero-padded)."""
    if len(data) & 1:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    s = value % 0xFFFF
    if s == 0 and value != 0:
        return 0xFFFF
    return s


def fold(total: int) -> int:
    """Fold a sum of several ``ones_sum`` results back into 16 bits."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data``: the complement of the ones' complement sum."""
    return (~ones_sum(data)) & 0xFFFF


def l4_checksum(src: int, dst: int, proto: int, segment: bytes) -> int:
    """TCP/UDP checksum over the IPv4 pseudo-header and ``segment`` (its checksum field zeroed).

    A computed UDP checksum of 0 is sent as 0xFFFF, since 0 means "no checksum" (RFC 768).
    """
    pseudo = _PSEUDO.pack(src, dst, 0, proto, len(segment))
    total = fold(ones_sum(pseudo) + ones_sum(segment))
    csum = (~total) & 0xFFFF
    if csum == 0 and proto == 17:
        return 0xFFFF
    return csum


__all__ = ["checksum", "fold", "l4_checksum", "ones_sum"]
