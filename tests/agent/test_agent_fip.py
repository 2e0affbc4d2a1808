"""Connections through a floating IP: one upcall per host per connection, none dropped.

``bench perf`` once measured TCP_CRR through a floating IP at ~0.5 % of bare, every lost
SYN costing a 1 s retransmission. Two causes, each reproduced here:

* the reply (SYN-ACK) was simulated on the server's host *before* the flow-state push of the
  connection, already waiting in the agent's UDP socket, was applied: without the DNAT binding
  the reply took the router's SNAT rule, created and pushed NAT state of its own, and that
  push invalidated the client host's fresh flow: 2-3 upcalls per connection instead of one;
* the per-port upcall budget (200/s, burst 100) was below what one VM opening connections
  needs, and every upcall over it is a dropped SYN.

The flow-state channel here is the real one (UDP on loopback addresses standing in for the
underlay), so the ordering is the driver's, not the test harness's.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from netloom.agent.core import Agent, AgentConfig
from netloom.agent.driver import AgentDriver
from netloom.api.service import ObjectService
from netloom.datapath.memory import MemoryDatapath
from netloom.packet import IPPROTO_TCP, build, ip_to_int
from netloom.sim.state import DNAT_REV, SNAT_FWD, SNAT_REV
from netloom.store.memory import MemoryStore
from netloom.topology.client import TopologyClient
from netloom.topology.server import TopologyServer

from . import agentlab
from .agentlab import IP, MAC_R1, MAC_R2, Cluster, Node, bind_all, build_tenant, run, tcp

pytestmark = pytest.mark.unit

FIP = "203.0.113.50"  # RFC 5737
SSH = 22  # what C's to-VM chain lets in (agentlab)
SYN, SYN_ACK = 0x02, 0x12
LOOPBACK_UNDERLAY = {"h1": "127.0.0.61", "h2": "127.0.0.62", "h3": "127.0.0.63"}


def _free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _fip_chains(c: Cluster) -> None:
    """MidoNet's floating IP on r1, as ``bench perf``'s overlay-fip builds it: C is reached
    at FIP (in: reverse-snat, dnat FIP -> C; out: reverse-dnat, snat C -> FIP)."""
    cin, cout = c.create("chain", name="fip-in"), c.create("chain", name="fip-out")
    to_c = [{"address_from": IP["C"], "address_to": IP["C"]}]
    to_fip = [{"address_from": FIP, "address_to": FIP}]
    c.create("rule", chain_id=cin, position=0, action="reverse-snat")
    c.create("rule", chain_id=cin, position=1, action="dnat", nw_dst=f"{FIP}/32", nat_targets=to_c)
    c.create("rule", chain_id=cout, position=0, action="reverse-dnat")
    c.create(
        "rule", chain_id=cout, position=1, action="snat", nw_src=f"{IP['C']}/32", nat_targets=to_fip
    )
    c.svc.update("router", c.ids["r1"], {"inbound_filter_id": cin, "outbound_filter_id": cout})


@asynccontextmanager
async def udp_cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """agentlab's cluster with real UDP flow-state channels between the agents."""
    monkeypatch.setattr(agentlab, "UNDERLAY", LOOPBACK_UNDERLAY)
    store = MemoryStore()
    svc = ObjectService(store)
    server = TopologyServer(store)
    c = Cluster(store, svc, server, await server.start("127.0.0.1", 0))
    state_port = _free_udp_port(LOOPBACK_UNDERLAY["h1"])
    try:
        build_tenant(c, dhcp=False)
        _fip_chains(c)
        for name, ip in LOOPBACK_UNDERLAY.items():
            dp = MemoryDatapath()
            agent = Agent(AgentConfig(c.ids[name]), dp)
            client = TopologyClient(c.ids[name], ("127.0.0.1", c.port))
            driver = AgentDriver(
                agent, client, metrics_port=None, state_port=state_port, tick_s=0.2
            )
            c.nodes[name] = Node(name, c.ids[name], ip, dp, agent, driver)
            await driver.start()
        await bind_all(c)
        for n in c.nodes.values():
            await n.driver.open_state_channel()
        yield c
    finally:
        for n in c.nodes.values():
            await n.driver.stop()
        await server.stop()


def _carry_all(c: Cluster) -> None:
    while c._carry():
        pass


def test_reply_sees_the_pushed_nat_state_before_it_is_simulated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with udp_cluster(monkeypatch) as c:
            h1, h2 = c.nodes["h1"], c.nodes["h2"]
            a, cc = c.vms["A"], c.vms["C"]
            # Warm-up connection (topology loaded lazily on both hosts, packets parked).
            await c.send("A", tcp("A", FIP, MAC_R1, 40000, SSH, SYN))
            (got,) = c.got("C")
            assert got.ip is not None and got.ip.dst == ip_to_int(IP["C"])
            await c.send("C", tcp("C", IP["A"], MAC_R2, SSH, 40000, SYN_ACK))
            (back,) = c.got("A")
            assert back.ip is not None and back.ip.src == ip_to_int(FIP)

            # A new connection, packet by packet with no event-loop turn in between, as on a
            # busy host: h1 pushes the NAT keys (UDP, now in h2's socket) and sends the SYN;
            # C answers at once; h2 handles the SYN-ACK upcall in its next poll.
            pushed2, inval1 = h2.agent.stats["pushed"], h1.agent.stats["invalidated"]
            h1.dp.receive(build(tcp("A", FIP, MAC_R1, 40001, SSH, SYN)), a.dp_port)
            assert h1.driver.poll() == 1
            _carry_all(c)
            (got,) = c.got("C")
            assert got.l4 is not None and got.ip is not None
            assert got.ip.dst == ip_to_int(IP["C"]) and got.l4.dport == SSH  # type: ignore[union-attr]
            h2.dp.receive(build(tcp("C", IP["A"], MAC_R2, SSH, 40001, SYN_ACK)), cc.dp_port)
            assert h2.driver.poll() == 1
            _carry_all(c)
            (back,) = c.got("A")
            assert back.ip is not None and back.ip.src == ip_to_int(FIP)

            # The reply was reverse-DNAT'd with the pushed binding: no SNAT state of its own,
            # nothing pushed back, h1's flow of the connection still installed.
            rev = (
                DNAT_REV,
                c.ids["r1"],
                IPPROTO_TCP,
                ip_to_int(IP["C"]),
                SSH,
                ip_to_int(IP["A"]),
                40001,
            )
            assert rev in h2.agent.state.nat
            assert not [k for k in h2.agent.state.nat if k[0] in (SNAT_FWD, SNAT_REV)]
            assert h2.agent.stats["pushed"] == pushed2
            assert h1.agent.stats["invalidated"] == inval1

            # The rest of the connection rides the kernel flows: no upcall on either host.
            ups = h1.agent.stats["upcalls"], h2.agent.stats["upcalls"]
            await c.send("A", tcp("A", FIP, MAC_R1, 40001, SSH, 0x10))
            await c.send("C", tcp("C", IP["A"], MAC_R2, SSH, 40001, 0x10))
            assert len(c.got("C")) == 1 and len(c.got("A")) == 1
            assert (h1.agent.stats["upcalls"], h2.agent.stats["upcalls"]) == ups

    run(scenario())


def test_connections_faster_than_the_port_budget_are_served_while_the_agent_keeps_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """600 SYNs to the floating IP in well under a second (3x the default per-port budget
    of 200/s + 100 burst), arriving a few at a time as a connection-heavy VM sends them: the
    agent keeps up (small batches), so none is dropped; each would cost a 1 s SYN
    retransmission (RFC 6298). Floods (full batches) are still limited: test_agent_services."""

    async def scenario() -> None:
        async with udp_cluster(monkeypatch) as c:
            h1, a = c.nodes["h1"], c.vms["A"]
            assert h1.agent.cfg.upcall_rate + h1.agent.cfg.upcall_burst < 600
            await c.send("A", tcp("A", FIP, MAC_R1, 39999, SSH, SYN))  # warm-up
            assert len(c.got("C")) == 1
            for first in range(41000, 41600, 4):
                for sport in range(first, first + 4):
                    h1.dp.receive(build(tcp("A", FIP, MAC_R1, sport, SSH, SYN)), a.dp_port)
                assert h1.driver.poll() == 4
            assert h1.agent.stats["rate_limited"] == 0
            _carry_all(c)
            assert len(c.got("C")) == 600

    run(scenario())
