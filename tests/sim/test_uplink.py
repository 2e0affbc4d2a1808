"""Uplinks: ARP for the port and the router's floating IPs, and the control traffic between an
uplink and its routing sidecar (BGP, BFD, ARP, ICMP), as flows of the simulation."""

from __future__ import annotations

from netloom.model.records import Route
from netloom.model.types import new_id
from netloom.packet import ARP_REPLY, Arp, Ethernet, Frame, Icmp, build, ip_to_int, mac_to_int
from netloom.sim import OutputPort, Verdict
from netloom.sim.result import F_IN_PORT
from netloom.sim.state import ArpLearned
from netloom.sim.uplink import sidecar_id, uplink_of

from .conftest import (
    EXT_GW,
    FIP_C,
    IP_A,
    MAC_A,
    MAC_EXT,
    MAC_R1,
    MAC_UP,
    UPLINK_IP,
    Lab,
    arp_request,
    ping,
    tcp,
    udp,
)


def _with_sidecar(lab: Lab) -> str:
    up = lab.ports["uplink"].id
    lab.state.sidecars.add(up)
    return sidecar_id(up)


def test_sidecar_ids_round_trip() -> None:
    assert uplink_of(sidecar_id("p1")) == "p1"
    assert uplink_of("p1") is None


def test_uplink_answers_arp_for_its_address_and_floating_ips(lab: Lab) -> None:
    for target in (UPLINK_IP, FIP_C):
        r, out = lab.run("uplink", arp_request(MAC_EXT, EXT_GW, target))
        assert r.verdict is Verdict.CONSUMED
        [(name, reply)] = out
        assert name == "uplink" and reply.arp is not None and reply.arp.op == ARP_REPLY
        assert reply.arp.spa == ip_to_int(target) and reply.arp.sha == mac_to_int(MAC_UP)
        assert reply.eth.dst == mac_to_int(MAC_EXT)
    r, out = lab.run("uplink", arp_request(MAC_EXT, EXT_GW, "203.0.113.77"))
    assert r.verdict is Verdict.DROP and out == []


def test_floating_ip_arp_not_answered_on_interior_ports(lab: Lab) -> None:
    _r, out = lab.run("A", arp_request("02:00:00:00:01:0a", "10.0.1.10", FIP_C))
    assert all(
        f.arp is None or f.arp.op != ARP_REPLY or f.arp.spa != ip_to_int(FIP_C) for _n, f in out
    )


def test_bgp_to_the_port_goes_to_the_sidecar_as_a_flow(lab: Lab) -> None:
    sid = _with_sidecar(lab)
    for sport, dport in ((40000, 179), (179, 40000)):
        r = lab.sim("uplink", tcp(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP, sport=sport, dport=dport))
        assert r.verdict is Verdict.FORWARD and r.cacheable
        assert r.actions == (OutputPort(sid),)
        assert sid in r.tags
        assert any(s.decision == "to-sidecar" for s in r.trace.steps)


def test_bfd_to_the_sidecar_other_udp_refused(lab: Lab) -> None:
    sid = _with_sidecar(lab)
    for port in (3784, 3785, 4784):
        r = lab.sim("uplink", udp(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP, sport=49152, dport=port))
        assert r.actions == (OutputPort(sid),)
    r, out = lab.run("uplink", udp(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP, dport=53))
    assert r.actions == () and [n for n, _f in out] == ["uplink"]  # port unreachable


def test_router_answers_pings_other_icmp_goes_to_the_sidecar(lab: Lab) -> None:
    sid = _with_sidecar(lab)
    r, out = lab.run("uplink", ping(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP))
    assert r.verdict is Verdict.CONSUMED
    [(name, echo)] = out
    assert name == "uplink" and isinstance(echo.l4, Icmp) and echo.l4.type == 0
    r = lab.sim("uplink", ping(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP, itype=0))
    assert r.actions == (OutputPort(sid),)


def test_without_a_sidecar_bgp_is_dropped_and_tagged(lab: Lab) -> None:
    r = lab.sim("uplink", tcp(MAC_EXT, MAC_UP, EXT_GW, UPLINK_IP, dport=179))
    assert r.verdict is Verdict.DROP
    assert sidecar_id(lab.ports["uplink"].id) in r.tags  # a sidecar appearing re-simulates it


def test_arp_for_the_port_is_learned_answered_and_copied_to_the_sidecar(lab: Lab) -> None:
    sid = _with_sidecar(lab)
    r, out = lab.run("uplink", arp_request(MAC_EXT, EXT_GW, UPLINK_IP))
    assert sorted(n for n, _f in out) == sorted([sid, "uplink"])
    # a reply to the sidecar's own request (a second peer): the router learns it too
    peer = ip_to_int("203.0.113.9")
    rep = Frame(
        Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), 0x0806),
        arp=Arp(ARP_REPLY, mac_to_int(MAC_EXT), peer, mac_to_int(MAC_UP), ip_to_int(UPLINK_IP)),
    )
    r, out = lab.run("uplink", rep)
    assert [n for n, _f in out] == [sid]
    assert any(isinstance(ch, ArpLearned) for ch in r.changes)
    # ARP for a floating IP is the router's alone
    r, out = lab.run("uplink", arp_request(MAC_EXT, EXT_GW, FIP_C))
    assert [n for n, _f in out] == ["uplink"]


def test_what_the_sidecar_sends_leaves_by_the_uplink_unchanged(lab: Lab) -> None:
    sid = _with_sidecar(lab)
    frame = tcp(MAC_UP, MAC_EXT, UPLINK_IP, EXT_GW, sport=40000, dport=179)
    r, out = lab.run(sid, frame)
    assert r.verdict is Verdict.FORWARD and r.cacheable
    assert r.actions == (OutputPort(lab.ports["uplink"].id),)
    assert r.read | F_IN_PORT == F_IN_PORT  # one flow carries all of the sidecar's traffic
    [(name, sent)] = out
    assert name == "uplink" and build(sent) == build(frame)
    lab.state.sidecars.clear()
    r = lab.sim(sid, frame)
    assert r.verdict is Verdict.DROP and sid in r.tags


def test_trace_names_the_peer_a_learned_route_came_from(lab: Lab) -> None:
    peer = new_id()
    up = lab.ports["uplink"]
    lab.update(
        Route(
            router_id=lab.named["r1"].id,
            dst="198.18.0.0/24",
            next_hop_port_id=up.id,
            next_hop_gateway=EXT_GW,
            learned_from=peer,
        )
    )
    r = lab.sim("A", udp(MAC_A, MAC_R1, IP_A, "198.18.0.10"))
    assert r.actions[-1] == OutputPort(up.id)
    [step] = [s for s in r.trace.steps if s.decision == "route"]
    assert f"learned from bgp peer {peer[:8]}" in step.detail and "uplink" in step.detail
