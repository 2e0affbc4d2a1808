"""Security groups across routers: rules matching a port group's addresses, CIDR address
groups, and traces that name the deciding rule and why the earlier ones did not match."""

from __future__ import annotations

import pytest

from netloom.model import addressing
from netloom.model.records import IPAddrGroup, PortGroup, PortRange
from netloom.packet import ip_to_int
from netloom.sim import MemoryTopology, Verdict, run_trace
from netloom.sim.compiled import CAddrGroup

from .conftest import IP_A, IP_B, IP_C, MAC_A, MAC_B, MAC_R1, Lab, edge_router, tcp

pytestmark = pytest.mark.unit


def _admin_lab(match_by: str = "ip_addr_group_src_id") -> Lab:
    """A and B on net1, C on net2 behind r1. Port group "admin" holds A; its address group
    (as the API keeps it) holds A's fixed IP. C accepts ssh only from admin, matched by
    ``match_by``: the address group, the port group's addresses, or the in-port's group."""
    lab = Lab()
    net1, net2 = lab.bridge("net1"), lab.bridge("net2")
    pg = PortGroup(name="admin")
    gid = addressing.group_addresses_id(pg.id)
    pg.ip_addr_group_id = gid
    lab.add(pg)
    lab.add(IPAddrGroup(id=gid, port_group_id=pg.id, addresses=[IP_A]))
    edge_router(lab, net1, net2)
    match = {match_by: gid if match_by == "ip_addr_group_src_id" else pg.id}
    to_c = lab.chain(
        "c-to-vm",
        {"action": "accept", "nw_proto": 1, "name": "icmp"},
        {
            "action": "accept",
            "name": "ssh-from-admin",
            "nw_proto": 6,
            "tp_dst": PortRange(start=22, end=22),
            **match,
        },
        {"action": "drop", "name": "default-deny"},
    )
    lab.vm(net1, "A", MAC_A, IP_A, port_group_ids=[pg.id])
    lab.vm(net1, "B", MAC_B, IP_B)
    lab.vm(net2, "C", "02:00:00:00:02:0a", IP_C, outbound_filter_id=to_c.id)
    lab.named.update(pg=pg, gid=gid, to_c=to_c)
    return lab


@pytest.mark.parametrize("match_by", ["ip_addr_group_src_id", "remote_group_src_id"])
def test_member_on_another_bridge_matches_through_the_router(match_by: str) -> None:
    lab = _admin_lab(match_by)
    r, out = lab.run("A", tcp(MAC_A, MAC_R1, IP_A, IP_C, dport=22))
    assert r.verdict is Verdict.FORWARD and [n for n, _ in out] == ["C"]
    assert lab.named["gid"] in r.tags  # the flow depends on the group's addresses
    r, out = lab.run("B", tcp(MAC_B, MAC_R1, IP_B, IP_C, dport=22))
    assert r.verdict is Verdict.DROP and out == []
    assert lab.named["gid"] in r.tags


def test_in_port_group_sees_the_router_port_not_the_member() -> None:
    """Why the address group: at C's port, routed traffic comes in from the router."""
    lab = _admin_lab("in_port_group_id")
    r, _ = lab.run("A", tcp(MAC_A, MAC_R1, IP_A, IP_C, dport=22))
    assert r.verdict is Verdict.DROP


def test_membership_change_is_read_through_the_view() -> None:
    lab = _admin_lab()
    frame = tcp(MAC_B, MAC_R1, IP_B, IP_C, dport=22)
    first = lab.sim("B", frame)
    assert first.verdict is Verdict.DROP
    unrelated = lab.sim("A", tcp(MAC_A, "02:00:00:00:01:0b", IP_A, IP_B, dport=80))
    assert lab.named["gid"] not in unrelated.tags  # an L2 flow does not depend on the group
    group = lab.view.get("ip_addr_group", lab.named["gid"])
    assert isinstance(group, IPAddrGroup)
    lab.update(group.model_copy(update={"addresses": [IP_A, IP_B]}))  # B joined
    assert lab.sim("B", frame).verdict is Verdict.FORWARD
    lab.update(group.model_copy(update={"addresses": ["10.0.1.0/24"]}))  # a prefix holds both
    assert lab.sim("B", frame).verdict is Verdict.FORWARD
    assert lab.sim("A", tcp(MAC_A, MAC_R1, IP_A, IP_C, dport=22)).verdict is Verdict.FORWARD


def test_cidr_group_matching() -> None:
    g = CAddrGroup(["10.0.0.5", "10.1.0.0/16", "10.1.2.0/24", "192.168.0.0/30", "0.0.0.0/0"])
    assert ip_to_int("8.8.8.8") in g  # /0 holds everything
    g = CAddrGroup(["10.0.0.5", "10.1.0.0/16", "192.168.0.0/30"])
    for inside in ("10.0.0.5", "10.1.255.1", "10.1.0.0", "192.168.0.3"):
        assert ip_to_int(inside) in g, inside
    for outside in ("10.0.0.6", "10.2.0.1", "192.168.0.4", "0.0.0.0"):
        assert ip_to_int(outside) not in g, outside


@pytest.mark.parametrize("match_by", ["ip_addr_group_src_id", "remote_group_src_id"])
def test_trace_names_the_deciding_rule_and_explains_the_others(match_by: str) -> None:
    lab = _admin_lab(match_by)
    view: MemoryTopology = lab.view
    b = lab.ports["B"].id
    plain, _ = run_trace(view, b, IP_C, "tcp", 40000, 22)
    assert plain.verdict is Verdict.DROP
    decided = plain.trace.decided_by()
    assert decided is not None and decided.name == "c-to-vm #2 default-deny"
    assert decided.decision == "drop"
    assert "no-match" not in " ".join(plain.trace.decisions())
    verbose, _ = run_trace(view, b, IP_C, "tcp", 40000, 22, explain=True)
    skipped = [s for s in verbose.trace.steps if s.decision == "no-match"]
    assert [s.name for s in skipped] == ["c-to-vm #0 icmp", "c-to-vm #1 ssh-from-admin"]
    assert skipped[0].detail == "nw_proto differs (packet: 6)"
    assert skipped[1].detail == f"{match_by} differs (packet: {IP_B})"
    assert "c-to-vm #2 default-deny [" in verbose.trace.render()
