"""Validated scalar types of the topology model.

Addresses are kept as normalised strings (JSON-friendly, stable in the store); the simulation
compiles them to integers once when it loads an object.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid
from typing import Annotated

from pydantic import AfterValidator, Field

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# canonical spellings, accepted as they are without a parse (ids and prefixes arrive by the
# thousand from the store, always in these forms); anything else goes the long way
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_CIDR_RE = re.compile(rf"({_IPV4_RE.pattern})/(3[0-2]|[12]?[0-9])")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _mac(value: str) -> str:
    v = value.strip().lower().replace("-", ":")
    if not _MAC_RE.match(v):
        raise ValueError(f"malformed MAC address {value!r} (want aa:bb:cc:dd:ee:ff)")
    return v


def _unicast_mac(value: str) -> str:
    v = _mac(value)
    if int(v[:2], 16) & 1:
        raise ValueError(f"MAC address {value!r} is multicast; a port needs a unicast MAC")
    return v


def _ipv4(value: str) -> str:
    if _IPV4_RE.fullmatch(value):
        return value
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"malformed IPv4 address {value!r}") from None


def _cidr(value: str) -> str:
    """A network prefix: host bits must be zero (10.0.0.0/24, not 10.0.0.1/24)."""
    m = _CIDR_RE.fullmatch(value)
    if m is not None and not _host_bits(m.group(1), int(m.group(2))):
        return value
    try:
        return str(ipaddress.IPv4Network(value.strip(), strict=True))
    except ValueError as exc:
        raise ValueError(f"malformed IPv4 CIDR {value!r}: {exc}") from None


def _host_bits(address: str, prefixlen: int) -> int:
    """The bits of a dotted quad (already checked by :data:`_IPV4_RE`) beyond ``prefixlen``."""
    return int.from_bytes(socket.inet_aton(address), "big") & ((1 << (32 - prefixlen)) - 1)


def _addr_or_net(value: str) -> str:
    """An address (10.0.0.5) or a network prefix (10.0.0.0/24, host bits zero); a /32 is
    kept as the bare address so one host has one spelling."""
    if "/" not in value:
        return _ipv4(value)
    net = _cidr(value)
    return net.removesuffix("/32")


def _interface(value: str) -> str:
    """An address with its prefix length, host bits kept (10.0.0.1/24)."""
    try:
        iface = ipaddress.IPv4Interface(value.strip())
    except ValueError as exc:
        raise ValueError(f"malformed IPv4 address/prefix {value!r}: {exc}") from None
    if "/" not in value:
        raise ValueError(f"address {value!r} needs a prefix length (e.g. 10.0.0.1/24)")
    return str(iface)


def _uuid(value: str) -> str:
    if _UUID_RE.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"malformed id {value!r} (want a UUID)") from None


def new_id() -> str:
    return str(uuid.uuid4())


Mac = Annotated[str, AfterValidator(_mac)]
UnicastMac = Annotated[str, AfterValidator(_unicast_mac)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
Cidr = Annotated[str, AfterValidator(_cidr)]
AddrOrCidr = Annotated[str, AfterValidator(_addr_or_net)]
IfAddr = Annotated[str, AfterValidator(_interface)]
Id = Annotated[str, AfterValidator(_uuid)]
Name = Annotated[str, Field(max_length=255)]
L4Port = Annotated[int, Field(ge=0, le=65535)]
TunnelKey = Annotated[int, Field(ge=1, le=(1 << 20) - 1)]

__all__ = [
    "AddrOrCidr",
    "Cidr",
    "IPv4",
    "Id",
    "IfAddr",
    "L4Port",
    "Mac",
    "Name",
    "TunnelKey",
    "UnicastMac",
    "new_id",
]
