"""Stateful rules on the datapath's conntrack (SimConfig.kernel_conntrack): the packet's
ct_state decides, the megaflow reads ct_state instead of the 5-tuple, a new forward connection
is committed by the flow (no ConntrackAdded), and what needs the agent's table (stateful NAT,
untracked packets) keeps it."""

from __future__ import annotations

import pytest

from netloom.flows.model import CT_ALL, CT_EST, CT_NEW, CT_REL, CT_RPL
from netloom.packet import Frame, Icmp, IPv4, Tcp, build, ip_to_int, mac_to_int
from netloom.packet.headers import ETH_TYPE_IPV4, IPPROTO_ICMP, Ethernet
from netloom.sim import Result, SimConfig, Verdict
from netloom.sim.state import ConntrackAdded

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
    Lab,
    security_group,
    standard_lab,
    static_fip_lab,
    tcp,
    udp,
)

pytestmark = pytest.mark.unit
KERNEL = SimConfig(kernel_conntrack=True)


def _kernel(lab: Lab) -> Lab:
    lab.config = KERNEL
    return lab


def _a_to_c(sport: int = 40000, dport: int = 22) -> Frame:
    return tcp(MAC_A, MAC_R1, IP_A, IP_C, sport=sport, dport=dport)


def _sim(lab: Lab, port: str, f: Frame, ct_state: int) -> Result:
    from netloom.sim import simulate

    return simulate(f, lab.ports[port].id, lab.view, lab.state, 1000.0, lab.config, ct_state)


def _ct_changes(r: Result) -> list[object]:
    return [c for c in r.changes if isinstance(c, ConntrackAdded)]


def test_new_forward_connection_commits_in_the_flow_without_the_5tuple() -> None:
    lab = _kernel(standard_lab())
    r = _sim(lab, "A", _a_to_c(), CT_NEW)
    assert r.verdict is Verdict.FORWARD and r.cacheable and r.ct_commit
    assert _ct_changes(r) == []
    assert r.mask.ct_state == CT_ALL and r.match.ct_state == CT_NEW
    assert r.mask.tp_src == 0  # any client port: every connection of A shares the flow
    # established packets of the connection: no commit, a flow of their own
    est = _sim(lab, "A", _a_to_c(), CT_EST)
    assert est.verdict is Verdict.FORWARD and not est.ct_commit
    assert est.match.ct_state == CT_EST


def test_reply_is_return_traffic_by_ct_state_and_a_new_one_is_judged_by_the_rules() -> None:
    lab = _kernel(standard_lab())
    back = tcp(MAC_C, MAC_R2, IP_C, IP_A, sport=22, dport=40000, flags=0x12)
    r = _sim(lab, "C", back, CT_EST | CT_RPL)
    assert r.verdict is Verdict.FORWARD and not r.ct_commit and _ct_changes(r) == []
    # the same packet as a new connection: A's inbound group accepts only tcp/22
    r = _sim(lab, "C", back, CT_NEW)
    assert r.verdict is Verdict.DROP and not r.ct_commit


def test_untracked_packets_and_the_flag_off_keep_the_agents_table() -> None:
    lab = _kernel(standard_lab())
    r = _sim(lab, "A", _a_to_c(), 0)
    assert _ct_changes(r) and not r.ct_commit and r.mask.tp_src == 0xFFFF
    lab.config = SimConfig()
    r = _sim(lab, "A", _a_to_c(), CT_NEW)
    assert _ct_changes(r) and not r.ct_commit and r.mask.ct_state == 0


def test_stateful_snat_is_simulated_again_on_the_agents_table() -> None:
    lab = _kernel(standard_lab())
    out = tcp(MAC_A, MAC_R1, IP_A, REMOTE, sport=40000, dport=80)
    r = _sim(lab, "A", out, CT_NEW)
    assert r.verdict is Verdict.FORWARD and not r.ct_commit
    assert _ct_changes(r) and r.mask.ct_state == 0


def test_static_floating_ip_stays_on_the_kernel_path() -> None:
    lab = _kernel(static_fip_lab())
    sg_out, sg_in = security_group(lab, "sg")
    port = lab.ports["C"]
    lab.update(
        port.model_copy(update={"inbound_filter_id": sg_out.id, "outbound_filter_id": sg_in.id})
    )
    ip = IPv4(ip_to_int(REMOTE), ip_to_int(FIP_C), 6)
    f = Frame(
        Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), ETH_TYPE_IPV4),
        ip=ip,
        l4=Tcp(5555, 22, flags=0x02),
    )
    r = _sim(lab, "uplink", f, CT_NEW)
    assert r.verdict is Verdict.FORWARD and r.ct_commit and r.changes == ()
    assert r.mask.tp_src == 0
    back = tcp(MAC_C, MAC_R2, IP_C, REMOTE, sport=22, dport=5555, flags=0x12)
    r = _sim(lab, "C", back, CT_EST | CT_RPL)
    assert r.verdict is Verdict.FORWARD and not r.ct_commit and r.changes == ()


def test_icmp_error_is_related_when_the_datapath_says_so() -> None:
    lab = _kernel(standard_lab())
    strict = lab.chain(
        "return-only", {"action": "accept", "match_return_flow": True}, {"action": "drop"}
    )
    lab.update(lab.ports["A"].model_copy(update={"outbound_filter_id": strict.id}))
    sent = build(udp(MAC_A, MAC_R1, IP_A, IP_C, sport=40000, dport=9))
    error = Frame(
        Ethernet(mac_to_int(MAC_R2), mac_to_int(MAC_C), ETH_TYPE_IPV4),
        ip=IPv4(ip_to_int(IP_C), ip_to_int(IP_A), IPPROTO_ICMP),
        l4=Icmp(3, 3),
        payload=sent[14:42],
    )
    r = _sim(lab, "C", error, CT_NEW | CT_REL)
    assert r.verdict is Verdict.FORWARD and not r.cacheable
    assert _sim(lab, "C", error, CT_NEW).verdict is Verdict.DROP  # nothing says it is related
