"""Addresses and order the system decides, as pure functions: a router port's connected and
local routes, a port group's address group, generated MACs, free fixed IPs of a subnet, a
rule's place in its chain.

:class:`netloom.api.service.ObjectService` applies them inside its store transactions.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from netloom.errors import InvalidInput
from netloom.model.bgp import LearnedRoute

Doc = dict[str, Any]

# The ids of a port's system routes are derived from the port's id, so a plan finds them
# without a search (and two plans racing on one port write the same documents).
_ROUTES_NS = uuid.UUID("5d1f6c2e-8f0a-4a57-9d0b-6e0c1b7a9e31")
POSITION_MAX = 1_000_000
AUTO_IP = "auto"


def system_route_ids(port_id: str) -> tuple[str, str]:
    """The ids of the connected and the local route of router port ``port_id``."""
    return (
        str(uuid.uuid5(_ROUTES_NS, f"{port_id}/connected")),
        str(uuid.uuid5(_ROUTES_NS, f"{port_id}/local")),
    )


def system_routes(port: Mapping[str, Any]) -> dict[str, Doc]:
    """A router port's routes, as MidoNet makes them: the connected route (the port's network,
    out of the port) and the local route (the port's own address, /32). Empty for a bridge
    port or a port without an address."""
    if port.get("type") != "router" or not port.get("address"):
        return {}
    iface = IPv4Interface(port["address"])
    connected, local = system_route_ids(port["id"])
    base = {
        "router_id": port["device_id"],
        "name": "",
        "src": "0.0.0.0/0",
        "next_hop_port_id": port["id"],
        "next_hop_gateway": None,
        "weight": 100,
        "system": True,
    }
    return {
        connected: {**base, "id": connected, "dst": str(iface.network), "type": "normal"},
        local: {**base, "id": local, "dst": f"{iface.ip}/32", "type": "local"},
    }


def learned_route_id(port_id: str, peer_id: str, dst: str, next_hop: str) -> str:
    """The id of the route to ``dst`` via ``next_hop`` learned from ``peer_id`` on uplink
    ``port_id``: derived from all a report says of it, so a report is compared with the store
    by ids alone and a repeated report writes nothing."""
    return str(uuid.uuid5(_ROUTES_NS, f"{port_id}/bgp/{peer_id}/{dst}/{next_hop}"))


def learned_route(router_id: str, port_id: str, peer_address: str, route: LearnedRoute) -> Doc:
    """A route a gateway learned, as the NSDB keeps it: an ordinary route of the router out of
    the uplink to the BGP next hop, owned by the peer (``learned_from``)."""
    return {
        "id": learned_route_id(port_id, route.peer_id, route.dst, route.next_hop),
        "router_id": router_id,
        "name": f"bgp {peer_address}",
        "dst": route.dst,
        "src": "0.0.0.0/0",
        "next_hop_port_id": port_id,
        "next_hop_gateway": route.next_hop,
        "weight": 100,
        "type": "normal",
        "system": False,
        "learned_from": route.peer_id,
    }


def group_addresses_id(port_group_id: str) -> str:
    """The id of the IP address group the system keeps for port group ``port_group_id``."""
    return str(uuid.uuid5(_ROUTES_NS, f"{port_group_id}/addresses"))


def group_addresses(port_group: Mapping[str, Any]) -> Doc:
    """The address group of a port group, without addresses (they follow its members)."""
    return {
        "id": group_addresses_id(port_group["id"]),
        "tenant_id": port_group.get("tenant_id"),
        "name": "",
        "shared": bool(port_group.get("shared")),
        "addresses": [],
        "port_group_id": port_group["id"],
    }


def member_addresses(members: Mapping[str, Iterable[str]]) -> list[str]:
    """The addresses of a port group whose ports (id -> fixed IPs) are ``members``: each once,
    in address order."""
    found = {ip for ips in members.values() for ip in ips}
    return sorted(found, key=IPv4Address)


def new_mac() -> str:
    """A random locally administered unicast MAC (first octet x2/x6/xa/xe, RFC 7042 §2.1)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def inside(ip: str, cidrs: Iterable[str]) -> bool:
    addr = IPv4Address(ip)
    return any(addr in IPv4Network(c) for c in cidrs)


def free_ips(subnet: Mapping[str, Any]) -> Iterator[str]:
    """The host addresses of a DHCP subnet a port may be given, lowest first: not the network
    or broadcast address, not the gateway, not an address the subnet reserves for a MAC."""
    net = IPv4Network(subnet["cidr"])
    reserved = {subnet.get("gateway")} | {h["ip"] for h in subnet.get("hosts") or ()}
    hosts = net.hosts() if net.prefixlen < 31 else iter(net)
    for addr in hosts:
        if str(addr) not in reserved:
            yield str(addr)


def place(others: Mapping[str, int], want: int | None) -> tuple[int, dict[str, int]]:
    """Where a rule goes in a chain whose other rules are at ``others`` (id -> position), and
    the rules that move to make room: ``want`` None appends after the last rule; a taken
    position inserts there and moves the run of rules from it on down by one."""
    if want is None:
        position = max(others.values(), default=-1) + 1
        if position > POSITION_MAX:
            raise InvalidInput(
                f"position: the chain's last rule is at {POSITION_MAX}; give a position",
                field="position",
            )
        return position, {}
    moves: dict[str, int] = {}
    free = want + 1
    for id, pos in sorted(others.items(), key=lambda kv: (kv[1], kv[0])):
        if pos < want:
            continue
        if pos >= free:
            break
        moves[id] = free
        free += 1
    if free - 1 > POSITION_MAX:
        raise InvalidInput(
            f"position: no room to insert at {want} (positions end at {POSITION_MAX})",
            field="position",
        )
    return want, moves


__all__ = [
    "AUTO_IP",
    "POSITION_MAX",
    "free_ips",
    "group_addresses",
    "group_addresses_id",
    "inside",
    "learned_route",
    "learned_route_id",
    "member_addresses",
    "new_mac",
    "place",
    "system_route_ids",
    "system_routes",
]
