"""Routers (L3): ARP for the router's ports, local delivery, route lookup with ECMP, TTL,
next-hop resolution and the ICMP errors a router sends.

The router decides the egress port; the engine walks it.
"""

from __future__ import annotations

from netloom.errors import NotYet
from netloom.packet.codec import build, ip_option_types
from netloom.packet.headers import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPOPT_LSRR,
    IPOPT_SSRR,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    Tcp,
)
from netloom.packet.util import int_to_ip, int_to_mac
from netloom.sim.chains import run_chain
from netloom.sim.compiled import CDevice, CPort, CRoute
from netloom.sim.conditions import ACCEPT, REJECT, verdict_name
from netloom.sim.context import Ctx, Snapshot
from netloom.sim.icmp import (
    ADMIN_PROHIBITED,
    FRAG_NEEDED,
    HOST_UNREACHABLE,
    NET_UNREACHABLE,
    PORT_UNREACHABLE,
    TTL_EXCEEDED,
    icmp_error,
)
from netloom.sim.result import (
    F_ETH_DST,
    F_ETH_SRC,
    F_ETH_TYPE,
    F_IP_DST,
    F_IP_PROTO,
    F_IP_SRC,
    F_L4,
)
from netloom.sim.state import ArpLearned
from netloom.sim.uplink import has_sidecar, is_control, to_sidecar

_ROUTES_SUFFIX = ":routes"


def router(c: Ctx, in_port: CPort) -> CPort | None:
    """Route the packet on the router behind ``in_port``: the port it leaves through (headers
    rewritten for the next hop), or None when the router consumes, answers or drops it."""
    dev = c.topo.device(in_port.device_id, True)
    c.tags.add(in_port.device_id)
    if dev is None:
        raise NotYet(("router", in_port.device_id))
    if not dev.up:
        c.step("router", dev.id, dev.name, "drop", "admin down")
        return None
    if not _routable(c, dev, in_port) or not _options_ok(c, dev):
        return None
    entry = c.snapshot()
    if dev.in_filter is not None:
        v = run_chain(c, dev.in_filter, dev.id)
        if v != ACCEPT:
            _router_deny(c, in_port, v, dev.in_filter, entry)
            return None
    ports = c.topo.ports(dev.id)
    if ports is None:
        raise NotYet(("ports", dev.id))
    c.read |= F_IP_DST
    local = ports.own_ips.get(c.ip_dst)
    if local is not None:
        _router_local(c, dev, in_port)
        return None
    return _route(c, dev, in_port, entry)


def _routable(c: Ctx, dev: CDevice, in_port: CPort) -> bool:
    """Whether the packet is IPv4 for the router to route; ARP, other MACs and protocols, and
    an uplink's control traffic for its sidecar end here."""
    c.read |= F_ETH_DST | F_ETH_TYPE
    if c.is_arp:
        _router_arp(c, dev, in_port)
        return False
    if c.eth_dst != in_port.mac:
        c.step("router", dev.id, dev.name, "drop", "not addressed to the router port's MAC")
        return False
    if not c.is_ipv4:
        c.step("router", dev.id, dev.name, "drop", "not IPv4")
        return False
    if has_sidecar(c, in_port) and is_control(c, in_port):
        to_sidecar(c, in_port, "control traffic")
        return False
    return True


def _options_ok(c: Ctx, dev: CDevice) -> bool:
    """IPv4 options (RFC 791 3.1): a malformed list, and a source route unless the router
    allows them, end the packet here. Packets with options are never cached (see Ctx)."""
    ip = c.frame.ip
    if ip is None or not ip.options:
        return True
    types = ip_option_types(ip.options)
    if types is None:
        c.step("router", dev.id, dev.name, "drop", "malformed IPv4 options (RFC 791 3.1)")
        return False
    routes = [t for t in types if t in (IPOPT_LSRR, IPOPT_SSRR)]
    if routes and not dev.allow_source_route:
        name = "LSRR" if routes[0] == IPOPT_LSRR else "SSRR"
        why = f"source-routed ({name}, RFC 791 3.1) and allow_source_route is off (RFC 7126 4.3.3)"
        c.step("router", dev.id, dev.name, "drop", why)
        return False
    return True


def routes_tag(router_id: str) -> str:
    """The tag of the flows that looked a route up on ``router_id``: a new or edited route of
    the router may change their choice (a deleted one changes only the flows that took it,
    tagged with its id). Control traffic of an uplink's sidecar never looks a route up, so a
    storm of learned routes leaves its flows (BGP, BFD) in place."""
    return router_id + _ROUTES_SUFFIX


def _pick(c: Ctx, dev: CDevice, in_port: CPort, entry: Snapshot) -> tuple[CRoute, str] | None:
    """The route to forward by (one of equal-cost routes by flow hash) and its trace detail;
    None when the route (or the lack of one) ends the packet here."""
    table = c.topo.routes(dev.id)
    if table is None:
        raise NotYet(("routes", dev.id))
    c.tags.add(routes_tag(dev.id))
    c.read |= F_IP_SRC | F_IP_DST
    best = table.lookup(c.ip_dst, c.ip_src)
    if not best:
        c.step("router", dev.id, dev.name, "no-route", int_to_ip(c.ip_dst))
        icmp_error(c, in_port, entry, NET_UNREACHABLE)
        return None
    route = best[0] if len(best) == 1 else best[c.ecmp_hash() % len(best)]
    c.tags.add(route.id)
    detail = f"route {route.id[:8]}" + (f" (ecmp 1 of {len(best)})" if len(best) > 1 else "")
    if route.learned_from is not None:
        detail += f" learned from bgp peer {route.learned_from[:8]}"
    if route.type == "blackhole":
        c.step("router", dev.id, dev.name, "drop", detail + " blackhole")
        return None
    if route.type == "reject":
        c.step("router", dev.id, dev.name, "reject", detail)
        icmp_error(c, in_port, entry, ADMIN_PROHIBITED)
        return None
    if route.type == "local" or route.port_id is None:
        c.step("router", dev.id, dev.name, "drop", detail + " local, not a router address")
        return None
    return route, detail


def _route(c: Ctx, dev: CDevice, in_port: CPort, entry: Snapshot) -> CPort | None:
    picked = _pick(c, dev, in_port, entry)
    if picked is None:
        return None
    route, detail = picked
    port_id = route.port_id
    assert port_id is not None
    out = c.topo.port(port_id)
    c.tags.add(port_id)
    if out is None:
        raise NotYet(("port", port_id))
    if not out.up:
        c.step("router", dev.id, dev.name, "unreachable", detail + " egress port down")
        icmp_error(c, in_port, entry, HOST_UNREACHABLE)
        return None
    if c.ttl <= 1:
        c.step("router", dev.id, dev.name, "ttl-exceeded")
        icmp_error(c, in_port, entry, TTL_EXCEEDED)
        return None
    c.ttl -= 1
    c.ttl_decs += 1
    c.step("router", dev.id, dev.name, "route", f"{detail} via {out.label()}")
    if dev.out_filter is not None:
        c.out_port = out
        v = run_chain(c, dev.out_filter, dev.id)
        if v != ACCEPT:
            _router_deny(c, in_port, v, dev.out_filter, entry)
            return None
    ip = c.frame.ip
    assert ip is not None
    if ip.flags & 0x2 and _ip_len(c.frame) > c.cfg.overlay_mtu:
        c.step("router", dev.id, dev.name, "frag-needed", f"mtu {c.cfg.overlay_mtu}")
        icmp_error(c, in_port, entry, FRAG_NEEDED, c.cfg.overlay_mtu)
        return None
    c.eth_dst = _resolve(c, dev, out, route.gateway or c.ip_dst)
    c.eth_src = out.mac
    return out


def _router_deny(c: Ctx, in_port: CPort, v: int, chain_id: str, entry: Snapshot) -> None:
    c.step("chain", chain_id, "", verdict_name(v))
    if v == REJECT:
        icmp_error(c, in_port, entry, ADMIN_PROHIBITED)


def _resolve(c: Ctx, dev: CDevice, out: CPort, nh: int) -> int:
    """The MAC of next hop ``nh`` behind ``out``: a peer router port, a bridge port holding the
    address, or the router's ARP cache. Unknown: emit an ARP request and wait (not yet)."""
    if out.peer_id is not None:
        peer = c.topo.port(out.peer_id)
        c.tags.add(out.peer_id)
        if peer is None:
            raise NotYet(("port", out.peer_id))
        if peer.is_router:
            if peer.ip == nh:
                return peer.mac
        else:
            ports = c.topo.ports(peer.device_id)
            c.tags.add(peer.device_id)
            if ports is None:
                raise NotYet(("ports", peer.device_id))
            mac = ports.ip_to_mac.get(nh)
            if mac is not None:
                return mac
    key = ("arp", dev.id, nh)
    c.tags.add(key)
    got = c.state.arp.get(key)
    if got is not None and got[1] > c.now:
        return got[0]
    req = Frame(
        Ethernet(ETH_BROADCAST, out.mac, ETH_TYPE_ARP), arp=Arp(ARP_REQUEST, out.mac, out.ip, 0, nh)
    )
    c.generated.append((out.id, build(req)))
    c.step("router", dev.id, dev.name, "arp-request", f"who has {int_to_ip(nh)}")
    raise NotYet(("arp", dev.id, int_to_ip(nh)))


def _router_arp(c: Ctx, dev: CDevice, in_port: CPort) -> None:
    arp = c.frame.arp
    assert arp is not None
    c.read |= F_IP_SRC | F_IP_DST | F_IP_PROTO | F_ETH_SRC
    c.cacheable = False
    if arp.tpa != in_port.ip and not _owns_floating_ip(c, dev, in_port, arp.tpa):
        c.step("router", dev.id, dev.name, "drop", f"ARP for {int_to_ip(arp.tpa)}, not mine")
        return
    if arp.spa and arp.spa & in_port.mask == in_port.net:
        key = ("arp", dev.id, arp.spa)
        got = c.state.arp.get(key)
        expires = c.now + c.cfg.arp_timeout_s
        # a reply answers a request (ours, maybe a remote host's): always a refresh, so the
        # entry shared with other agents is renewed too (agent/arpshare.py)
        stale = got is None or got[0] != arp.sha or got[1] < c.now + c.cfg.arp_timeout_s / 2
        if stale or arp.op == ARP_REPLY:
            c.changes.append(ArpLearned(key, arp.sha, expires))
    c.consumed = True
    if arp.tpa == in_port.ip and has_sidecar(c, in_port):
        to_sidecar(c, in_port, "ARP")
    if arp.op == ARP_REQUEST:
        reply = Frame(
            Ethernet(arp.sha, in_port.mac, ETH_TYPE_ARP),
            arp=Arp(ARP_REPLY, in_port.mac, arp.tpa, arp.sha, arp.spa),
        )
        c.generated.append((in_port.id, build(reply)))
        c.step("router", dev.id, dev.name, "arp-reply", f"{int_to_ip(arp.tpa)}")
    else:
        c.step(
            "router", dev.id, dev.name, "arp-learn", f"{int_to_ip(arp.spa)} {int_to_mac(arp.sha)}"
        )


def _owns_floating_ip(c: Ctx, dev: CDevice, in_port: CPort, ip: int) -> bool:
    """Whether ``ip`` is a floating IP of this router on the port's subnet: an address the
    router's inbound chain translates (DNAT /32), as MidoNet answered on the uplink and
    Neutron's router on its gateway port (linked to the external network's bridge)."""
    if dev.in_filter is None or ip & in_port.mask != in_port.net:
        return False
    chain = c.topo.chain(dev.in_filter)
    c.tags.add(dev.in_filter)
    if chain is None:
        raise NotYet(("chain", dev.in_filter))
    return ip in chain.dnat_hosts


def _router_local(c: Ctx, dev: CDevice, in_port: CPort) -> None:
    """A packet for one of the router's addresses: answer pings (RFC 792), refuse UDP with
    port unreachable (RFC 1122 §3.2.2.1), drop the rest."""
    f = c.frame
    c.read |= F_IP_PROTO | F_L4
    c.cacheable = False
    if c.proto == IPPROTO_ICMP and isinstance(f.l4, Icmp) and f.l4.type == 8:
        ip = IPv4(c.ip_dst, c.ip_src, IPPROTO_ICMP, ttl=64)
        reply = Frame(
            Ethernet(c.eth_src, in_port.mac, ETH_TYPE_IPV4),
            ip=ip,
            l4=Icmp(0, 0, f.l4.rest),
            payload=f.payload,
        )
        c.generated.append((in_port.id, build(reply)))
        c.consumed = True
        c.step("router", dev.id, dev.name, "echo-reply", int_to_ip(c.ip_dst))
        return
    if c.proto == IPPROTO_UDP:
        c.step("router", dev.id, dev.name, "port-unreachable", int_to_ip(c.ip_dst))
        icmp_error(c, in_port, c.snapshot(), PORT_UNREACHABLE)
        return
    c.step("router", dev.id, dev.name, "drop", "for the router, not handled")


# ---- ICMP errors -----------------------------------------------------------------------------


def _ip_len(f: Frame) -> int:
    ip = f.ip
    assert ip is not None
    n = ip.header_len + len(f.payload)
    l4 = f.l4
    if isinstance(l4, Tcp):
        n += 20 + len(l4.options)
    elif l4 is not None:
        n += 8
    return n


__all__ = ["router", "routes_tag"]
