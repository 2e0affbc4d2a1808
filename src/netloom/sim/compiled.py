"""Topology records compiled for the hot path.

Pydantic records are convenient at the boundary but slow to read in a loop. Each record (or
child collection) is compiled once per version into slots objects holding integers: IPs and
MACs as ints, prefixes as (network, mask), rules with their conditions pre-built, routes
bucketed by prefix length. The cache is keyed on the identity of what the view returned (see
:mod:`netloom.sim.topology`), so a changed record is recompiled on its next use.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from netloom.model.records import (
    Bridge,
    Chain,
    DhcpSubnet,
    IPAddrGroup,
    Port,
    Record,
    Route,
    Router,
    RouteType,
)
from netloom.packet.util import ip_to_int, mac_to_int, prefix
from netloom.sim.chainindex import ChainIndex
from netloom.sim.conditions import A_DNAT, A_SNAT, CRule, compile_rule
from netloom.sim.topology import TopologyView

T = TypeVar("T")


class CPort:
    __slots__ = (
        "device_id",
        "exterior",
        "fixed_ips",
        "groups",
        "host_id",
        "id",
        "in_filter",
        "ip",
        "is_router",
        "mac",
        "mask",
        "name",
        "net",
        "out_filter",
        "peer_id",
        "plen",
        "security",
        "spoof",
        "tunnel_key",
        "up",
    )

    def __init__(self, p: Port) -> None:
        self.id = p.id
        self.name = p.name
        self.device_id = p.device_id
        self.is_router = p.type == "router"
        self.up = p.admin_state_up
        self.mac = mac_to_int(p.mac) if p.mac else 0
        self.exterior = p.host_id is not None
        self.host_id = p.host_id
        self.tunnel_key = p.tunnel_key
        self.peer_id = p.peer_id
        self.in_filter = p.inbound_filter_id
        self.out_filter = p.outbound_filter_id
        self.groups = frozenset(p.port_group_ids)
        self.fixed_ips = frozenset(ip_to_int(ip) for ip in p.fixed_ips)
        if p.address is not None:
            self.net, self.mask, self.plen = prefix(p.address)
            self.ip = ip_to_int(p.address.split("/")[0])
        else:
            self.net = self.mask = self.plen = self.ip = 0
        self.security = p.port_security_enabled and not self.is_router
        # Anti-spoofing: the (mac, net, mask) a VM may send from (its fixed IPs + allowed pairs).
        spoof = [(self.mac, ip, 0xFFFFFFFF) for ip in self.fixed_ips]
        for pair in p.allowed_address_pairs:
            net, mask, _ = prefix(pair.ip_address)
            spoof.append((mac_to_int(pair.mac) if pair.mac else self.mac, net, mask))
        self.spoof = tuple(spoof)

    def label(self) -> str:
        return self.name or self.id[:8]


class CDevice:
    __slots__ = ("allow_source_route", "id", "in_filter", "is_router", "name", "out_filter", "up")

    def __init__(self, d: Bridge | Router) -> None:
        self.id = d.id
        self.name = d.name
        self.is_router = isinstance(d, Router)
        self.allow_source_route = isinstance(d, Router) and d.allow_source_route
        self.up = d.admin_state_up
        self.in_filter = d.inbound_filter_id
        self.out_filter = d.outbound_filter_id


class CPortSet:
    """The ports of one device, indexed for bridging (static MACs, known IP->MAC) and routing
    (the router's own addresses)."""

    __slots__ = ("by_mac", "ip_to_mac", "own_ips", "ports")

    def __init__(self, ports: list[CPort]) -> None:
        self.ports = tuple(ports)
        self.by_mac: dict[int, CPort] = {p.mac: p for p in ports if p.mac and not p.is_router}
        self.ip_to_mac: dict[int, int] = {}
        for p in ports:
            if p.mac:
                for ip in p.fixed_ips:
                    self.ip_to_mac[ip] = p.mac
        self.own_ips: dict[int, CPort] = {p.ip: p for p in ports if p.is_router}


class CRoute:
    __slots__ = (
        "gateway",
        "id",
        "learned_from",
        "port_id",
        "src_len",
        "src_mask",
        "src_net",
        "type",
        "weight",
    )

    def __init__(self, r: Route) -> None:
        self.id = r.id
        self.learned_from = r.learned_from  # the bgp_peer a learned route came from
        self.src_net, self.src_mask, self.src_len = prefix(r.src)
        self.weight = r.weight
        self.type = r.type.value
        self.port_id = r.next_hop_port_id
        self.gateway = ip_to_int(r.next_hop_gateway) if r.next_hop_gateway else 0


class CRouteTable:
    """Routes bucketed by destination prefix length, longest first, for LPM by dict lookups.
    A route identical to another (a port's connected route and a hand-made copy of it) is
    loaded once, the hand-made one kept: two would only make a one-way ECMP group, and flows
    tagged with the hand-made route are simulated again when it goes."""

    __slots__ = ("buckets",)

    def __init__(self, routes: Sequence[Route]) -> None:
        by_len: dict[int, dict[int, list[CRoute]]] = {}
        seen: set[tuple[object, ...]] = set()
        for r in sorted(routes, key=lambda r: r.system):
            same = (r.dst, r.src, r.weight, r.type, r.next_hop_port_id, r.next_hop_gateway)
            if same in seen:
                continue
            seen.add(same)
            net, _mask, plen = prefix(r.dst)
            by_len.setdefault(plen, {}).setdefault(net, []).append(CRoute(r))
        self.buckets = tuple(
            (((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF), by_len[plen])
            for plen in sorted(by_len, reverse=True)
        )

    def lookup(self, dst: int, src: int) -> list[CRoute]:
        """The equal-cost best routes for (dst, src): longest destination prefix, then longest
        source prefix, then lowest weight; all routes tied on those are returned (ECMP)."""
        for mask, nets in self.buckets:
            cands = nets.get(dst & mask)
            if cands is None:
                continue
            best: list[CRoute] = []
            for r in cands:
                if src & r.src_mask != r.src_net:
                    continue
                if not best:
                    best = [r]
                    continue
                b = best[0]
                if (r.src_len, -r.weight) > (b.src_len, -b.weight):
                    best = [r]
                elif r.src_len == b.src_len and r.weight == b.weight:
                    best.append(r)
            if best:
                return best
        return []


class CChain:
    __slots__ = ("dnat_hosts", "id", "index", "jumps", "name", "rules", "stateful_nat")

    def __init__(self, chain: Chain, rules: Sequence[Any]) -> None:
        self.id = chain.id
        self.name = chain.name
        self.rules: tuple[CRule, ...] = tuple(compile_rule(r) for r in rules)
        for rule in self.rules:
            rule.title = rule.label(chain.name or chain.id[:8])
        # actions (A_SNAT/A_DNAT) of this chain's stateful NAT rules, and the chains it jumps
        # to: what a reverse-NAT rule needs to know whether a binding can exist at its zone
        self.stateful_nat = frozenset(
            r.action for r in self.rules if r.action in (A_SNAT, A_DNAT) and not r.static
        )
        self.jumps = tuple(r.jump for r in self.rules if r.jump is not None)
        # the single addresses this chain's DNAT rules translate (a router's floating IPs)
        self.dnat_hosts = frozenset(
            ip_to_int(r.nw_dst.split("/")[0])
            for r in rules
            if r.action == "dnat" and r.nw_dst and r.nw_dst.endswith("/32") and not r.inv_nw_dst
        )
        self.index = ChainIndex(rules)  # which rules a packet can match, by lookups


class CAddrGroup:
    """An IP address group for membership tests: its addresses in one set, its prefixes in
    one set per prefix length, longest first; a test costs a set lookup per distinct prefix
    length (at most 33), whatever the group's size."""

    __slots__ = ("hosts", "nets")

    def __init__(self, entries: Sequence[str]) -> None:
        hosts: set[int] = set()
        by_mask: dict[int, set[int]] = {}
        for entry in entries:
            if "/" in entry:
                net, mask, _ = prefix(entry)
                by_mask.setdefault(mask, set()).add(net)
            else:
                hosts.add(ip_to_int(entry))
        self.hosts = frozenset(hosts)
        self.nets = tuple((m, frozenset(by_mask[m])) for m in sorted(by_mask, reverse=True))

    def __contains__(self, ip: int) -> bool:
        return ip in self.hosts or any(ip & mask in nets for mask, nets in self.nets)


class CSubnet:
    __slots__ = (
        "dns",
        "gateway",
        "hosts",
        "lease",
        "mask",
        "mtu",
        "net",
        "plen",
        "record",
        "routes",
    )

    def __init__(self, s: DhcpSubnet) -> None:
        self.record = s
        self.net, self.mask, self.plen = prefix(s.cidr)
        self.gateway = ip_to_int(s.gateway) if s.gateway else 0
        self.dns = [ip_to_int(d) for d in s.dns_servers]
        self.mtu = s.mtu
        self.lease = s.lease_seconds
        self.hosts = {mac_to_int(h.mac): (ip_to_int(h.ip), h.name) for h in s.hosts}
        self.routes = [(*prefix(r.dst)[::2], ip_to_int(r.gateway)) for r in s.opt121_routes]


class CompiledTopology:
    """Compiles and caches what a :class:`TopologyView` returns (see module docstring).

    Two levels: ``_cache`` validates each entry against the identity of the record it came
    from (always correct); the ``_fast`` maps skip the view entirely while the view's
    ``generation`` is unchanged (checked once per simulation by :meth:`begin`).
    """

    __slots__ = ("__weakref__", "_cache", "_fast", "_gen", "view")

    def __init__(self, view: TopologyView) -> None:
        self.view = view
        self._cache: dict[tuple[str, str], tuple[object, object, Any]] = {}
        self._fast: dict[str, dict[str, Any]] = {k: {} for k in _SLOTS}
        self._gen: object = None

    def begin(self) -> None:
        """Called at the start of each simulation: drop the fast maps if the view changed
        (or cannot tell, having no ``generation``)."""
        gen = getattr(self.view, "generation", None)
        if gen is None or gen != self._gen:
            for m in self._fast.values():
                m.clear()
            self._gen = gen

    def _compiled(self, slot: str, id: str, src: object, extra: object, make: Callable[[], T]) -> T:
        key = (slot, id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is src and hit[1] is extra:
            value: T = hit[2]
        else:
            value = make()
            self._cache[key] = (src, extra, value)
        self._fast[slot][id] = value
        return value

    def port(self, id: str) -> CPort | None:
        hit: CPort | None = self._fast["port"].get(id)
        if hit is not None:
            return hit
        rec = self.view.get("port", id)
        if not isinstance(rec, Port):
            return None
        return self._compiled("port", id, rec, None, lambda: CPort(rec))

    def device(self, id: str, is_router: bool) -> CDevice | None:
        hit: CDevice | None = self._fast["dev"].get(id)
        if hit is not None and hit.is_router == is_router:
            return hit
        rec = self.view.get("router" if is_router else "bridge", id)
        if not isinstance(rec, (Bridge, Router)):
            return None
        return self._compiled("dev", id, rec, None, lambda: CDevice(rec))

    def ports(self, device_id: str) -> CPortSet | None:
        hit: CPortSet | None = self._fast["ports"].get(device_id)
        if hit is not None:
            return hit
        recs = self.view.ports(device_id)
        if recs is None:
            return None
        return self._compiled(
            "ports", device_id, recs, None, lambda: CPortSet([CPort(p) for p in recs])
        )

    def routes(self, router_id: str) -> CRouteTable | None:
        hit: CRouteTable | None = self._fast["routes"].get(router_id)
        if hit is not None:
            return hit
        recs = self.view.routes(router_id)
        if recs is None:
            return None
        return self._compiled("routes", router_id, recs, None, lambda: CRouteTable(recs))

    def chain(self, id: str) -> CChain | None:
        hit: CChain | None = self._fast["chain"].get(id)
        if hit is not None:
            return hit
        rec = self.view.get("chain", id)
        if not isinstance(rec, Chain):
            return None
        rules = self.view.rules(id)
        if rules is None:
            return None
        return self._compiled("chain", id, rec, rules, lambda: CChain(rec, rules))

    def zone_nat(self, zone: str, action: int, tags: set[object]) -> bool:
        """Whether a stateful NAT rule with ``action`` (A_SNAT or A_DNAT) can run at ``zone``
        (a device id: its filters, its ports' filters and the chains they jump to), i.e.
        whether the matching reverse-NAT rule may find a binding there. Static rules bind
        nothing. The chains and the device go into ``tags``: the answer changes with them.
        Anything missing counts as "maybe" (look the binding up)."""
        hit: tuple[frozenset[int], tuple[object, ...]] | None = self._fast["znat"].get(zone)
        if hit is None:
            hit = self._zone_nat(zone)
            self._fast["znat"][zone] = hit
        tags.update(hit[1])
        return action in hit[0]

    def _zone_nat(self, zone: str) -> tuple[frozenset[int], tuple[object, ...]]:
        maybe = frozenset((A_SNAT, A_DNAT))
        dev = self.device(zone, True) or self.device(zone, False)
        ports = self.ports(zone)
        if dev is None or ports is None:
            return maybe, (zone,)
        todo = [dev.in_filter, dev.out_filter]
        for p in ports.ports:  # their ids are tags too: a port's filters can change
            todo += (p.in_filter, p.out_filter)
        deps: tuple[object, ...] = (zone, *(p.id for p in ports.ports))
        seen: set[str] = set()
        found: set[int] = set()
        while todo:
            cid = todo.pop()
            if cid is None or cid in seen:
                continue
            seen.add(cid)
            chain = self.chain(cid)
            if chain is None:
                return maybe, (*deps, *seen)
            found |= chain.stateful_nat
            todo += chain.jumps
        return frozenset(found), (*deps, *seen)

    def addr_group(self, id: str) -> CAddrGroup | frozenset[int] | None:
        """The group's addresses for ``in`` tests: a frozenset when it holds no prefix."""
        hit: CAddrGroup | frozenset[int] | None = self._fast["ipg"].get(id)
        if hit is not None:
            return hit
        rec = self.view.get("ip_addr_group", id)
        if not isinstance(rec, IPAddrGroup):
            return None
        return self._compiled("ipg", id, rec, None, lambda: _addr_group(rec.addresses))

    def subnets(self, bridge_id: str) -> list[CSubnet] | None:
        hit: list[CSubnet] | None = self._fast["dhcp"].get(bridge_id)
        if hit is not None:
            return hit
        recs = self.view.dhcp_subnets(bridge_id)
        if recs is None:
            return None
        return self._compiled(
            "dhcp", bridge_id, recs, None, lambda: [CSubnet(s) for s in recs if s.enabled]
        )

    def get(self, kind: str, id: str) -> Record | None:
        return self.view.get(kind, id)


def _addr_group(entries: Sequence[str]) -> CAddrGroup | frozenset[int]:
    group = CAddrGroup(entries)
    return group if group.nets else group.hosts


_SLOTS = ("port", "dev", "ports", "routes", "chain", "ipg", "dhcp", "znat")

_COMPILED: weakref.WeakKeyDictionary[Any, CompiledTopology] = weakref.WeakKeyDictionary()


def compiled(view: TopologyView | CompiledTopology) -> CompiledTopology:
    """The compile cache of ``view`` (created on first use, kept while the view lives)."""
    if isinstance(view, CompiledTopology):
        return view
    try:
        got = _COMPILED.get(view)
        if got is None:
            got = _COMPILED[view] = CompiledTopology(view)
        return got
    except TypeError:  # a view that cannot be weakly referenced: compile afresh
        return CompiledTopology(view)


__all__ = [
    "CAddrGroup",
    "CChain",
    "CDevice",
    "CPort",
    "CPortSet",
    "CRoute",
    "CRouteTable",
    "CSubnet",
    "CompiledTopology",
    "RouteType",
    "compiled",
]
