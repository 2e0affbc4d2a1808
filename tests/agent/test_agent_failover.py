"""An agent whose cluster process dies moves to another one on the same store: its flows stay,
nothing is installed again and no snapshot is taken."""

from __future__ import annotations

import pytest

from netloom.agent.options import AgentOptions, parse_argv
from netloom.api.reports import ClusterReports
from netloom.errors import InvalidInput
from netloom.topology.server import TopologyServer
from waiting import eventually

from .agentlab import IP, MAC_R1, cluster, ping, run

pytestmark = pytest.mark.unit


def test_agent_moves_to_another_cluster_process_without_reinstalling_flows() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h1 = c.nodes["h1"]
            await c.send("A", ping("A", IP["C"], MAC_R1))
            assert len(c.got("C")) == 1
            installed = h1.agent.stats["installed"]
            flows = len(h1.agent.flows)
            assert installed >= 1 and flows >= 1
            other = TopologyServer(c.store, reports=ClusterReports(c.svc))
            port = await other.start("127.0.0.1", 0)
            try:
                client = h1.driver.client
                client.endpoints = (client.address, ("127.0.0.1", port))
                cached, applied = client.cached_count(), client.applied
                await c.server.stop()  # the first cluster process goes
                await eventually(lambda: client.connects == 2 and client.connected, what="moved")
                assert client.address == ("127.0.0.1", port)
                assert client.resume_modes[-1] == "history"  # from its revision, no snapshot
                assert (client.cached_count(), client.applied) == (cached, applied)
                # the flow is still there: the next packet needs no upcall
                upcalls = h1.agent.stats["upcalls"]
                await c.send("A", ping("A", IP["C"], MAC_R1, seq=2))
                assert len(c.got("C")) == 1
                assert h1.agent.stats["upcalls"] == upcalls
                assert h1.agent.stats["installed"] == installed
                assert len(h1.agent.flows) == flows
                # a change written while on the new server still reaches the agent
                c.svc.update("router", c.ids["r1"], {"name": "moved"})
                await eventually(lambda: client.applied > applied, what="change applied")
            finally:
                await other.stop()

    run(scenario())


def test_topology_takes_a_list_of_endpoints() -> None:
    one = AgentOptions(topology="192.0.2.1:8182", host_id="x")
    assert one.addresses() == [("192.0.2.1", 8182)]
    three = AgentOptions(topology="192.0.2.1:8182, 192.0.2.2:8182,[2001:db8::1]:8182", host_id="x")
    assert three.addresses() == [("192.0.2.1", 8182), ("192.0.2.2", 8182), ("2001:db8::1", 8182)]
    assert parse_argv(three.to_argv()) == three
    for bad in ("192.0.2.1:8182,", "a:1,b", "a:0"):
        with pytest.raises(InvalidInput):
            AgentOptions(topology=bad, host_id="x").addresses()
