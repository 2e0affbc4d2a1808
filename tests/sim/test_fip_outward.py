"""A VM with a floating IP opening connections outward through a router shaped as the Neutron
translation builds it (in: static DNAT per floating IP, then reverse SNAT; out: static SNAT per
floating IP, then port-block SNAT of everything else), with a stateful security group and the
datapath's conntrack: every connection's reply comes back, whatever its ports."""

from __future__ import annotations

import pytest

from netloom.flows.model import CT_EST, CT_NEW, CT_RPL
from netloom.model.records import NatTarget
from netloom.packet import Frame, IPv4, Tcp, ip_to_int, mac_to_int
from netloom.packet.headers import ETH_TYPE_IPV4, Ethernet
from netloom.sim import Result, SimConfig, Verdict, simulate
from netloom.sim.state import ConntrackAdded

from .conftest import (
    FIP_C,
    IP_A,
    IP_C,
    MAC_A,
    MAC_C,
    MAC_EXT,
    MAC_R2,
    MAC_UP,
    REMOTE,
    UPLINK_IP,
    Lab,
    edge_router,
    security_group,
    tcp,
)

pytestmark = pytest.mark.unit


def _neutron_lab(*, snat_condition: bool) -> Lab:
    lab = Lab(config=SimConfig(kernel_conntrack=True))
    net1, net2 = lab.bridge("net1"), lab.bridge("net2")
    sg_out, sg_in = security_group(lab, "sg")
    lab.vm(net1, "A", MAC_A, IP_A, inbound_filter_id=sg_out.id, outbound_filter_id=sg_in.id)
    lab.vm(net2, "C", MAC_C, IP_C, inbound_filter_id=sg_out.id, outbound_filter_id=sg_in.id)
    r1, rin, rout, up = edge_router(lab, net1, net2)
    to_c = [NatTarget(address_from=IP_C, address_to=IP_C)]
    lab.rule(rin, 0, action="dnat", static=True, nw_dst=f"{FIP_C}/32", nat_targets=to_c)
    cond = {"nw_dst": f"{UPLINK_IP}/32"} if snat_condition else {}
    lab.rule(rin, 1, action="reverse-snat", **cond)
    to_fip = [NatTarget(address_from=FIP_C, address_to=FIP_C)]
    lab.rule(rout, 0, action="snat", static=True, out_port_ids=[up.id], nw_src=f"{IP_C}/32",
             nat_targets=to_fip)  # fmt: skip
    ports = [NatTarget(address_from=UPLINK_IP, address_to=UPLINK_IP, port_from=1024,
                       port_to=65535)]  # fmt: skip
    lab.rule(rout, 1, action="snat", out_port_ids=[up.id], nat_targets=ports)
    lab.state.lease_snat_block(r1.id, ip_to_int(UPLINK_IP), 1024, 1087)
    lab.state.arp[("arp", r1.id, ip_to_int("203.0.113.1"))] = (mac_to_int(MAC_EXT), 1e12)
    return lab


def _sim(lab: Lab, port: str, f: Frame, ct_state: int) -> Result:
    return simulate(f, lab.ports[port].id, lab.view, lab.state, 1000.0, lab.config, ct_state)


def _syn_ack(sport: int, dport: int) -> Frame:
    ip = IPv4(ip_to_int(REMOTE), ip_to_int(FIP_C), 6)
    eth = Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), ETH_TYPE_IPV4)
    return Frame(eth, ip=ip, l4=Tcp(sport, dport, flags=0x12))


@pytest.mark.parametrize("reverse_snat", ["any", "to-gateway"])
def test_connections_out_of_a_floating_ip_are_tracked_where_their_replies_are(
    reverse_snat: str,
) -> None:
    snat_condition = reverse_snat == "to-gateway"
    lab = _neutron_lab(snat_condition=snat_condition)
    for sport in (41000, 41001, 52000):
        syn = tcp(MAC_C, MAC_R2, IP_C, REMOTE, sport=sport, dport=80)
        r = _sim(lab, "C", syn, CT_NEW)
        assert r.verdict is Verdict.FORWARD
        # the reply meets no stateful NAT (the static DNAT takes it): the datapath's
        # conntrack judges it, so the datapath must know the connection
        assert r.ct_commit and not [c for c in r.changes if isinstance(c, ConntrackAdded)]
        # only packets to the gateway's address look bindings up: no flow reads the ports
        assert (r.mask.tp_src == 0) is snat_condition
        back = _sim(lab, "uplink", _syn_ack(80, sport), CT_EST | CT_RPL)
        assert back.verdict is Verdict.FORWARD and back.changes == ()
        assert back.mask.tp_src == back.mask.tp_dst == 0
