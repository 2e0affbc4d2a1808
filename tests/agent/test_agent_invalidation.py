"""Topology and state changes remove exactly the flows tagged with what changed."""

from __future__ import annotations

import pytest

from netloom.packet import ip_to_int

from .agentlab import IP, MAC, MAC_R1, Cluster, applied, cluster, ping, run, tcp

pytestmark = pytest.mark.unit


async def _warm(c: Cluster) -> None:
    """Install three flows on h1: A->C ping, A->C ssh (both through C's chain), A->B (L2)."""
    await c.send("A", ping("A", IP["C"], MAC_R1))
    await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
    await c.send("A", ping("A", IP["B"], MAC["B"]))
    assert len(c.got("C")) == 2 and len(c.got("B")) == 1
    assert len(c.nodes["h1"].agent.flows) == 3


async def _changed(c: Cluster, *nodes: str) -> int:
    """The flows h1 invalidated, once ``nodes`` (h1 among them) have applied the change."""
    await applied(c, *nodes)
    return c.nodes["h1"].agent.stats["invalidated"]


def test_sg_rule_change_invalidates_exactly_the_chain_flows() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await _warm(c)
            h1 = c.nodes["h1"].agent
            tagged = h1.flows.tagged(c.ids["c_in"])
            assert tagged == 2
            c.svc.delete("rule", c.ids["c_ssh"])
            assert await _changed(c, "h1") == tagged
            assert len(h1.flows) == 1  # the A->B flow stayed
            # ssh to C is now dropped (a new simulation, a drop flow); ping still works
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
            assert c.got("C") == []
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=2))
            assert len(c.got("C")) == 1

    run(scenario())


def test_route_removal_invalidates_routed_flows_only() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await _warm(c)
            h1 = c.nodes["h1"].agent
            tagged = h1.flows.tagged(c.ids["route2"])
            assert tagged == 2
            c.svc.delete("route", c.ids["route2"])
            assert await _changed(c, "h1") == tagged
            assert len(h1.flows) == 1
            # simulated again: router port r1-net2's connected route (route2 was a hand-made
            # copy of it) still leads to C
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=3))
            assert len(c.got("C")) == 1
            # without that route too, the router answers network unreachable (RFC 792 3/0)
            ((p2, _),) = c.svc.list("port", {"name": "r1-net2"})
            c.svc.update("port", p2["id"], {"address": "10.0.9.1/24"})
            assert await _changed(c, "h1") > tagged  # the flow over the connected route went
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=4))
            assert c.got("C") == []
            err = c.got("A")
            assert len(err) == 1 and err[0].l4 is not None
            assert (err[0].l4.type, err[0].l4.code) == (3, 0)  # type: ignore[union-attr]
            await c.send("A", ping("A", IP["B"], MAC["B"], seq=2))  # L2 flow untouched
            assert len(c.got("B")) == 1

    run(scenario())


def test_a_new_route_invalidates_the_flows_that_looked_a_route_up() -> None:
    """A new route may win longest prefix match for any destination the router routes: its
    routed flows go, the bridged one stays."""

    async def scenario() -> None:
        async with cluster() as c:
            await _warm(c)
            h1 = c.nodes["h1"].agent
            before = h1.stats["invalidated"]
            ((p2, _),) = c.svc.list("port", {"name": "r1-net2"})
            r1 = p2["device_id"]
            c.create("route", router_id=r1, dst="10.9.0.0/16", next_hop_port_id=p2["id"])
            assert await _changed(c, "h1") == before + 2
            assert len(h1.flows) == 1  # the A->B flow stayed

    run(scenario())


def test_port_unbind_unplugs_and_invalidates() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await _warm(c)
            h1, h2 = c.nodes["h1"].agent, c.nodes["h2"].agent
            await c.send("C", ping("C", IP["A"], "02:00:00:00:ff:02", itype=0))
            assert len(c.got("A")) == 1
            tagged1 = h1.flows.tagged(c.ids["C"])
            tagged2 = h2.flows.tagged(c.ids["C"])
            assert (tagged1, tagged2) == (2, 1)
            dp_port = h2.dp_port_of(c.ids["C"])
            c.svc.unbind_port(c.ids["C"])
            assert await _changed(c, "h1", "h2") == tagged1
            assert h2.dp_port_of(c.ids["C"]) == 0
            assert h2.stats["invalidated"] == tagged2
            assert dp_port not in {p.port for p in c.nodes["h2"].dp.ports()}
            assert len(h1.flows) == 1
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=4))
            assert c.got("C") == []

    run(scenario())


def test_mac_move_invalidates_flows_to_the_old_port() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            moving, moving_ip = "02:00:00:00:99:99", "10.0.1.99"
            h1 = c.nodes["h1"].agent
            await c.send("A", ping("A", IP["C"], MAC_R1))  # unrelated: must survive
            assert len(c.got("C")) == 1
            # E and B (both on h1, port security off) take turns using one MAC.
            await c.send("E", ping("E", IP["B"], MAC["B"], src_mac=moving, src_ip=moving_ip))
            assert len(c.got("B")) == 1
            await c.send("A", ping("A", moving_ip, moving))
            assert len(c.got("E")) == 1
            key = ("mac", c.ids["net1"], 0, mac_int(moving))
            assert h1.state.macs[key] == c.ids["E"]
            tagged = h1.flows.tagged(key)
            assert tagged == 2  # E's flow from the MAC (it learned it) and A's flow to it
            await c.send("B", ping("B", IP["A"], MAC["A"], src_mac=moving, src_ip=moving_ip))
            assert len(c.got("A")) == 1
            assert h1.state.macs[key] == c.ids["B"]
            assert h1.stats["invalidated"] == tagged
            assert h1.flows.tagged(c.ids["C"]) == 1
            await c.send("A", ping("A", moving_ip, moving, seq=2))
            assert c.got("E") == [] and len(c.got("B")) == 1

    run(scenario())


def mac_int(mac: str) -> int:
    from netloom.packet import mac_to_int

    return mac_to_int(mac)


def test_flow_expiry_forgets_flows() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await _warm(c)
            h1 = c.nodes["h1"].agent
            now = c.nodes["h1"].driver.clock()
            h1.tick(now + h1.cfg.idle_timeout_s + 1)
            assert len(h1.flows) == 0 and h1.stats["expired"] == 3
            assert c.nodes["h1"].dp.dump() == []
            await c.send("A", ping("A", IP["C"], MAC_R1, seq=9))
            assert len(c.got("C")) == 1 and len(h1.flows) == 1
            assert ip_to_int(IP["C"]) == h1.flows.flows()[0].flow.key.ip_dst

    run(scenario())
