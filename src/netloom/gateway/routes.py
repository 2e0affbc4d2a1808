"""Learned routes: bird's kernel tables (one per peer, :mod:`netloom.gateway.config`) read as
netlink route events and mapped to :class:`~netloom.model.bgp.LearnedRoute` values.

The mapping is pure: :func:`parse_route` turns one rtnetlink message (RFC 3549 §3.1.1; a
pyroute2 ``rtmsg``) into a :class:`KernelRoute`, :class:`LearnedTable` keeps the current
routes of one sidecar and answers the full set. A multipath route (RTA_MULTIPATH: bird's
``merge paths``) is one learned route per next hop, so the overlay's ECMP sees each path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netloom.model.bgp import LearnedRoute

AF_INET = 2
NEW, DEL = "RTM_NEWROUTE", "RTM_DELROUTE"


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route of one kernel table: ``dst`` ("a.b.c.d/n") via ``gateways`` (one or more)."""

    table: int
    dst: str
    gateways: tuple[str, ...]


def _attr(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return next((v for k, v in obj.get("attrs", ()) if k == name), None)
    return obj.get_attr(name)


def parse_route(msg: Any) -> tuple[str, KernelRoute] | None:
    """(event, route) of an IPv4 unicast route message; None for anything else (other
    families, routes without a next hop: bird exports only what it learned by BGP)."""
    event = msg.get("event")
    if event not in (NEW, DEL) or msg.get("family") != AF_INET:
        return None
    table = _attr(msg, "RTA_TABLE") or msg.get("table")
    dst = _attr(msg, "RTA_DST") or "0.0.0.0"
    gw = _attr(msg, "RTA_GATEWAY")
    hops = [gw] if gw else []
    for nh in _attr(msg, "RTA_MULTIPATH") or ():
        g = _attr(nh, "RTA_GATEWAY")
        if g:
            hops.append(g)
    if not hops and event == NEW:
        return None
    return event, KernelRoute(int(table), f"{dst}/{msg.get('dst_len')}", tuple(sorted(set(hops))))


class LearnedTable:
    """The routes one sidecar's kernel tables hold, by peer (``tables``: kernel table id ->
    peer id). :meth:`apply` reports whether the learned set changed."""

    def __init__(self, tables: Mapping[int, str]) -> None:
        self._tables = dict(tables)
        self._routes: dict[tuple[int, str], tuple[str, ...]] = {}

    def set_tables(self, tables: Mapping[int, str]) -> bool:
        """New peer tables; routes of tables no longer listed are forgotten."""
        self._tables = dict(tables)
        gone = [k for k in self._routes if k[0] not in self._tables]
        for k in gone:
            del self._routes[k]
        return bool(gone)

    def apply(self, event: str, route: KernelRoute) -> bool:
        if route.table not in self._tables:
            return False
        key = (route.table, route.dst)
        if event == DEL:
            return self._routes.pop(key, None) is not None
        old = self._routes.get(key)
        self._routes[key] = route.gateways
        return old != route.gateways

    def routes(self) -> tuple[LearnedRoute, ...]:
        """Every learned route, one per (prefix, next hop, peer), sorted."""
        out = [
            LearnedRoute(dst, gw, self._tables[table])
            for (table, dst), gws in self._routes.items()
            for gw in gws
        ]
        return tuple(sorted(out, key=lambda r: (r.dst, r.next_hop, r.peer_id)))

    def count(self, peer_id: str) -> int:
        """Prefixes learned from ``peer_id``."""
        return sum(1 for (t, _d) in self._routes if self._tables.get(t) == peer_id)


__all__ = ["DEL", "NEW", "KernelRoute", "LearnedTable", "parse_route"]
