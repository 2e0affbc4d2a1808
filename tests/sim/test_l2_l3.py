"""Bridging, routing, ARP, ICMP and loop behaviour of the simulation."""

from __future__ import annotations

import pytest

from netloom.flows.model import DecTtl, SetEthDst, SetEthSrc
from netloom.model.records import AllowedAddressPair, Route
from netloom.packet import ARP_REPLY, Frame, Icmp, build, int_to_ip, ip_to_int, mac_to_int, parse
from netloom.sim import OutputPort, SimState, Verdict, simulate
from netloom.sim.context import ECMP_PORT_MASK
from netloom.sim.result import F_ETH_DST, F_IP_DST

from .conftest import (
    EXT_GW,
    GW1,
    GW2,
    IP_A,
    IP_B,
    IP_C,
    MAC_A,
    MAC_B,
    MAC_C,
    MAC_R1,
    MAC_R2,
    NOW,
    Lab,
    arp_request,
    ping,
    tcp,
    udp,
)

pytestmark = pytest.mark.unit


def test_l2_same_bridge_unicast(lab: Lab) -> None:
    f = udp(MAC_A, MAC_B, IP_A, IP_B)
    r, out = lab.run("A", f)
    assert r.verdict is Verdict.FORWARD
    assert r.actions == (OutputPort(lab.ports["B"].id),)
    assert [n for n, _ in out] == ["B"]
    assert build(out[0][1]) == build(f)  # nothing rewritten
    assert r.cacheable
    assert r.mask.eth_dst == (1 << 48) - 1 and r.read & F_ETH_DST
    assert lab.ports["A"].id in r.tags and lab.ports["B"].id in r.tags
    assert "bridge:unicast" in r.trace.decisions()


def test_l2_unknown_unicast_floods_and_learns(lab: Lab) -> None:
    unknown = "02:00:00:00:01:99"
    lab.update(
        lab.ports["B"].model_copy(
            update={"mac": None, "fixed_ips": [], "port_security_enabled": False}
        )
    )
    # B's MAC is no longer static; a frame to an unknown MAC floods but never to A itself.
    r, out = lab.run("A", udp(MAC_A, unknown, IP_A, IP_B))
    names = sorted(n for n, _ in out)
    assert "A" not in names and "B" in names
    assert "bridge:flood" in r.trace.decisions()
    # B answers from an unlearned MAC: learned as a state change, A is known statically.
    r2, _out2 = lab.run("B", udp(unknown, MAC_A, IP_B, IP_A, sport=53, dport=40000))
    from netloom.sim.state import MacLearned

    learned = [c for c in r2.changes if isinstance(c, MacLearned)]
    assert learned and learned[0].port_id == lab.ports["B"].id
    # After applying the learning, frames to that MAC go only to B.
    r3, out3 = lab.run("A", udp(MAC_A, unknown, IP_A, IP_B))
    assert [n for n, _ in out3] == ["B"]
    assert ("mac", lab.named["net1"].id, 0, mac_to_int(unknown)) in r3.tags


def test_l3_across_router_rewrites_macs_and_ttl(lab: Lab) -> None:
    f = tcp(MAC_A, MAC_R1, IP_A, IP_C, dport=22, ttl=64)
    r, out = lab.run("A", f)
    assert r.verdict is Verdict.FORWARD
    assert SetEthSrc(mac_to_int(MAC_R2)) in r.actions
    assert SetEthDst(mac_to_int(MAC_C)) in r.actions
    assert DecTtl() in r.actions
    assert r.outputs == (lab.ports["C"].id,)
    [(name, g)] = out
    assert name == "C" and g.ip is not None
    assert g.ip.ttl == 63 and g.eth.src == mac_to_int(MAC_R2) and g.eth.dst == mac_to_int(MAC_C)
    assert r.read & F_IP_DST
    assert lab.named["r1"].id in r.tags


def test_router_answers_arp_and_ping(lab: Lab) -> None:
    r, out = lab.run("A", arp_request(MAC_A, IP_A, GW1))
    assert r.verdict is Verdict.CONSUMED  # suppressed by the bridge: the gateway is known
    [(name, reply)] = out
    assert name == "A" and reply.arp is not None and reply.arp.op == ARP_REPLY
    assert reply.arp.sha == mac_to_int(MAC_R1) and reply.arp.spa == ip_to_int(GW1)
    r, out = lab.run("A", ping(MAC_A, MAC_R1, IP_A, GW2))
    assert r.verdict is Verdict.CONSUMED and not r.cacheable
    [(name, echo)] = out
    assert name == "A" and isinstance(echo.l4, Icmp) and echo.l4.type == 0
    assert echo.ip is not None and echo.ip.src == ip_to_int(GW2)


def test_arp_suppression_for_vm_address(lab: Lab) -> None:
    r, out = lab.run("A", arp_request(MAC_A, IP_A, IP_B))
    assert r.verdict is Verdict.CONSUMED
    [(name, reply)] = out
    assert name == "A" and reply.arp is not None
    assert reply.arp.sha == mac_to_int(MAC_B) and reply.arp.tpa == ip_to_int(IP_A)
    assert reply.eth.dst == mac_to_int(MAC_A)
    # Unknown address: the request is flooded instead (but not back to A).
    r, out = lab.run("A", arp_request(MAC_A, IP_A, "10.0.1.77"))
    assert r.verdict is Verdict.FORWARD and "A" not in [n for n, _ in out]


def test_ttl_exceeded(lab: Lab) -> None:
    r, out = lab.run("A", udp(MAC_A, MAC_R1, IP_A, IP_C, ttl=1))
    assert r.verdict is Verdict.DROP and not r.cacheable
    [(name, err)] = out
    assert name == "A" and isinstance(err.l4, Icmp)
    assert (err.l4.type, err.l4.code) == (11, 0)
    assert err.ip is not None and err.ip.src == ip_to_int(GW1) and err.ip.dst == ip_to_int(IP_A)
    quoted = err.payload
    assert quoted[12:16] == ip_to_int(IP_A).to_bytes(4, "big")  # the offending header


def test_net_unreachable(lab: Lab) -> None:
    default = next(r for r in lab.records if isinstance(r, Route) and r.dst == "0.0.0.0/0")
    lab.view.delete("route", default.id)
    r, out = lab.run("A", udp(MAC_A, MAC_R1, IP_A, "192.0.2.9"))
    assert r.verdict is Verdict.DROP
    [(name, err)] = out
    assert name == "A" and isinstance(err.l4, Icmp) and (err.l4.type, err.l4.code) == (3, 0)


def test_reject_route_sends_admin_prohibited(lab: Lab) -> None:
    lab.add(Route(router_id=lab.named["r1"].id, dst="192.0.2.0/24", type="reject"))
    r, out = lab.run("A", udp(MAC_A, MAC_R1, IP_A, "192.0.2.9"))
    [(_name, err)] = out
    assert isinstance(err.l4, Icmp) and (err.l4.type, err.l4.code) == (3, 13)
    assert "router:reject" in r.trace.decisions()


def test_blackhole_route_drops_silently(lab: Lab) -> None:
    lab.add(Route(router_id=lab.named["r1"].id, dst="192.0.2.0/24", type="blackhole"))
    r, out = lab.run("A", udp(MAC_A, MAC_R1, IP_A, "192.0.2.9"))
    assert r.verdict is Verdict.DROP and out == [] and r.cacheable


def test_frag_needed_for_big_df_packet(lab: Lab) -> None:
    big = tcp(MAC_A, MAC_R1, IP_A, IP_C, df=True, payload=b"x" * 1460)
    _r, out = lab.run("A", big)
    [(_name, err)] = out
    assert isinstance(err.l4, Icmp) and (err.l4.type, err.l4.code) == (3, 4)
    assert err.l4.rest & 0xFFFF == lab.config.overlay_mtu == 1450
    small = tcp(MAC_A, MAC_R1, IP_A, IP_C, df=True, payload=b"x" * 1000)
    assert lab.run("A", small)[0].verdict is Verdict.FORWARD


def test_unresolved_next_hop_is_not_yet_with_arp_request(lab: Lab) -> None:
    del lab.state.arp[("arp", lab.named["r1"].id, ip_to_int(EXT_GW))]
    r = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.7"))
    assert r.verdict is Verdict.NOT_YET
    assert r.awaiting == (("arp", lab.named["r1"].id, EXT_GW),)
    [g] = r.generated
    req = parse(g.data)
    assert isinstance(req, Frame) and req.arp is not None and req.arp.tpa == ip_to_int(EXT_GW)
    assert g.port_id == lab.ports["uplink"].id
    # The ARP reply is learned as a state change; then the packet goes out.
    from netloom.packet import Arp, Ethernet

    rep = Frame(
        Ethernet(mac_to_int("02:00:00:00:ff:03"), mac_to_int("02:00:00:00:ee:01"), 0x0806),
        arp=Arp(
            2,
            mac_to_int("02:00:00:00:ee:01"),
            ip_to_int(EXT_GW),
            mac_to_int("02:00:00:00:ff:03"),
            ip_to_int("203.0.113.2"),
        ),
    )
    r2 = lab.sim("uplink", rep)
    assert r2.verdict is Verdict.CONSUMED and r2.changes
    lab.state.apply(r2.changes)
    assert lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.7")).verdict is Verdict.FORWARD


def test_missing_object_is_not_yet() -> None:
    from netloom.sim import MemoryTopology

    r = simulate(
        udp(MAC_A, MAC_B, IP_A, IP_B),
        "8c5b4f1e-0000-4000-8000-000000000001",
        MemoryTopology(),
        SimState(),
        NOW,
    )
    assert r.verdict is Verdict.NOT_YET and r.awaiting[0][0] == "port"


def test_anti_spoofing(lab: Lab) -> None:
    r, out = lab.run("A", udp(MAC_A, MAC_B, "10.0.1.99", IP_B))
    assert r.verdict is Verdict.DROP and out == []
    assert "port:drop" in r.trace.decisions()
    r, out = lab.run("A", udp("02:00:00:00:01:99", MAC_B, IP_A, IP_B))
    assert r.verdict is Verdict.DROP
    # An allowed address pair (a VIP) makes the address legitimate.
    lab.update(
        lab.ports["A"].model_copy(
            update={"allowed_address_pairs": [AllowedAddressPair(ip_address="10.0.1.96/30")]}
        )
    )
    r, out = lab.run("A", udp(MAC_A, MAC_B, "10.0.1.99", IP_B))
    assert r.verdict is Verdict.FORWARD and [n for n, _ in out] == ["B"]
    # ...and port security off lets anything through.
    lab.update(lab.ports["A"].model_copy(update={"port_security_enabled": False}))
    assert lab.run("A", udp(MAC_A, MAC_B, "10.9.9.9", IP_B))[0].verdict is Verdict.FORWARD


def test_ecmp_spreads_flows_by_hash() -> None:
    from .conftest import Lab as L

    lab = L()
    net = lab.bridge("net")
    lab.vm(net, "A", MAC_A, IP_A)
    r1 = lab.router("r1")
    p1 = lab.link(net, r1, f"{GW1}/24", MAC_R1, "p1")
    u1 = lab.uplink(r1, "192.0.2.2/29", "02:00:00:00:aa:01", "u1")
    u2 = lab.uplink(r1, "192.0.2.10/29", "02:00:00:00:aa:02", "u2")
    lab.route(r1, "10.0.1.0/24", p1)
    lab.route(r1, "0.0.0.0/0", u1, gw="192.0.2.1")
    lab.route(r1, "0.0.0.0/0", u2, gw="192.0.2.9")
    lab.route(r1, "0.0.0.0/0", u2, gw="192.0.2.9", weight=200)  # worse: never chosen
    lab.state.arp[("arp", r1.id, ip_to_int("192.0.2.1"))] = (1, 1e12)
    lab.state.arp[("arp", r1.id, ip_to_int("192.0.2.9"))] = (2, 1e12)
    seen: dict[str, int] = {}
    for sport in range(1000, 1200):
        r = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1", sport=sport))
        assert r.verdict is Verdict.FORWARD
        seen[r.outputs[0]] = seen.get(r.outputs[0], 0) + 1
        # Deterministic: the same flow always takes the same path.
        again = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1", sport=sport))
        assert again.outputs == r.outputs
    assert set(seen) == {u1.id, u2.id}
    assert min(seen.values()) > 40  # both paths carry a fair share of 200 flows
    # the choice reads the addresses and the low ECMP_PORT_MASK bits of the ports: the flow
    # covers every connection whose ports agree on those bits, and they take the same path
    r = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1", sport=1000))
    assert (r.mask.tp_src, r.mask.tp_dst) == (ECMP_PORT_MASK, ECMP_PORT_MASK)
    assert r.mask.ip_src == r.mask.ip_dst == 0xFFFFFFFF
    twin = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1", sport=1000 + 64))
    assert twin.outputs == r.outputs


def test_longest_prefix_and_source_routing() -> None:
    lab = Lab()
    net = lab.bridge("net")
    lab.vm(net, "A", MAC_A, IP_A)
    lab.vm(net, "B", MAC_B, IP_B)
    r1 = lab.router("r1")
    p1 = lab.link(net, r1, f"{GW1}/24", MAC_R1, "p1")
    u1 = lab.uplink(r1, "192.0.2.2/29", "02:00:00:00:aa:01", "u1")
    u2 = lab.uplink(r1, "192.0.2.10/29", "02:00:00:00:aa:02", "u2")
    lab.route(r1, "10.0.1.0/24", p1)
    lab.route(r1, "0.0.0.0/0", u1, gw="192.0.2.1")
    lab.route(r1, "198.51.100.0/24", u2, gw="192.0.2.9")
    lab.route(r1, "0.0.0.0/0", u2, gw="192.0.2.9", src=f"{IP_B}/32")  # policy: B via u2
    for gw in ("192.0.2.1", "192.0.2.9"):
        lab.state.arp[("arp", r1.id, ip_to_int(gw))] = (1, 1e12)
    assert lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1")).outputs == (u2.id,)
    assert lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "192.0.2.200")).outputs == (u1.id,)
    assert lab.sim("B", udp(MAC_B, MAC_R1, IP_B, "192.0.2.200")).outputs == (u2.id,)


def test_loop_guard_bounds_devices() -> None:
    """Two routers whose default routes point at each other: the device bound stops it."""
    lab = Lab()
    net = lab.bridge("net")
    lab.vm(net, "A", MAC_A, IP_A)
    ra, rb = lab.router("ra"), lab.router("rb")
    pa = lab.link(net, ra, f"{GW1}/24", MAC_R1, "pa")
    lab.route(ra, "10.0.1.0/24", pa)
    from netloom.model.records import Port
    from netloom.model.types import new_id

    ia, ib = new_id(), new_id()
    xa = Port(
        id=ia,
        device_id=ra.id,
        type="router",
        mac="02:00:00:00:0a:01",
        address="192.0.2.1/30",
        peer_id=ib,
    )
    xb = Port(
        id=ib,
        device_id=rb.id,
        type="router",
        mac="02:00:00:00:0a:02",
        address="192.0.2.2/30",
        peer_id=ia,
    )
    lab.add(xa)
    lab.add(xb)
    lab.route(ra, "0.0.0.0/0", xa, gw="192.0.2.2")
    lab.route(rb, "0.0.0.0/0", xb, gw="192.0.2.1")
    r = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.51.100.1", ttl=255))
    assert r.verdict is Verdict.DROP
    assert any("loop guard" in s.detail for s in r.trace.steps)
    assert sum(1 for s in r.trace.steps if s.kind == "router") <= lab.config.max_devices


def test_trace_renders_text_and_json(lab: Lab) -> None:
    from netloom.sim import render_result, result_to_json

    r = lab.sim("A", tcp(MAC_A, MAC_R1, IP_A, IP_C, dport=22))
    text = render_result(r)
    assert "r1" in text and "verdict: forward" in text
    doc = result_to_json(r)
    import json

    json.dumps(doc)
    assert doc["verdict"] == "forward" and doc["outputs"] == [lab.ports["C"].id]
    assert next(s["kind"] for s in doc["trace"]) == "port"


def test_probe_builder(lab: Lab) -> None:
    from netloom.errors import InvalidInput, NotFound
    from netloom.sim import build_probe

    f = build_probe(lab.view, lab.ports["A"].id, IP_C, proto="tcp", dport=22)
    assert f.eth.dst == mac_to_int(MAC_R1) and f.ip is not None and f.ip.src == ip_to_int(IP_A)
    assert lab.sim("A", f).outputs == (lab.ports["C"].id,)
    f2 = build_probe(lab.view, lab.ports["A"].id, IP_B, proto="udp")
    assert f2.eth.dst == mac_to_int(MAC_B)
    with pytest.raises(InvalidInput):
        build_probe(lab.view, lab.ports["A"].id, IP_B, proto="sctp")
    with pytest.raises(NotFound):
        build_probe(lab.view, "8c5b4f1e-0000-4000-8000-000000000001", IP_B)
    assert int_to_ip(f.ip.dst) == IP_C
    from netloom.sim import trace_probe

    r = trace_probe(lab.view, lab.state, lab.ports["A"].id, IP_C, proto="tcp", dport=80)
    assert r.verdict is Verdict.DROP  # C's security group refuses TCP 80
    assert "rule:drop" in r.trace.decisions()


def test_mask_holds_only_what_was_read() -> None:
    from netloom.bench.sim_paths import l2_scenario

    sc = l2_scenario()
    r = simulate(sc.packet(1), sc.in_port, sc.view, sc.state, NOW)
    m = r.mask
    assert r.verdict is Verdict.FORWARD and r.cacheable
    assert m.eth_dst and m.eth_src and m.in_port  # bridging reads MACs
    assert m.ip_src  # port security checked the source address
    assert m.ip_dst == m.tp_src == m.tp_dst == m.ip_proto == 0  # no filter: wildcarded
    assert r.match.tp_src == 1025  # the match carries the packet's own fields


def test_simulate_does_not_mutate_state(lab: Lab) -> None:
    import copy

    before = copy.deepcopy(lab.state)
    r = lab.sim("A", tcp(MAC_A, MAC_R1, IP_A, "198.51.100.7", dport=80))
    assert r.changes and lab.state == before


def test_admin_down_port_drops(lab: Lab) -> None:
    lab.update(lab.ports["B"].model_copy(update={"admin_state_up": False}))
    r = lab.sim("A", udp(MAC_A, MAC_B, IP_A, IP_B))
    assert r.verdict is Verdict.DROP and "port:drop" in r.trace.decisions()


def test_malformed_bytes_drop() -> None:
    from netloom.sim import MemoryTopology

    r = simulate(bytes(12) + b"\x08\x00\x45" + bytes(3), "x", MemoryTopology(), SimState(), NOW)
    assert r.verdict is Verdict.DROP and "malformed" in r.trace.steps[0].detail
