"""Next-hop ARP entries shared through the NSDB: a compute host routing out of an uplink of
another host parks its packet on the missing entry and sends the ARP request out of that
uplink; the gateway learns the answer, reports it, the cluster keeps it, and the compute host
(watching the router's entries) sends the packet with the learned MAC."""

from __future__ import annotations

import pytest

from netloom.datapath.base import Fate
from netloom.model.neighbors import ARP_KIND
from netloom.packet import (
    ARP_REPLY,
    ETH_TYPE_ARP,
    Arp,
    Ethernet,
    Frame,
    build,
    ip_to_int,
    mac_to_int,
    parse,
)

from .agentlab import MAC_R1, Cluster, Node, cluster, eventually, run, udp

pytestmark = pytest.mark.unit

UPLINK_MAC, PEER_MAC = "02:00:00:00:aa:02", "02:00:00:00:aa:01"
UPLINK_IP, PEER_IP = "198.19.1.2", "198.19.1.1"


def _out(node: Node, dp_port: int) -> list[Frame]:
    frames = [parse(o.packet) for o in node.dp.sent if o.fate is Fate.OUTPUT and o.port == dp_port]
    return [f for f in frames if isinstance(f, Frame)]


def _uplink_on_h3(c: Cluster) -> str:
    r1 = c.ids["r1"]
    up = c.create(
        "port", device_id=r1, type="router", name="up", mac=UPLINK_MAC, address=f"{UPLINK_IP}/24"
    )
    c.create(
        "route",
        router_id=r1,
        dst="198.18.0.0/24",
        next_hop_port_id=up,
        next_hop_gateway=PEER_IP,
    )
    c.svc.bind_port(up, c.ids["h3"], "up0")
    return up


def test_an_entry_learned_on_a_remote_uplink_releases_the_parked_packet() -> None:
    async def scenario() -> None:
        async with cluster(dhcp=False) as c:
            up = _uplink_on_h3(c)
            h1, h3 = c.nodes["h1"], c.nodes["h3"]
            await eventually(lambda: h3.agent.dp_port_of(up) != 0, what="uplink plugged")
            n = h3.agent.dp_port_of(up)
            await c.send("A", udp("A", "198.18.0.10", MAC_R1, 5000, 53))
            assert h1.agent.parked == 1
            (req,) = _out(h3, n)  # h1's ARP request, out of the uplink on h3
            assert req.arp is not None and req.arp.tpa == ip_to_int(PEER_IP)
            answer = Arp(
                ARP_REPLY,
                mac_to_int(PEER_MAC),
                ip_to_int(PEER_IP),
                mac_to_int(UPLINK_MAC),
                ip_to_int(UPLINK_IP),
            )
            eth = Ethernet(mac_to_int(UPLINK_MAC), mac_to_int(PEER_MAC), ETH_TYPE_ARP)
            h3.dp.receive(build(Frame(eth, arp=answer)), n)

            await c.pump()
            await eventually(lambda: h1.agent.parked == 0, what="the entry shared with h1")
            await c.pump()  # the released packet, tunnelled to h3
            (pkt,) = [f for f in _out(h3, n) if f.ip is not None]
            assert pkt.eth.dst == mac_to_int(PEER_MAC) and pkt.eth.src == mac_to_int(UPLINK_MAC)
            assert h1.agent.parked == 0
            (doc,) = c.store.list(ARP_KIND)
            assert doc.data["mac"] == PEER_MAC and doc.data["host_id"] == c.ids["h3"]
            assert doc.data["port_id"] == up and doc.data["ip"] == PEER_IP

    run(scenario())
