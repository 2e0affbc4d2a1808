"""An uplink bound on the agent (memory datapath): plugged as an uplink, its sidecar plugged
as a pseudo port, BGP steered both ways by installed flows, ARP copied to the sidecar."""

from __future__ import annotations

import pytest

from netloom.agent.core import Agent, AgentConfig
from netloom.datapath.base import Fate, PortKind
from netloom.datapath.memory import MemoryDatapath
from netloom.model.records import Port
from netloom.model.types import new_id
from netloom.packet import (
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPPROTO_TCP,
    Arp,
    Ethernet,
    Frame,
    IPv4,
    Tcp,
    build,
    ip_to_int,
    mac_to_int,
)
from netloom.sim.uplink import sidecar_id

pytestmark = pytest.mark.unit

PORT_MAC, PEER_MAC = "02:00:00:00:aa:02", "02:00:00:00:aa:01"
PORT_IP, PEER_IP = "198.19.1.2", "198.19.1.1"


def _bgp(*, to_sidecar: bool) -> bytes:
    """A BGP segment between the peer and the port's address, either way."""
    src, dst, smac, dmac = PEER_IP, PORT_IP, PEER_MAC, PORT_MAC
    sport, dport = 40000, 179
    if not to_sidecar:
        src, dst, smac, dmac, sport, dport = dst, src, dmac, smac, dport, sport
    ip = IPv4(ip_to_int(src), ip_to_int(dst), IPPROTO_TCP, ttl=1)
    eth = Ethernet(mac_to_int(dmac), mac_to_int(smac), ETH_TYPE_IPV4)
    return build(Frame(eth, ip=ip, l4=Tcp(sport, dport, flags=0x02)))


def _agent() -> tuple[Agent, MemoryDatapath, str]:
    host, router, port = new_id(), new_id(), new_id()
    dp = MemoryDatapath(clock=0.0)
    a = Agent(AgentConfig(host), dp)
    a.start(0.0)
    a.on_topology("router", router, {"id": router, "name": "provider"}, 0.0)
    a.on_topology(
        "port",
        port,
        {
            "id": port,
            "device_id": router,
            "type": "router",
            "mac": PORT_MAC,
            "address": f"{PORT_IP}/24",
            "host_id": host,
            "interface_name": "eth1",
            "tunnel_key": 9,
        },
        0.0,
    )
    return a, dp, port


def _sent_to(dp: MemoryDatapath, n: int) -> list[bytes]:
    return [o.packet for o in dp.sent if o.fate is Fate.OUTPUT and o.port == n]


def test_router_port_plugs_as_uplink_and_its_sidecar_as_a_veth() -> None:
    a, dp, port = _agent()
    kinds = {p.ifname: p.kind for p in dp.ports()}
    assert kinds["eth1"] is PortKind.UPLINK
    a.set_sidecar(port, "nlgw0")
    assert {p.ifname: p.kind for p in dp.ports()}["nlgw0"] is PortKind.VM
    assert a.dp_port_of(sidecar_id(port)) and port in a.state.sidecars
    a.set_sidecar(port, None)
    assert "nlgw0" not in {p.ifname for p in dp.ports()} and port not in a.state.sidecars


def test_bgp_goes_between_uplink_and_sidecar_by_flows() -> None:
    a, dp, port = _agent()
    a.set_sidecar(port, "nlgw0")
    up, side = a.dp_port_of(port), a.dp_port_of(sidecar_id(port))
    syn = _bgp(to_sidecar=True)
    dp.receive(syn, up)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert _sent_to(dp, side) == [syn] and a.stats["installed"] == 1
    dp.receive(syn, up)  # the flow carries the next one, no upcall
    assert dp.poll_upcalls() == [] and len(_sent_to(dp, side)) == 2
    synack = _bgp(to_sidecar=False)
    dp.receive(synack, side)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert _sent_to(dp, up) == [synack]
    # the sidecar goes: its flows go with it, BGP from the uplink is dropped again
    a.set_sidecar(port, None)
    dp.sent.clear()
    dp.receive(syn, up)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert _sent_to(dp, side) == []


def test_learned_routes_leave_the_sidecars_flows_in_place() -> None:
    """BGP and BFD never look a route up: a storm of learned routes on the uplink's router
    must not send them back to the agent (a busy agent would delay BFD past its timeout)."""
    a, dp, port = _agent()
    a.set_sidecar(port, "nlgw0")
    up = a.dp_port_of(port)
    syn = _bgp(to_sidecar=True)
    dp.receive(syn, up)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    uplink = a.view.peek("port", port)
    assert isinstance(uplink, Port)
    router = uplink.device_id
    for i in range(3):
        rid = new_id()
        doc = {"id": rid, "router_id": router, "dst": f"10.0.{i}.0/24", "next_hop_port_id": port}
        a.on_topology("route", rid, {**doc, "next_hop_gateway": PEER_IP}, 0.0)
    dp.receive(syn, up)
    assert dp.poll_upcalls() == [] and len(a.flows) == 1


def test_arp_for_the_port_is_answered_and_copied_to_the_sidecar() -> None:
    a, dp, port = _agent()
    a.set_sidecar(port, "nlgw0")
    up, side = a.dp_port_of(port), a.dp_port_of(sidecar_id(port))
    req = Arp(ARP_REQUEST, mac_to_int(PEER_MAC), ip_to_int(PEER_IP), 0, ip_to_int(PORT_IP))
    frame = build(Frame(Ethernet(ETH_BROADCAST, mac_to_int(PEER_MAC), ETH_TYPE_ARP), arp=req))
    dp.receive(frame, up)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert _sent_to(dp, side) == [frame]
    [reply] = _sent_to(dp, up)
    assert reply[:6] == bytes.fromhex(PEER_MAC.replace(":", ""))
