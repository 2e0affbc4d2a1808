"""The BGP rules that need the store, applied by :class:`~netloom.api.service.ObjectService`
inside its transactions: a peer sits on the subnet of one of its router's uplinks, and the
routes learned from a peer or on an uplink go with it.

An *uplink* is an exterior router port: bound to a host (``host_id``) and with an address. The
gateway agent of that host runs the sessions of the peers on the uplink's subnet.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from netloom.api.tx import BGP_STATUS, Doc, Tx, ref_id, referrers, split_ref
from netloom.errors import Conflict, InvalidInput

__all__ = ["add_learned", "check_peer", "uplinks"]


def uplinks(tx: Tx, router_id: str) -> list[Doc]:
    """The uplinks of a router (bound router ports with an address), by id."""
    out = []
    for pid in referrers(tx, "router", router_id, "port", "device_id"):
        port = tx.get("port", pid)
        if port is not None and port.get("host_id") and port.get("address"):
            out.append(port)
    return out


def check_peer(tx: Tx, peer: Doc) -> None:
    """A peer's address lies on the subnet of one of its router's uplinks, and is not the
    uplink's own address (RFC 4271 §8: a session runs between two distinct speakers)."""
    addr = IPv4Address(peer["address"])
    links = uplinks(tx, peer["router_id"])
    for port in links:
        iface = IPv4Interface(port["address"])
        if addr == iface.ip:
            raise InvalidInput(
                f"address: {addr} is the address of the router's own uplink {port['id']}",
                field="address",
            )
        if addr in iface.network and addr not in (
            iface.network.network_address,
            iface.network.broadcast_address,
        ):
            return
    have = ", ".join(f"{p['address']} (port {p['id']})" for p in links) or "none"
    raise InvalidInput(
        f"address: {addr} is not on the subnet of an uplink of router {peer['router_id']}"
        f" (uplinks: {have}; an uplink is a router port bound to a host, with an address)",
        field="address",
    )


def add_learned(tx: Tx, doomed: dict[str, Doc]) -> None:
    """Deleting a bgp_peer or a router port deletes the routes learned from it or on it (and
    a peer's reported status); deleting a learned route alone is refused: the session owns it."""
    for ref, data in list(doomed.items()):
        kind, id = split_ref(ref)
        if kind == "bgp_peer":
            owned = referrers(tx, "bgp_peer", id, "route", "learned_from")
            if tx.get(BGP_STATUS, id) is not None:
                tx.delete(BGP_STATUS, id)
        elif kind == "port" and data.get("type") == "router":
            owned = referrers(tx, "port", id, "route", "next_hop_port_id")
        else:
            continue
        for rid in owned:
            route = tx.get("route", rid)
            if route is not None and route.get("learned_from"):
                doomed.setdefault(ref_id("route", rid), route)
    for ref, data in doomed.items():
        peer = data.get("learned_from") if ref.startswith("route:") else None
        port = str(data.get("next_hop_port_id"))
        if peer and ref_id("bgp_peer", peer) not in doomed and ref_id("port", port) not in doomed:
            raise Conflict(
                f"route {data['id']} ({data['dst']}) was learned from bgp_peer {peer}: it goes"
                " with the session",
                field="id",
            )
