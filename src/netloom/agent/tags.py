"""Which flow tags a change invalidates: topology changes, state changes, expired state.

Flows are installed with the tags of what their simulation read (device ids, state keys);
these pure functions name the tags a change touches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netloom.model.records import Port, Record, Route, Rule
from netloom.sim import SimState
from netloom.sim.router import routes_tag
from netloom.sim.state import ArpLearned, ConntrackAdded, MacLearned, NatAdded, StateChange


def topology_tags(kind: str, id: str, old: Record | None, new: Record | None) -> set[object]:
    """The flow tags a change of (kind, id) from ``old`` to ``new`` invalidates.

    A route delete touches only the flows that used it; a new or edited route may win longest
    prefix match for flows that looked a route up on the router (``routes_tag``), so those go
    too. A rule
    changes its chain; a port's MAC/addresses/existence change what its device forwards."""
    tags: set[object] = {id}
    per_kind = _KIND_TAGS.get(kind)
    if per_kind is not None:
        tags |= per_kind(old, new)
    return tags


def _route_tags(old: Record | None, new: Record | None) -> set[object]:
    tags: set[object] = set()
    if isinstance(new, Route):
        tags.add(routes_tag(new.router_id))
    if isinstance(old, Route) and new is not None:
        tags.add(routes_tag(old.router_id))
    return tags


def _rule_tags(old: Record | None, new: Record | None) -> set[object]:
    return {r.chain_id for r in (old, new) if isinstance(r, Rule)}


def _port_tags(old: Record | None, new: Record | None) -> set[object]:
    o = old if isinstance(old, Port) else None
    n = new if isinstance(new, Port) else None
    if (
        o is None
        or n is None
        or (o.device_id, o.mac, o.fixed_ips, o.peer_id)
        != (n.device_id, n.mac, n.fixed_ips, n.peer_id)
    ):
        return {p.device_id for p in (o, n) if p is not None}
    return set()


def _dhcp_subnet_tags(old: Record | None, new: Record | None) -> set[object]:
    return {bid for r in (old, new) if (bid := getattr(r, "bridge_id", None))}


_KIND_TAGS: dict[str, Callable[[Record | None, Record | None], set[object]]] = {
    "route": _route_tags,
    "rule": _rule_tags,
    "port": _port_tags,
    "dhcp_subnet": _dhcp_subnet_tags,
}


def state_tags(state: SimState, batch: Sequence[StateChange]) -> tuple[list[object], list[object]]:
    """Before ``batch`` is applied to ``state``: the keys whose flows it invalidates (MAC move,
    new or changed ARP entry, new connection or NAT mapping), and the ARP keys it answers."""
    tags: list[object] = []
    arps: list[object] = []
    for ch in batch:
        if isinstance(ch, MacLearned):
            if state.macs.get(ch.key) != ch.port_id:
                tags.append(ch.key)
        elif isinstance(ch, ArpLearned):
            got = state.arp.get(ch.key)
            if got is None or got[0] != ch.mac:
                tags.append(ch.key)
            arps.append(ch.key)
        elif isinstance(ch, ConntrackAdded):
            if ch.key not in state.conntrack:
                tags.append(ch.key)
        elif isinstance(ch, NatAdded) and ch.key not in state.nat:
            tags.append(ch.key)
    return tags, arps


__all__ = ["state_tags", "topology_tags"]
