"""IP address management of Neutron subnets: allocation pools (their defaults and checks) and
the fixed IPs of ports.

An allocated address is a document ``_neutron_ip/<subnet id>:<address>`` naming its port,
written in the commit that allocates it (create-only), so two ports racing for one address
cannot both win; a plan reads it, so the loser re-runs and picks another. Free addresses are
picked at random from the pools (as Neutron does), then by a scan when the subnet is full.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Iterator
from typing import Any

from netloom.api.neutron import faults
from netloom.api.tx import Doc, Tx

IPS = "_neutron_ip"
Pool = tuple[int, int]
_RANDOM_TRIES = 16
_SCAN_MAX = 1 << 16


def _int(ip: str) -> int:
    return int(ipaddress.ip_address(ip))


def _str(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def host_range(cidr: str) -> Pool:
    """The first and last address a host may use (not the network address, nor IPv4's
    broadcast address)."""
    net = ipaddress.ip_network(cidr)
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    return int(net.network_address) + 1, last


def inside(cidr: str, ip: str) -> bool:
    """``ip`` is a host address of ``cidr``."""
    net = ipaddress.ip_network(cidr)
    addr = ipaddress.ip_address(ip)
    lo, hi = host_range(cidr)
    return addr.version == net.version and lo <= int(addr) <= hi


def default_gateway(cidr: str) -> str | None:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + 1) if net.num_addresses > 2 else None


def default_pools(cidr: str, gateway: str | None) -> list[dict[str, str]]:
    """The whole subnet less its network (and broadcast) address and the gateway."""
    version = ipaddress.ip_network(cidr).version
    first, last = host_range(cidr)
    if first > last:
        return []
    ranges: list[Pool] = [(first, last)]
    if gateway is not None:
        gw = _int(gateway)
        if first <= gw <= last:
            ranges = [r for r in ((first, gw - 1), (gw + 1, last)) if r[0] <= r[1]]
    return [{"start": _str(version, lo), "end": _str(version, hi)} for lo, hi in ranges]


def check_gateway(cidr: str, gateway: str | None) -> None:
    if gateway is None:
        return
    net = ipaddress.ip_network(cidr)
    gw = ipaddress.ip_address(gateway)
    if gw.version != net.version or gw not in net:
        raise faults.invalid_input(f"Gateway IP {gateway} is not inside subnet {cidr}")
    if not inside(cidr, gateway):
        raise faults.invalid_input(f"Gateway is not valid on subnet: {gateway}")


def check_pools(cidr: str, pools: list[dict[str, str]], gateway: str | None) -> None:
    """neutron ``_validate_allocation_pools``: inside the subnet, ordered, disjoint, and not
    holding the gateway."""
    version = ipaddress.ip_network(cidr).version
    ranges: list[Pool] = []
    for pool in pools:
        start, end = pool["start"], pool["end"]
        if {ipaddress.ip_address(start).version, ipaddress.ip_address(end).version} != {version}:
            raise faults.bad_request(
                f"Invalid input for allocation_pools. Reason: {pool} is not of IP version"
                f" {version}."
            )
        if _int(start) > _int(end):
            raise faults.bad_request(
                f"The allocation pool {start}-{end} is not valid: its start is after its end.",
                "InvalidAllocationPool",
            )
        if not inside(cidr, start) or not inside(cidr, end):
            raise faults.bad_request(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {cidr}.",
                "OutOfBoundsAllocationPool",
            )
        ranges.append((_int(start), _int(end)))
    ranges.sort()
    for (a_lo, a_hi), (b_lo, b_hi) in itertools.pairwise(ranges):
        if b_lo <= a_hi:
            raise faults.conflict(
                "OverlappingAllocationPools",
                f"Found overlapping allocation pools: {_str(version, a_lo)}-"
                f"{_str(version, a_hi)} and {_str(version, b_lo)}-{_str(version, b_hi)} for"
                f" subnet {cidr}.",
            )
    if gateway is not None:
        gw = _int(gateway)
        for lo, hi in ranges:
            if lo <= gw <= hi:
                raise faults.conflict(
                    "GatewayConflictWithAllocationPools",
                    f"Gateway ip {gateway} conflicts with allocation pool"
                    f" {_str(version, lo)}-{_str(version, hi)}.",
                )


def _key(subnet_id: str, ip: str) -> str:
    return f"{subnet_id}:{ip}"


def holder(tx: Tx, subnet_id: str, ip: str) -> str | None:
    """The port holding ``ip`` of the subnet (read in ``tx``)."""
    doc = tx.get(IPS, _key(subnet_id, ip))
    return None if doc is None else str(doc["port_id"])


def claim(tx: Tx, subnet_id: str, ip: str, port_id: str) -> None:
    owner = holder(tx, subnet_id, ip)
    if owner is not None and owner != port_id:
        raise faults.conflict(
            "IpAddressAlreadyAllocated",
            f"IP address {ip} already allocated in subnet {subnet_id}",
        )
    tx.put(IPS, _key(subnet_id, ip), {"port_id": port_id})


def release(tx: Tx, subnet_id: str, ip: str) -> None:
    if tx.get(IPS, _key(subnet_id, ip)) is not None:
        tx.delete(IPS, _key(subnet_id, ip))


def _addresses(pools: list[dict[str, str]]) -> Iterator[int]:
    for pool in pools:
        yield from range(_int(pool["start"]), _int(pool["end"]) + 1)


def _pick(pools: list[dict[str, str]]) -> int:
    sizes = [_int(p["end"]) - _int(p["start"]) + 1 for p in pools]
    pool = random.choices(pools, weights=sizes)[0]
    return random.randint(_int(pool["start"]), _int(pool["end"]))


def allocate(tx: Tx, subnet: Doc, port_id: str, taken: set[str]) -> str:
    """A free address of the subnet's pools, claimed for ``port_id``."""
    pools: list[dict[str, Any]] = subnet["allocation_pools"]
    version = subnet["ip_version"]
    if pools:
        for _ in range(_RANDOM_TRIES):
            ip = _str(version, _pick(pools))
            if ip not in taken and holder(tx, subnet["id"], ip) is None:
                claim(tx, subnet["id"], ip, port_id)
                return ip
        for n, addr in enumerate(_addresses(pools)):
            if n >= _SCAN_MAX:
                break
            ip = _str(version, addr)
            if ip not in taken and holder(tx, subnet["id"], ip) is None:
                claim(tx, subnet["id"], ip, port_id)
                return ip
    raise faults.conflict(
        "IpAddressGenerationFailure",
        f"No more IP addresses available on network {subnet['network_id']}.",
    )


__all__ = [
    "IPS",
    "allocate",
    "check_gateway",
    "check_pools",
    "claim",
    "default_gateway",
    "default_pools",
    "holder",
    "host_range",
    "inside",
    "release",
]
