"""End-to-end through agents on memory datapaths: ARP, routing across hosts, flows, lazy load."""

from __future__ import annotations

import pytest

from netloom.packet import ARP_REPLY, ip_to_int, mac_to_int

from .agentlab import GW1, GW2, IP, MAC, MAC_R1, MAC_R2, arp_request, cluster, ping, run

pytestmark = pytest.mark.unit


def test_arp_and_ping_cross_hosts_through_router() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h1, h2 = c.nodes["h1"], c.nodes["h2"]
            # ARP for the gateway is answered on h1 (the bridge knows its router port).
            await c.send("A", arp_request("A", GW1))
            got = c.got("A")
            assert len(got) == 1 and got[0].arp is not None
            assert got[0].arp.op == ARP_REPLY and got[0].arp.sha == mac_to_int(MAC_R1)
            assert len(h1.agent.flows) == 0  # ARP replies are never cached

            # First ping: simulated on h1 (topology loaded lazily, packet parked meanwhile),
            # tunnelled to h2 and delivered to C without a simulation on h2.
            await c.send("A", ping("A", IP["C"], MAC_R1))
            got = c.got("C")
            assert len(got) == 1
            f = got[0]
            assert f.ip is not None and f.ip.ttl == 63
            assert f.eth.src == mac_to_int(MAC_R2) and f.eth.dst == mac_to_int(MAC["C"])
            assert h1.agent.stats["parked"] >= 1 and h1.agent.stats["resimulated"] >= 1
            assert h1.agent.stats["installed"] == 1
            assert h2.agent.stats["upcalls"] == 0

            # The reply from C is simulated on h2 and tunnelled back to A.
            await c.send("C", ping("C", IP["A"], MAC_R2, itype=0))
            got = c.got("A")
            assert len(got) == 1 and got[0].ip is not None
            assert got[0].ip.src == ip_to_int(IP["C"]) and got[0].ip.ttl == 63

            # Second packet of the flow: no upcall on h1, still delivered.
            before = h1.agent.stats["upcalls"]
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=2))
            assert len(c.got("C")) == 1
            assert h1.agent.stats["upcalls"] == before

            # Lazy loading: h1 never loaded what its ports cannot reach.
            assert h1.agent.view.peek("bridge", c.ids["other"]) is None
            assert h1.agent.view.peek("bridge", c.ids["net2"]) is not None
            assert c.nodes["h3"].agent.view.peek("router", c.ids["r1"]) is None

            # The router answers pings to its own address (generated, not cached).
            await c.send("A", ping("A", GW2, MAC_R1, ident=9))
            got = c.got("A")
            assert len(got) == 1 and got[0].ip is not None
            assert got[0].ip.src == ip_to_int(GW2)

    run(scenario())
