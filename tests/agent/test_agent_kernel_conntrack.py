"""Stateful security groups on the datapath's conntrack (kernel_conntrack): after the first
connection, a connection the group accepts is set up without an upcall on either host and
without a flow-state push; replies cross hosts on the receiver's reply entry."""

from __future__ import annotations

import pytest

from netloom.agent.related import upcall_ct_state
from netloom.datapath.base import PortKind, Upcall, UpcallReason
from netloom.datapath.memory import MemoryDatapath
from netloom.flows.model import CT_NEW, CT_REL, CtCommit
from netloom.packet import Frame, Icmp, IPv4, build, ip_to_int, mac_to_int, parse
from netloom.packet.headers import ETH_TYPE_IPV4, IPPROTO_ICMP, Ethernet
from netloom.sim import SimConfig

from .agentlab import IP, MAC, MAC_R1, MAC_R2, Cluster, cluster, run, tcp

pytestmark = pytest.mark.unit
SYN, SYN_ACK, ACK = 0x02, 0x12, 0x10


async def connect(c: Cluster, sport: int) -> None:
    """A (h1, stateful group) opens tcp/22 to C (h2); C answers; A acknowledges."""
    await c.send("A", tcp("A", IP["C"], MAC_R1, sport, 22, SYN))
    assert len(c.got("C")) == 1
    await c.send("C", tcp("C", IP["A"], MAC_R2, 22, sport, SYN_ACK))
    [reply] = c.got("A")  # across hosts, on h2's reply entry: nothing was pushed
    assert reply.ip is not None and reply.ip.src == ip_to_int(IP["C"])
    await c.send("A", tcp("A", IP["C"], MAC_R1, sport, 22, ACK))
    assert len(c.got("C")) == 1


def upcalls(c: Cluster) -> tuple[int, int]:
    return c.nodes["h1"].agent.stats["upcalls"], c.nodes["h2"].agent.stats["upcalls"]


def test_second_connection_makes_no_upcall_and_no_push() -> None:
    async def scenario() -> None:
        async with cluster(sim=SimConfig(kernel_conntrack=True)) as c:
            h1 = c.nodes["h1"]
            await connect(c, 40000)
            assert any(CtCommit() in f.actions for f, _ in h1.dp.dump()), (
                "the new-connection flow commits"
            )
            before, pushes = upcalls(c), c.pushes
            for sport in range(40001, 40011):
                await connect(c, sport)
            assert upcalls(c) == before
            assert c.pushes == pushes == 0
            assert h1.agent.state.conntrack == {}
            assert c.nodes["h2"].agent.state.conntrack == {}
            assert h1.dp.counters().ct_commits >= 11

    run(scenario())


def test_new_connection_towards_the_group_is_still_refused() -> None:
    async def scenario() -> None:
        async with cluster(sim=SimConfig(kernel_conntrack=True)) as c:
            await connect(c, 40000)
            # C opens a connection to A: A's group accepts return traffic only (and ICMP)
            await c.send("C", tcp("C", IP["A"], MAC_R2, 5000, 80, SYN))
            assert c.got("A") == []
            # a reply-shaped packet that belongs to no connection is refused too
            await c.send("C", tcp("C", IP["A"], MAC_R2, 22, 41234, SYN_ACK))
            assert c.got("A") == []

    run(scenario())


def test_flag_off_keeps_the_agent_path() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await connect(c, 40000)
            assert c.pushes >= 1
            assert c.nodes["h1"].agent.state.conntrack

    run(scenario())


def test_icmp_error_quoting_a_tracked_connection_is_related() -> None:
    dp = MemoryDatapath(clock=1.0)
    port = dp.add_port("vm", PortKind.VM)
    sent = build(tcp("A", IP["C"], MAC_R1, 40000, 22))
    error = Frame(
        Ethernet(mac_to_int(MAC_R1), mac_to_int(MAC["C"]), ETH_TYPE_IPV4),
        ip=IPv4(ip_to_int(IP["C"]), ip_to_int(IP["A"]), IPPROTO_ICMP),
        l4=Icmp(3, 3),
        payload=sent[14:42],
    )
    up = Upcall(build(error), port, UpcallReason.MISS, ct_state=CT_NEW)
    assert upcall_ct_state(up, parse(up.packet), dp) == CT_NEW
    # the quoted packet (A -> C) was delivered to this port: its reply direction is here
    a, c = ip_to_int(IP["A"]), ip_to_int(IP["C"])
    dp.ct.commit((port, 6, c, a, 22, 40000), reply=True, closing=False, now=1.0)
    assert upcall_ct_state(up, parse(up.packet), dp) == CT_NEW | CT_REL
