"""Static 1:1 NAT (floating IPs as MidoNet's StaticDnatRule/StaticSnatRule): no NAT state, a
mask without L4 ports, replies and ICMP errors translated by the opposite static rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from netloom.model.records import NatTarget, Rule
from netloom.model.types import new_id
from netloom.packet import Frame, Icmp, IPv4, Tcp, Udp, build, ip_to_int, mac_to_int
from netloom.packet.headers import ETH_TYPE_IPV4, IPPROTO_ICMP, Ethernet
from netloom.sim import Result, Verdict
from netloom.sim.state import NatAdded

from .conftest import (
    FIP_C,
    IP_A,
    IP_C,
    MAC_A,
    MAC_C,
    MAC_EXT,
    MAC_R1,
    MAC_R2,
    MAC_UP,
    REMOTE,
    UPLINK_IP,
    Lab,
    eth,
    static_fip_lab,
    tcp,
    udp,
)

pytestmark = pytest.mark.unit


def _from_remote(dst: str, sport: int, dport: int, proto: str = "tcp") -> Frame:
    ip = IPv4(ip_to_int(REMOTE), ip_to_int(dst), 6 if proto == "tcp" else 17)
    l4: Tcp | Udp = Tcp(sport, dport, flags=0x12) if proto == "tcp" else Udp(sport, dport)
    return Frame(Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), ETH_TYPE_IPV4), ip=ip, l4=l4)


def _ports(f: Frame) -> tuple[int, int]:
    assert isinstance(f.l4, (Tcp, Udp))
    return f.l4.sport, f.l4.dport


def _no_l4(r: Result) -> bool:
    m = r.mask
    return (m.ip_proto, m.tp_src, m.tp_dst) == (0, 0, 0)


def _covers(a: Result, b: Result) -> bool:
    """b's packet hits a's megaflow, with the same actions."""
    m = dataclasses.astuple(a.mask)
    same = all((x & y) == (z & y) for x, y, z in zip(a.key, m, b.key, strict=True))
    return same and a.actions == b.actions


def test_static_fip_inbound_masks_addresses_only_and_keeps_no_state() -> None:
    lab = static_fip_lab()
    r, out = lab.run("uplink", _from_remote(FIP_C, 5555, 22))
    assert r.verdict is Verdict.FORWARD and r.cacheable
    [(name, f)] = out
    assert name == "C" and f.ip is not None and f.ip.dst == ip_to_int(IP_C)
    assert _ports(f) == (5555, 22)
    assert r.changes == () and lab.state.nat == {} and lab.state.conntrack == {}
    assert _no_l4(r) and r.mask.ip_dst == 0xFFFFFFFF
    # the next connection (other ports) is the same megaflow
    r2 = lab.sim("uplink", _from_remote(FIP_C, 6000, 80))
    assert _covers(r, r2)


def test_static_fip_reply_and_outbound_use_the_opposite_rule() -> None:
    lab = static_fip_lab()
    lab.run("uplink", _from_remote(FIP_C, 5555, 22))
    back, out = lab.run("C", tcp(MAC_C, MAC_R2, IP_C, REMOTE, sport=22, dport=5555, flags=0x12))
    [(name, f)] = out
    assert name == "uplink" and f.ip is not None and f.ip.src == ip_to_int(FIP_C)
    assert _ports(f) == (22, 5555) and back.changes == () and _no_l4(back)
    # a connection C opens leaves as the FIP, port kept, and its reply comes back to C
    _, out = lab.run("C", tcp(MAC_C, MAC_R2, IP_C, REMOTE, sport=41000, dport=443))
    [(_, f)] = out
    assert f.ip is not None and (f.ip.src, _ports(f)[0]) == (ip_to_int(FIP_C), 41000)
    _, out = lab.run("uplink", _from_remote(FIP_C, 443, 41000))
    [(name, f)] = out
    assert name == "C" and f.ip is not None and f.ip.dst == ip_to_int(IP_C)
    assert lab.state.nat == {}


def test_port_range_snat_stays_stateful_next_to_static_fip() -> None:
    lab = static_fip_lab(tenant_snat=True)
    r, out = lab.run("A", tcp(MAC_A, MAC_R1, IP_A, REMOTE, sport=40000, dport=80))
    [(_, f)] = out
    assert f.ip is not None and f.ip.src == ip_to_int(UPLINK_IP)
    assert any(isinstance(c, NatAdded) for c in r.changes) and not _no_l4(r)
    _, out = lab.run("uplink", _from_remote(UPLINK_IP, 80, _ports(f)[0]))
    [(name, g)] = out
    assert name == "A" and g.ip is not None and g.ip.dst == ip_to_int(IP_A)
    assert _ports(g) == (80, 40000)
    # the FIP still works without state, but the unconditional reverse-snat of the stateful
    # rule's zone now has to look bindings up (the 5-tuple is read)
    fip, out = lab.run("uplink", _from_remote(FIP_C, 5555, 22))
    assert [n for n, _ in out] == ["C"] and fip.changes == () and not _no_l4(fip)
    assert lab.named["rout"].id in fip.tags  # the stateful SNAT's chain decided that


def test_adding_a_stateful_snat_makes_reverse_rules_look_up_again() -> None:
    lab = static_fip_lab()
    assert _no_l4(lab.sim("uplink", _from_remote(FIP_C, 5555, 22)))
    lab.rule(
        lab.named["rout"],
        2,
        action="snat",
        nw_src="10.0.0.0/8",
        nat_targets=[
            NatTarget(address_from=UPLINK_IP, address_to=UPLINK_IP, port_from=1024, port_to=2047)
        ],
    )
    assert not _no_l4(lab.sim("uplink", _from_remote(FIP_C, 5555, 22)))


def _icmp_error(src: str, dst: str, quoted: bytes) -> Frame:
    return Frame(
        Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), ETH_TYPE_IPV4),
        ip=IPv4(ip_to_int(src), ip_to_int(dst), IPPROTO_ICMP),
        l4=Icmp(3, 3),
        payload=quoted,
    )


def test_icmp_errors_translated_through_the_static_mapping() -> None:
    lab = static_fip_lab()
    # C's own connection out, the remote's error to the FIP: quote source FIP -> C
    _, out = lab.run("C", udp(MAC_C, MAC_R2, IP_C, REMOTE, sport=40000, dport=9))
    [(_, sent)] = out
    r, out = lab.run("uplink", _icmp_error(REMOTE, FIP_C, build(sent)[14:42]))
    assert not r.cacheable
    [(name, f)] = out
    assert name == "C" and f.ip is not None and f.ip.dst == ip_to_int(IP_C)
    assert f.payload[12:16] == ip_to_int(IP_C).to_bytes(4, "big")
    assert int.from_bytes(f.payload[20:22], "big") == 40000
    # a connection to the FIP, C's error: leaves from the FIP, quote destination C -> FIP
    _, out = lab.run("uplink", _from_remote(FIP_C, 5555, 9, proto="udp"))
    [(_, got)] = out
    quoted = build(got)[14:42]
    err = Frame(
        eth(MAC_C, MAC_R2),
        ip=IPv4(ip_to_int(IP_C), ip_to_int(REMOTE), IPPROTO_ICMP),
        l4=Icmp(3, 3),
        payload=quoted,
    )
    r, out = lab.run("C", err)
    [(name, f)] = out
    assert name == "uplink" and f.ip is not None and f.ip.src == ip_to_int(FIP_C)
    assert f.payload[16:20] == ip_to_int(FIP_C).to_bytes(4, "big")
    assert f.payload[12:16] == ip_to_int(REMOTE).to_bytes(4, "big")


@pytest.mark.parametrize(
    "targets",
    [
        [NatTarget(address_from=FIP_C, address_to="203.0.113.51")],
        [NatTarget(address_from=FIP_C, address_to=FIP_C, port_from=1, port_to=9)],
        [NatTarget(address_from=FIP_C, address_to=FIP_C)] * 2,
    ],
)
def test_static_needs_one_address_without_ports(targets: list[NatTarget]) -> None:
    with pytest.raises(ValidationError, match="static"):
        Rule(chain_id=new_id(), action="snat", static=True, nat_targets=targets)
    with pytest.raises(ValidationError, match="static"):
        Rule(chain_id=new_id(), action="reverse-snat", static=True)


_S = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAB: Lab = static_fip_lab(tenant_snat=True)


@_S
@given(
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    proto=st.sampled_from(["tcp", "udp"]),
    inbound=st.booleans(),
)
def test_reply_to_static_nated_flow_is_translated_back(
    sport: int, dport: int, proto: str, inbound: bool
) -> None:
    """Either side opens; the reply reaches the opener with the addresses it used."""
    mk = tcp if proto == "tcp" else udp
    if inbound:
        r = LAB.sim("uplink", _from_remote(FIP_C, sport, dport, proto))
        reply_port, reply = "C", mk(MAC_C, MAC_R2, IP_C, REMOTE, sport=dport, dport=sport)
        back_to, want = "uplink", (ip_to_int(FIP_C), ip_to_int(REMOTE))
    else:
        r = LAB.sim("C", mk(MAC_C, MAC_R2, IP_C, REMOTE, sport=sport, dport=dport))
        reply_port, reply = "uplink", _from_remote(FIP_C, dport, sport, proto)
        back_to, want = "C", (ip_to_int(REMOTE), ip_to_int(IP_C))
    assert r.verdict is Verdict.FORWARD and r.changes == ()
    back, out = LAB.run(reply_port, reply, apply=False)
    [(name, f)] = out
    assert name == back_to and f.ip is not None and back.changes == ()
    assert (f.ip.src, f.ip.dst) == want and _ports(f) == (dport, sport)
