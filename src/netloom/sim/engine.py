"""``simulate``: one packet through the virtual topology, as a pure function.

The walk (MidoNet's order): ingress port (anti-spoofing, DHCP, inbound filter) -> device
(inbound filter, bridging or routing, outbound filter) -> egress port (outbound filter) ->
either out of an exterior port or into the peer of an interior port, which starts the next
device. A bound on devices traversed stops forwarding loops.

Nothing here does I/O, reads a clock or draws random numbers: the same packet, topology, state
and ``now`` always give the same :class:`Result`.
"""

from __future__ import annotations

from dataclasses import replace

from netloom.errors import NotYet
from netloom.flows.model import (
    DecTtl,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
)
from netloom.packet.codec import build, build_ipv4, parse
from netloom.packet.headers import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    ParseError,
    Tcp,
    Udp,
)
from netloom.packet.util import int_to_ip
from netloom.sim import dhcp as dhcp_server
from netloom.sim.chains import run_chain
from netloom.sim.compiled import CDevice, CompiledTopology, CPort, CPortSet, compiled
from netloom.sim.conditions import ACCEPT, REJECT, verdict_name
from netloom.sim.context import ICMP_ERROR_TYPES, Ctx, Egress, Inner, Snapshot
from netloom.sim.result import (
    F_ETH_DST,
    F_ETH_SRC,
    F_ETH_TYPE,
    F_IP_DST,
    F_IP_FRAG,
    F_IP_PROTO,
    F_IP_SRC,
    F_L4,
    F_VLAN,
    GeneratedPacket,
    OutputPort,
    Result,
    SimConfig,
    Verdict,
    VirtualAction,
)
from netloom.sim.state import ArpLearned, MacLearned, SimState
from netloom.sim.topology import TopologyView
from netloom.sim.trace import Trace

DEFAULT_CONFIG = SimConfig()
_MCAST = 1 << 40  # the I/G bit of the first octet of a 48-bit MAC


def simulate(
    packet: Frame | bytes,
    in_port_id: str,
    topology: TopologyView | CompiledTopology,
    state: SimState,
    now: float,
    config: SimConfig = DEFAULT_CONFIG,
) -> Result:
    """Simulate ``packet`` arriving on virtual port ``in_port_id``. Never mutates ``state``."""
    if not isinstance(packet, Frame):
        parsed = parse(packet)
        if isinstance(parsed, ParseError):
            return _malformed(in_port_id, parsed)
        packet = parsed
    topo = compiled(topology)
    topo.begin()
    c = Ctx(packet, in_port_id, topo, state, now, config)
    try:
        _enter(c, in_port_id, first=True)
    except NotYet as missing:
        c.step("sim", ":".join(missing.what), "", "not-yet", "waiting for it")
        return _result(c, Verdict.NOT_YET, (missing.what,))
    return _result(c, None, ())


# ---- ports -----------------------------------------------------------------------------------


def _enter(c: Ctx, port_id: str, first: bool) -> None:
    c.devices += 1
    if c.devices > c.cfg.max_devices:
        c.step("sim", port_id, "", "drop", f"loop guard: more than {c.cfg.max_devices} devices")
        return
    c.tags.add(port_id)
    port = c.topo.port(port_id)
    if port is None:
        raise NotYet(("port", port_id))
    if not port.up:
        c.step("port", port.id, port.name, "drop", "admin down")
        return
    c.in_port = port
    c.out_port = None
    if first and port.exterior and port.security and not _spoof_ok(c, port):
        c.step("port", port.id, port.name, "drop", "anti-spoofing")
        return
    c.step("port", port.id, port.name, "ingress")
    if first and not port.is_router and dhcp_server.is_request(c) and dhcp_server.serve(c, port):
        return
    if port.in_filter is not None:
        v = run_chain(c, port.in_filter, port.device_id)
        if v != ACCEPT:
            _deny(c, v, port.in_filter)
            return
    if port.is_router:
        _router(c, port)
    else:
        _bridge(c, port)


def _leave(c: Ctx, port: CPort) -> None:
    c.tags.add(port.id)
    c.out_port = port
    if not port.up:
        c.step("port", port.id, port.name, "drop", "admin down")
        return
    if port.out_filter is not None:
        v = run_chain(c, port.out_filter, port.device_id)
        if v != ACCEPT:
            _deny(c, v, port.out_filter)
            return
    if port.exterior:
        c.egress.append(Egress(port.id, c.headers(), c.ttl_decs, c.inner))
        c.step("port", port.id, port.name, "output")
    elif port.peer_id is not None:
        c.step("port", port.id, port.name, "egress", f"to peer {port.peer_id[:8]}")
        _enter(c, port.peer_id, first=False)
    else:
        c.step("port", port.id, port.name, "drop", "neither bound nor linked")


def _spoof_ok(c: Ctx, port: CPort) -> bool:
    """Port security: the source MAC and IP must be the port's own or an allowed pair."""
    c.read |= F_ETH_SRC | F_ETH_TYPE
    src_mac = c.eth_src
    if c.is_arp:
        c.read |= F_IP_SRC
        c.cacheable = False  # the sender hardware address is checked too
        arp = c.frame.arp
        if arp is None or arp.sha != src_mac:
            return False
        ip = c.ip_src
    elif c.is_ipv4:
        c.read |= F_IP_SRC
        ip = c.ip_src
        if ip == 0 and dhcp_server.is_request(c):
            return src_mac == port.mac or any(m == src_mac for m, _n, _k in port.spoof)
    else:
        return src_mac == port.mac or any(m == src_mac for m, _n, _k in port.spoof)
    return any(m == src_mac and ip & mask == net for m, net, mask in port.spoof)


def _deny(c: Ctx, verdict: int, chain_id: str) -> None:
    c.step("chain", chain_id, "", verdict_name(verdict))
    if verdict == REJECT:
        _reject(c)


# ---- bridge ----------------------------------------------------------------------------------


def _bridge(c: Ctx, in_port: CPort) -> None:
    dev = c.topo.device(in_port.device_id, False)
    c.tags.add(in_port.device_id)
    if dev is None:
        raise NotYet(("bridge", in_port.device_id))
    if not dev.up:
        c.step("bridge", dev.id, dev.name, "drop", "admin down")
        return
    if dev.in_filter is not None:
        v = run_chain(c, dev.in_filter, dev.id)
        if v != ACCEPT:
            _deny(c, v, dev.in_filter)
            return
    ports = c.topo.ports(dev.id)
    if ports is None:
        raise NotYet(("ports", dev.id))
    c.read |= F_ETH_SRC | F_ETH_DST | F_VLAN | F_ETH_TYPE
    _learn(c, dev, in_port, ports)
    if c.is_arp and c.proto == ARP_REQUEST and _arp_suppress(c, dev, in_port, ports):
        return
    dst = c.eth_dst
    if dst & _MCAST:
        _flood(c, dev, in_port, ports, "broadcast" if dst == ETH_BROADCAST else "multicast")
        return
    target = _mac_port(c, dev, ports, dst)
    if target is None:
        _flood(c, dev, in_port, ports, "unknown unicast")
    elif target.id == in_port.id:
        c.step("bridge", dev.id, dev.name, "drop", "destination is on the ingress port")
    else:
        c.step("bridge", dev.id, dev.name, "unicast", f"to {target.label()}")
        _bridge_out(c, dev, target)


def _learn(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet) -> None:
    src = c.eth_src
    if src & _MCAST or src in ports.by_mac:
        return
    if in_port.peer_id is not None:  # a linked router port's MAC is static, not learned
        peer = c.topo.port(in_port.peer_id)
        if peer is not None and peer.mac == src:
            return
    key = ("mac", dev.id, c.vlan, src)
    c.tags.add(key)
    if c.state.macs.get(key) != in_port.id:
        c.changes.append(MacLearned(key, in_port.id))
        c.step("bridge", dev.id, dev.name, "learn", f"{_mac(src)} on {in_port.label()}")


def _mac_port(c: Ctx, dev: CDevice, ports: CPortSet, dst: int) -> CPort | None:
    """Static entries (bridge port MACs, peer router port MACs), then the learned table."""
    port = ports.by_mac.get(dst)
    if port is not None:
        return port
    for p in ports.ports:
        if p.peer_id is not None:
            peer = c.topo.port(p.peer_id)
            c.tags.add(p.peer_id)
            if peer is not None and peer.mac == dst:
                return p
    key = ("mac", dev.id, c.vlan, dst)
    c.tags.add(key)
    learned = c.state.macs.get(key)
    if learned is None:
        return None
    for p in ports.ports:
        if p.id == learned:
            return p
    return None


def _flood(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet, why: str) -> None:
    outs = [p for p in ports.ports if p.id != in_port.id]
    c.step("bridge", dev.id, dev.name, "flood", f"{why} to {len(outs)} ports")
    snap = c.snapshot()
    for p in outs:
        c.restore(snap)
        _bridge_out(c, dev, p)
    c.restore(snap)


def _bridge_out(c: Ctx, dev: CDevice, port: CPort) -> None:
    c.out_port = port
    if dev.out_filter is not None:
        v = run_chain(c, dev.out_filter, dev.id)
        if v != ACCEPT:
            _deny(c, v, dev.out_filter)
            return
    _leave(c, port)


def _arp_suppress(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet) -> bool:
    """Answer an ARP request from what the bridge knows (port fixed IPs, peer router ports)
    instead of flooding it (MidoNet's ARP suppression)."""
    arp = c.frame.arp
    assert arp is not None
    c.read |= F_IP_DST | F_IP_PROTO
    mac = ports.ip_to_mac.get(arp.tpa)
    if mac is None:
        for p in ports.ports:
            if p.peer_id is not None:
                peer = c.topo.port(p.peer_id)
                if peer is not None and peer.is_router and peer.ip == arp.tpa:
                    mac = peer.mac
                    break
    if mac is None or mac == arp.sha:
        return False
    reply = Frame(
        Ethernet(arp.sha, mac, ETH_TYPE_ARP), arp=Arp(ARP_REPLY, mac, arp.tpa, arp.sha, arp.spa)
    )
    c.generated.append((in_port.id, build(reply)))
    c.cacheable = False
    c.consumed = True
    c.step("bridge", dev.id, dev.name, "arp-reply", f"{int_to_ip(arp.tpa)} is at {_mac(mac)}")
    return True


# ---- router ----------------------------------------------------------------------------------


def _router(c: Ctx, in_port: CPort) -> None:
    dev = c.topo.device(in_port.device_id, True)
    c.tags.add(in_port.device_id)
    if dev is None:
        raise NotYet(("router", in_port.device_id))
    if not dev.up:
        c.step("router", dev.id, dev.name, "drop", "admin down")
        return
    c.read |= F_ETH_DST | F_ETH_TYPE
    if c.is_arp:
        _router_arp(c, dev, in_port)
        return
    if c.eth_dst != in_port.mac:
        c.step("router", dev.id, dev.name, "drop", "not addressed to the router port's MAC")
        return
    if not c.is_ipv4:
        c.step("router", dev.id, dev.name, "drop", "not IPv4")
        return
    entry = c.snapshot()
    if dev.in_filter is not None:
        v = run_chain(c, dev.in_filter, dev.id)
        if v != ACCEPT:
            _router_deny(c, dev, in_port, v, dev.in_filter, entry)
            return
    ports = c.topo.ports(dev.id)
    if ports is None:
        raise NotYet(("ports", dev.id))
    c.read |= F_IP_DST
    local = ports.own_ips.get(c.ip_dst)
    if local is not None:
        _router_local(c, dev, in_port)
        return
    _route(c, dev, in_port, entry)


def _route(c: Ctx, dev: CDevice, in_port: CPort, entry: Snapshot) -> None:
    table = c.topo.routes(dev.id)
    if table is None:
        raise NotYet(("routes", dev.id))
    c.read |= F_IP_SRC | F_IP_DST
    best = table.lookup(c.ip_dst, c.ip_src)
    if not best:
        c.step("router", dev.id, dev.name, "no-route", int_to_ip(c.ip_dst))
        _icmp_error(c, in_port, entry, 3, 0)  # network unreachable
        return
    route = best[0] if len(best) == 1 else best[c.flow_hash() % len(best)]
    c.tags.add(route.id)
    detail = f"route {route.id[:8]}" + (f" (ecmp 1 of {len(best)})" if len(best) > 1 else "")
    if route.type == "blackhole":
        c.step("router", dev.id, dev.name, "drop", detail + " blackhole")
        return
    if route.type == "reject":
        c.step("router", dev.id, dev.name, "reject", detail)
        _icmp_error(c, in_port, entry, 3, 13)  # communication administratively prohibited
        return
    if route.type == "local" or route.port_id is None:
        c.step("router", dev.id, dev.name, "drop", detail + " local, not a router address")
        return
    out = c.topo.port(route.port_id)
    c.tags.add(route.port_id)
    if out is None:
        raise NotYet(("port", route.port_id))
    if not out.up:
        c.step("router", dev.id, dev.name, "unreachable", detail + " egress port down")
        _icmp_error(c, in_port, entry, 3, 1)  # host unreachable
        return
    if c.ttl <= 1:
        c.step("router", dev.id, dev.name, "ttl-exceeded")
        _icmp_error(c, in_port, entry, 11, 0)
        return
    c.ttl -= 1
    c.ttl_decs += 1
    c.step("router", dev.id, dev.name, "route", f"{detail} via {out.label()}")
    if dev.out_filter is not None:
        c.out_port = out
        v = run_chain(c, dev.out_filter, dev.id)
        if v != ACCEPT:
            _router_deny(c, dev, in_port, v, dev.out_filter, entry)
            return
    ip = c.frame.ip
    assert ip is not None
    if ip.flags & 0x2 and _ip_len(c.frame) > c.cfg.overlay_mtu:
        c.step("router", dev.id, dev.name, "frag-needed", f"mtu {c.cfg.overlay_mtu}")
        _icmp_error(c, in_port, entry, 3, 4, c.cfg.overlay_mtu)  # RFC 1191 next-hop MTU
        return
    mac = _resolve(c, dev, out, route.gateway or c.ip_dst)
    c.eth_src = out.mac
    c.eth_dst = mac
    _leave(c, out)


def _router_deny(
    c: Ctx, dev: CDevice, in_port: CPort, v: int, chain_id: str, entry: Snapshot
) -> None:
    c.step("chain", chain_id, "", verdict_name(v))
    if v == REJECT:
        _icmp_error(c, in_port, entry, 3, 13)


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
    if arp.tpa != in_port.ip:
        c.step("router", dev.id, dev.name, "drop", f"ARP for {int_to_ip(arp.tpa)}, not mine")
        return
    if arp.spa and arp.spa & in_port.mask == in_port.net:
        key = ("arp", dev.id, arp.spa)
        got = c.state.arp.get(key)
        expires = c.now + c.cfg.arp_timeout_s
        if got is None or got[0] != arp.sha or got[1] < c.now + c.cfg.arp_timeout_s / 2:
            c.changes.append(ArpLearned(key, arp.sha, expires))
    c.consumed = True
    if arp.op == ARP_REQUEST:
        reply = Frame(
            Ethernet(arp.sha, in_port.mac, ETH_TYPE_ARP),
            arp=Arp(ARP_REPLY, in_port.mac, in_port.ip, arp.sha, arp.spa),
        )
        c.generated.append((in_port.id, build(reply)))
        c.step("router", dev.id, dev.name, "arp-reply", f"{int_to_ip(in_port.ip)}")
    else:
        c.step("router", dev.id, dev.name, "arp-learn", f"{int_to_ip(arp.spa)} {_mac(arp.sha)}")


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
        _icmp_error(c, in_port, c.snapshot(), 3, 3)
        return
    c.step("router", dev.id, dev.name, "drop", "for the router, not handled")


# ---- ICMP errors -----------------------------------------------------------------------------


def _entry_frame(c: Ctx) -> Frame:
    """The packet as it is now (headers rewritten so far), for quoting in ICMP errors."""
    f = c.frame
    ip = f.ip
    assert ip is not None
    l4 = f.l4
    if isinstance(l4, (Tcp, Udp)):
        l4 = replace(l4, sport=c.tp_src, dport=c.tp_dst)
    elif isinstance(l4, Icmp) and l4.type in (0, 8):
        l4 = replace(l4, rest=(c.icmp_id << 16) | (l4.rest & 0xFFFF))
    payload = f.payload if c.inner is None else _patch_quote(f.payload, c.inner)
    eth = Ethernet(c.eth_dst, c.eth_src, f.eth.ethertype, f.eth.vlan)
    return Frame(eth, ip=replace(ip, src=c.ip_src, dst=c.ip_dst, ttl=c.ttl), l4=l4, payload=payload)


def _may_send_error(c: Ctx, entry: Frame) -> bool:
    """RFC 1812 §4.3.2.7: no ICMP error about an ICMP error, a non-first fragment, or a
    packet to/from a broadcast or multicast address."""
    ip = entry.ip
    assert ip is not None
    if ip.frag_offset:
        return False
    if isinstance(entry.l4, Icmp) and entry.l4.type in ICMP_ERROR_TYPES:
        return False
    if ip.src == 0 or ip.src >> 28 == 0xE or ip.dst >> 28 == 0xE or ip.dst == 0xFFFFFFFF:
        return False
    return not (entry.eth.dst & _MCAST)


def _icmp_error(
    c: Ctx, in_port: CPort, snap: Snapshot, itype: int, code: int, mtu: int = 0
) -> None:
    """Send ICMP ``itype``/``code`` from the router port the packet came in on, quoting the
    packet as it arrived at the router (IP header + 8 bytes, RFC 792)."""
    c.cacheable = False
    now = c.snapshot()
    c.restore(snap)
    entry = _entry_frame(c)
    c.restore(now)
    c.read |= F_IP_SRC | F_IP_FRAG | F_IP_PROTO
    if not _may_send_error(c, entry):
        return
    ip = entry.ip
    assert ip is not None
    quote = build_ipv4(ip, entry.l4, entry.payload)[: ip.header_len + 8]
    err = Frame(
        Ethernet(entry.eth.src, in_port.mac, ETH_TYPE_IPV4),
        ip=IPv4(in_port.ip, ip.src, IPPROTO_ICMP, ttl=64),
        l4=Icmp(itype, code, mtu & 0xFFFF),
        payload=quote,
    )
    c.generated.append((in_port.id, build(err)))
    c.step("icmp", in_port.id, in_port.name, f"error {itype}/{code}", f"to {int_to_ip(ip.src)}")


def _reject(c: Ctx) -> None:
    """A reject rule: ICMP administratively prohibited (RFC 1812 §5.2.7.1) back to the
    sender, out of the port the packet entered the virtual network on."""
    f = c.frame
    c.cacheable = False
    if f.ip is None:
        return
    entry = Frame(f.eth, ip=f.ip, l4=f.l4, payload=f.payload)
    if not _may_send_error(c, entry):
        return
    quote = build_ipv4(f.ip, f.l4, f.payload)[: f.ip.header_len + 8]
    err = Frame(
        Ethernet(f.eth.src, f.eth.dst, ETH_TYPE_IPV4),
        ip=IPv4(f.ip.dst, f.ip.src, IPPROTO_ICMP, ttl=64),
        l4=Icmp(3, 13, 0),
        payload=quote,
    )
    c.generated.append((c.in_port_id, build(err)))
    c.step("icmp", c.in_port_id, "", "error 3/13", f"reject to {int_to_ip(f.ip.src)}")


def _patch_quote(payload: bytes, inner: Inner) -> bytes:
    """Rewrite the addresses/ports of the datagram quoted in an ICMP error."""
    if len(payload) < 20:
        return payload
    proto, src, sport, dst, dport = inner
    ihl = (payload[0] & 0xF) * 4
    hdr = bytearray(payload[:ihl])
    hdr[10:12] = b"\x00\x00"
    hdr[12:16] = src.to_bytes(4, "big")
    hdr[16:20] = dst.to_bytes(4, "big")
    from netloom.packet.checksum import checksum

    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    rest = bytearray(payload[ihl:])
    if proto in (6, 17) and len(rest) >= 4:
        rest[0:2] = sport.to_bytes(2, "big")
        rest[2:4] = dport.to_bytes(2, "big")
        if proto == 17 and len(rest) >= 8:
            rest[6:8] = b"\x00\x00"  # the quoted UDP checksum is now stale: 0 = none
    elif proto == IPPROTO_ICMP and len(rest) >= 6:
        rest[4:6] = (sport if rest[0] == 8 else dport).to_bytes(2, "big")
    return bytes(hdr) + bytes(rest)


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


def _mac(v: int) -> str:
    h = f"{v:012x}"
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


# ---- result ----------------------------------------------------------------------------------


def _flow_key(f: Frame) -> tuple[int, ...]:
    eth = f.eth
    vlan = eth.vlan.vid if eth.vlan is not None else 0
    ip = f.ip
    if ip is not None:
        frag = 0 if not ip.is_fragment else (1 if ip.frag_offset == 0 else 2)
        l4 = f.l4
        if l4 is None:
            tps, tpd = 0, 0
        elif type(l4) is Icmp:
            tps, tpd = l4.type, l4.code
        else:
            tps, tpd = l4.sport, l4.dport  # type: ignore[union-attr]
        return (
            0,
            0,
            eth.src,
            eth.dst,
            eth.ethertype,
            vlan,
            ip.src,
            ip.dst,
            ip.proto,
            frag,
            tps,
            tpd,
        )
    arp = f.arp
    if arp is not None:
        return (0, 0, eth.src, eth.dst, eth.ethertype, vlan, arp.spa, arp.tpa, arp.op, 0, 0, 0)
    return (0, 0, eth.src, eth.dst, eth.ethertype, vlan, 0, 0, 0, 0, 0, 0)


_SETTERS = (SetEthSrc, SetEthDst, SetIpSrc, SetIpDst, SetTpSrc, SetTpDst)


def _actions(c: Ctx, orig: tuple[int, ...]) -> tuple[VirtualAction, ...] | None:
    """Header rewrites + outputs for the egress copies, in order of TTL decrements. None when
    a rewrite cannot be expressed as a flow action (ICMP id, quoted datagram)."""
    out: list[VirtualAction] = []
    cur = orig
    decs = 0
    for e in sorted(c.egress, key=lambda e: e.ttl_decs):
        h = e.headers
        if h[6] != orig[6] or e.inner != c.frame_inner:
            return None
        for i in range(6):
            if h[i] != cur[i]:
                out.append(_SETTERS[i](h[i]))
        cur = h
        while decs < e.ttl_decs:
            out.append(DecTtl())
            decs += 1
        out.append(OutputPort(e.port_id))
    return tuple(out)


def _materialize(c: Ctx, e: Egress) -> bytes:
    f = c.frame
    h = e.headers
    eth = Ethernet(h[1], h[0], f.eth.ethertype, f.eth.vlan)
    if f.ip is None:
        return build(Frame(eth, arp=f.arp, payload=f.payload))
    ip = replace(f.ip, src=h[2], dst=h[3], ttl=max(f.ip.ttl - e.ttl_decs, 0))
    l4 = f.l4
    if isinstance(l4, (Tcp, Udp)):
        l4 = replace(l4, sport=h[4], dport=h[5])
    elif isinstance(l4, Icmp) and l4.type in (0, 8):
        l4 = replace(l4, rest=(h[6] << 16) | (l4.rest & 0xFFFF))
    payload = f.payload if e.inner is None else _patch_quote(f.payload, e.inner)
    return build(Frame(eth, ip=ip, l4=l4, payload=payload))


def _result(c: Ctx, verdict: Verdict | None, awaiting: tuple[tuple[str, ...], ...]) -> Result:
    key = _flow_key(c.frame)
    generated = [GeneratedPacket(p, d) for p, d in c.generated]
    actions: tuple[VirtualAction, ...] = ()
    if verdict is None:
        orig = (key[2], key[3], key[6], key[7], key[10], key[11], c.orig_icmp_id)
        acts = _actions(c, orig)
        if acts is None:  # deliver rewritten copies as generated packets instead
            c.cacheable = False
            generated.extend(GeneratedPacket(e.port_id, _materialize(c, e)) for e in c.egress)
        else:
            actions = acts
        verdict = Verdict.FORWARD if c.egress else Verdict.CONSUMED if c.consumed else Verdict.DROP
    cacheable = c.cacheable and not generated and verdict is not Verdict.NOT_YET
    return Result(
        verdict,
        c.in_port_id,
        key,
        c.read,
        actions,
        frozenset(c.tags),
        tuple(c.changes),
        tuple(generated),
        Trace(c.trace),
        cacheable,
        awaiting,
    )


def _malformed(in_port_id: str, err: ParseError) -> Result:
    trace = Trace([("packet", in_port_id, "", "drop", f"malformed: {err.reason} @{err.offset}")])
    return Result(
        Verdict.DROP, in_port_id, (0,) * 12, 1, (), frozenset({in_port_id}), (), (), trace, False
    )


# ---- helpers for callers ---------------------------------------------------------------------


def apply_actions(packet: bytes, actions: tuple[VirtualAction, ...]) -> list[tuple[str, bytes]]:
    """What the datapath would emit for ``packet`` under ``actions``: (port id, bytes) per
    output, with rewrites and checksums applied. The reference for datapath tests."""
    f = parse(packet)
    if isinstance(f, ParseError):
        return []
    out: list[tuple[str, bytes]] = []
    for a in actions:
        if isinstance(a, OutputPort):
            out.append((a.port_id, build(f)))
        elif isinstance(a, SetEthSrc):
            f.eth.src = a.mac
        elif isinstance(a, SetEthDst):
            f.eth.dst = a.mac
        elif isinstance(a, DecTtl) and f.ip is not None:
            f.ip.ttl -= 1
        elif f.ip is not None:
            _apply_l3(f, a)
    return out


def _apply_l3(f: Frame, a: VirtualAction) -> None:
    ip = f.ip
    assert ip is not None
    if isinstance(a, SetIpSrc):
        ip.src = a.ip
    elif isinstance(a, SetIpDst):
        ip.dst = a.ip
    elif isinstance(a, SetTpSrc) and isinstance(f.l4, (Tcp, Udp)):
        f.l4.sport = a.port
    elif isinstance(a, SetTpDst) and isinstance(f.l4, (Tcp, Udp)):
        f.l4.dport = a.port


def deliver(
    result: Result,
    packet: bytes,
    topology: TopologyView | CompiledTopology,
    state: SimState,
    now: float,
    config: SimConfig = DEFAULT_CONFIG,
    max_hops: int = 4,
) -> list[tuple[str, bytes]]:
    """Where everything a simulation emits ends up: forwarded copies (actions applied) and
    generated packets, the latter simulated onwards from the peer of an interior port.
    Returns (exterior port id, bytes). Reads ``state`` only, like ``simulate``."""
    topo = compiled(topology)
    out = apply_actions(packet, result.actions)
    pending = [(g.port_id, g.data, 0) for g in result.generated]
    while pending:
        port_id, data, hops = pending.pop(0)
        port = topo.port(port_id)
        if port is None:
            continue
        if port.exterior:
            out.append((port_id, data))
        elif port.peer_id is not None and hops < max_hops:
            r = simulate(data, port.peer_id, topo, state, now, config)
            out.extend(apply_actions(data, r.actions))
            pending.extend((g.port_id, g.data, hops + 1) for g in r.generated)
    return out


__all__ = ["DEFAULT_CONFIG", "apply_actions", "deliver", "simulate"]
