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
from netloom.packet.codec import build, parse
from netloom.packet.headers import (
    Ethernet,
    Frame,
    Icmp,
    ParseError,
    Tcp,
    Udp,
)
from netloom.sim import dhcp as dhcp_server
from netloom.sim.bridge import bridge, bridge_egress
from netloom.sim.chains import run_chain
from netloom.sim.compiled import CompiledTopology, CPort, compiled
from netloom.sim.conditions import ACCEPT
from netloom.sim.context import Ctx, Egress
from netloom.sim.icmp import deny, patch_quote
from netloom.sim.result import (
    F_CT_STATE,
    F_ETH_SRC,
    F_ETH_TYPE,
    F_IP_SRC,
    F_VLAN,
    GeneratedPacket,
    OutputPort,
    Result,
    SimConfig,
    Verdict,
    VirtualAction,
)
from netloom.sim.router import router
from netloom.sim.state import SimState
from netloom.sim.topology import TopologyView
from netloom.sim.trace import Trace
from netloom.sim.uplink import from_sidecar, uplink_of

DEFAULT_CONFIG = SimConfig()


def simulate(
    packet: Frame | bytes,
    in_port_id: str,
    topology: TopologyView | CompiledTopology,
    state: SimState,
    now: float,
    config: SimConfig = DEFAULT_CONFIG,
    ct_state: int = 0,
) -> Result:
    """Simulate ``packet`` arriving on virtual port ``in_port_id``. Never mutates ``state``.

    ``ct_state``: what the datapath's conntrack said of the packet (``flows.model.CT_*``),
    read by stateful rules when ``config.kernel_conntrack``. What the datapath cannot track
    alone is simulated again with kernel conntrack off (the agent's table): a packet that
    meets a stateful NAT rule (its bindings live in the agent), and a decision that is no
    flow (generated replies, non-cacheable results: what answers them is simulated by the
    agent, which must know the connection)."""
    if not isinstance(packet, Frame):
        parsed = parse(packet)
        if isinstance(parsed, ParseError):
            return _malformed(in_port_id, parsed)
        packet = parsed
    topo = compiled(topology)
    topo.begin()
    c = Ctx(packet, in_port_id, topo, state, now, config, ct_state)
    try:
        _start(c, in_port_id)
    except NotYet as missing:
        c.step("sim", ":".join(missing.what), "", "not-yet", "waiting for it")
        r = _result(c, Verdict.NOT_YET, (missing.what,))
    else:
        r = _result(c, None, ())
    agent_only = c.nat_state or not r.cacheable or r.generated
    if config.kernel_conntrack and c.read & F_CT_STATE and agent_only:
        agent_ct = replace(config, kernel_conntrack=False)
        return simulate(packet, in_port_id, topo, state, now, agent_ct, ct_state)
    return r


# ---- ports -----------------------------------------------------------------------------------


def _start(c: Ctx, port_id: str) -> None:
    """The first port: a sidecar's packets leave by its uplink, the rest enters the topology."""
    uplink = uplink_of(port_id)
    if uplink is not None:
        from_sidecar(c, port_id, uplink)
    else:
        _enter(c, port_id, first=True)


def _enter(c: Ctx, port_id: str, *, first: bool) -> None:
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
    if first and port.exterior and not _admitted(c, port):
        return
    c.step("port", port.id, port.name, "ingress")
    if first and not port.is_router and dhcp_server.handle(c, port):
        return
    if port.in_filter is not None:
        v = run_chain(c, port.in_filter, port.device_id)
        if v != ACCEPT:
            deny(c, v, port.in_filter)
            return
    if port.is_router:
        out = router(c, port)
        if out is not None:
            _leave(c, out)
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
            deny(c, v, port.out_filter)
            return
    if port.exterior:
        c.egress.append(Egress(port.id, c.headers(), c.ttl_decs, c.inner))
        c.step("port", port.id, port.name, "output")
    elif port.peer_id is not None:
        c.step("port", port.id, port.name, "egress", f"to peer {port.peer_id[:8]}")
        _enter(c, port.peer_id, first=False)
    else:
        c.step("port", port.id, port.name, "drop", "neither bound nor linked")


def _admitted(c: Ctx, port: CPort) -> bool:
    """What may enter from an exterior port. A frame with an 802.1Q or 802.1ad tag is dropped,
    never stripped and forwarded: no exterior port is tagged (``Port.vlan_id`` is no
    forwarding rule), and the datapaths drop tagged frames before their flow lookup too.
    Then port security (anti-spoofing)."""
    c.read |= F_VLAN
    vlan = c.frame.eth.vlan
    if vlan is not None:
        why = f"tagged frame (TPID {vlan.tpid:#06x}) on an untagged port"
        c.step("port", port.id, port.name, "drop", why)
        return False
    if port.security and not _spoof_ok(c, port):
        c.step("port", port.id, port.name, "drop", "anti-spoofing")
        return False
    return True


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


def _bridge(c: Ctx, in_port: CPort) -> None:
    """Unicast, or flood one copy per port, each from the headers as they entered."""
    sent = bridge(c, in_port)
    if sent is None:
        return
    dev, outs = sent
    if isinstance(outs, CPort):
        if bridge_egress(c, dev, outs):
            _leave(c, outs)
        return
    snap = c.snapshot()
    for p in outs:
        c.restore(snap)
        if bridge_egress(c, dev, p):
            _leave(c, p)
    c.restore(snap)


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
    payload = f.payload if e.inner is None else patch_quote(f.payload, e.inner)
    return build(Frame(eth, ip=ip, l4=l4, payload=payload))


def _result(c: Ctx, verdict: Verdict | None, awaiting: tuple[tuple[str, ...], ...]) -> Result:
    key = (*_flow_key(c.frame), c.ct_state)
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
        c.ct_commit and verdict is Verdict.FORWARD and bool(actions),
        c.tp_bits,
    )


def _malformed(in_port_id: str, err: ParseError) -> Result:
    trace = Trace([("packet", in_port_id, "", "drop", f"malformed: {err.reason} @{err.offset}")])
    return Result(
        Verdict.DROP, in_port_id, (0,) * 13, 1, (), frozenset({in_port_id}), (), (), trace, False
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
