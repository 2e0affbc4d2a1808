"""A rule on a port group's addresses matches routed traffic from its members, and a
membership change removes exactly the flows that read the group."""

from __future__ import annotations

import pytest

from netloom.packet import IPPROTO_TCP

from .agentlab import IP, MAC, MAC_R1, applied, run, tcp
from .agentlab import cluster as agent_cluster

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("match_by", ["ip_addr_group_src_id", "remote_group_src_id"])
def test_port_group_addresses_across_the_router(match_by: str) -> None:
    async def scenario() -> None:
        async with agent_cluster() as c:
            pg, _ = c.svc.create("port_group", {"name": "admin"})
            gid = pg["ip_addr_group_id"]
            c.svc.update("port", c.ids["A"], {"port_group_ids": [pg["id"]]})
            c.create(
                "rule",
                chain_id=c.ids["c_in"],
                position=0,
                action="accept",
                nw_proto=IPPROTO_TCP,
                **{match_by: gid if match_by == "ip_addr_group_src_id" else pg["id"]},
                tp_dst={"start": 80, "end": 80},
            )
            await applied(c, "h1", "h2", "h3")
            h1 = c.nodes["h1"].agent
            before = h1.stats["invalidated"]
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 80))  # member, via r1: accepted
            assert len(c.got("C")) == 1
            await c.send("B", tcp("B", IP["C"], MAC_R1, 40000, 80))  # not a member: dropped
            assert c.got("C") == []
            await c.send("B", tcp("B", IP["A"], MAC["A"], 40000, 5))  # L2, no group read
            assert len(h1.flows) == 3 and h1.flows.tagged(gid) == 2
            c.svc.update("port", c.ids["E"], {"port_group_ids": [pg["id"]]})  # E joins
            await applied(c, "h1")
            assert h1.stats["invalidated"] - before == 2
            assert len(h1.flows) == 1
            await c.send("E", tcp("E", IP["C"], MAC_R1, 40000, 80))
            assert len(c.got("C")) == 1
            await c.send("B", tcp("B", IP["C"], MAC_R1, 40001, 80))
            assert c.got("C") == []

    run(scenario())
