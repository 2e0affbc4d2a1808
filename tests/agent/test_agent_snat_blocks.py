"""SNAT port blocks leased through the cluster: two hosts translating to one address get
disjoint blocks, and the packet parked while its host leased one is delivered."""

from __future__ import annotations

import pytest

from netloom.api.snat import SNAT_BLOCK_SIZE, SNAT_PORT_MIN
from netloom.api.tx import SNAT_BLOCKS
from netloom.packet import Icmp, ip_to_int

from .agentlab import IP, MAC_R1, MAC_R2, Cluster, cluster, ping, run, tcp

pytestmark = pytest.mark.unit

NAT_IP = "203.0.113.7"  # RFC 5737


def _snat_net2(c: Cluster) -> None:
    """r1 translates what net2 sends out of the router to NAT_IP, ports from leased blocks."""
    out = c.create("chain", name="r1-out")
    c.create(
        "rule",
        chain_id=out,
        position=0,
        action="snat",
        nw_src="10.0.2.0/24",
        nat_targets=[
            {"address_from": NAT_IP, "address_to": NAT_IP, "port_from": 1024, "port_to": 65535}
        ],
    )
    c.svc.update("router", c.ids["r1"], {"outbound_filter_id": out})


def test_two_hosts_lease_disjoint_blocks_and_the_parked_packet_is_delivered() -> None:
    async def scenario() -> None:
        async with cluster(dhcp=False) as c:
            _snat_net2(c)
            ports: dict[str, int] = {}
            for vm, sport in (("C", 40000), ("D", 40001)):  # C on h2, D on h3
                await c.send(vm, tcp(vm, IP["B"], MAC_R2, sport, 80))
                (got,) = c.got("B")
                assert got.ip is not None and got.l4 is not None
                assert got.ip.src == ip_to_int(NAT_IP)
                ports[vm] = got.l4.sport  # type: ignore[union-attr]
            h2, h3 = c.nodes["h2"].agent, c.nodes["h3"].agent
            assert h2.stats["parked"] >= 1 and h3.stats["parked"] >= 1  # waited for a block
            blocks = {
                n: h.state.snat_blocks[(c.ids["r1"], ip_to_int(NAT_IP))]
                for n, h in (("h2", h2), ("h3", h3))
            }
            (b2,), (b3,) = blocks["h2"], blocks["h3"]
            assert b2[1] - b2[0] + 1 == SNAT_BLOCK_SIZE == b3[1] - b3[0] + 1
            assert b2[0] >= SNAT_PORT_MIN and b3[0] >= SNAT_PORT_MIN
            assert b2[1] < b3[0] or b3[1] < b2[0]  # disjoint
            assert b2[0] <= ports["C"] <= b2[1] and b3[0] <= ports["D"] <= b3[1]
            (doc,) = c.store.list(SNAT_BLOCKS)
            assert sorted(doc.data["blocks"].values()) == sorted([c.ids["h2"], c.ids["h3"]])

    run(scenario())


def test_an_echo_through_snat_comes_back_from_another_host() -> None:
    """The echo id is rewritten (no datapath action does that, so the packet is sent as a
    generated one): its NAT keys still go to the host it is sent to, which translates the
    reply back."""

    async def scenario() -> None:
        async with cluster(dhcp=False) as c:
            _snat_net2(c)
            back = c.create("chain", name="r1-in")
            c.create("rule", chain_id=back, position=0, action="reverse-snat")
            c.svc.update("router", c.ids["r1"], {"inbound_filter_id": back})
            await c.send("C", ping("C", IP["B"], MAC_R2, ident=77))  # C on h2, B on h1
            (got,) = c.got("B")
            assert got.ip is not None and got.ip.src == ip_to_int(NAT_IP)
            assert isinstance(got.l4, Icmp)
            ident = got.l4.rest >> 16
            await c.send("B", ping("B", NAT_IP, MAC_R1, ident=ident, itype=0))
            (reply,) = c.got("C")
            assert reply.ip is not None and reply.ip.dst == ip_to_int(IP["C"])
            assert isinstance(reply.l4, Icmp) and reply.l4.type == 0
            assert reply.l4.rest >> 16 == 77

    run(scenario())
