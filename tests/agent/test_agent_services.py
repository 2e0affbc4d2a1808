"""Flow-state push, per-port rate limiting, local DHCP, metrics, the flow-state codec."""

from __future__ import annotations

import pytest

from netloom.agent import flowstate
from netloom.errors import InvalidInput
from netloom.packet import (
    ETH_BROADCAST,
    ETH_TYPE_IPV4,
    IPPROTO_UDP,
    DhcpMessage,
    Ethernet,
    Frame,
    IPv4,
    Udp,
    ip_to_int,
    mac_to_int,
    parse_dhcp,
)
from netloom.packet.dhcp import build_dhcp
from netloom.sim.state import ConntrackAdded, MacLearned, NatAdded

from .agentlab import IP, MAC, MAC_R1, MAC_R2, cluster, ping, run, tcp, udp

pytestmark = pytest.mark.unit


def test_return_traffic_accepted_on_other_host_by_pushed_state() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h2 = c.nodes["h2"]
            # A (h1) opens TCP to C:22 (h2); A's SG admits only return traffic (and ICMP).
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
            assert len(c.got("C")) == 1
            key = ("ct", c.ids["net1"], 6, ip_to_int(IP["A"]), 40000, ip_to_int(IP["C"]), 22)
            assert c.pushes >= 1 and key in h2.agent.state.conntrack
            # C's SYN-ACK, simulated on h2, is accepted by A's stateful chain.
            await c.send("C", tcp("C", IP["A"], MAC_R2, 22, 40000, flags=0x12))
            assert len(c.got("A")) == 1
            # ... also after the reply's flow expired once (the state outlives the flow).
            h2.agent.tick(h2.driver.clock() + h2.agent.cfg.idle_timeout_s + 1)
            assert len(h2.agent.flows) == 0
            await c.send("C", tcp("C", IP["A"], MAC_R2, 22, 40000, flags=0x10))
            assert len(c.got("A")) == 1
            # No connection: dropped by the same chain.
            await c.send("C", tcp("C", IP["A"], MAC_R2, 22, 40001, flags=0x12))
            assert c.got("A") == []

    run(scenario())


def test_flooding_port_does_not_starve_its_neighbour() -> None:
    async def scenario() -> None:
        async with cluster(upcall_burst=50.0, upcall_rate=100.0) as c:
            h1 = c.nodes["h1"]
            await c.send("A", ping("A", IP["C"], MAC_R1))  # load the topology
            c.got("C")
            a, e = c.vms["A"], c.vms["E"]
            # the agent's clock stops (after the buckets have refilled): each port's bucket
            # admits exactly its burst, however long the scan takes to handle
            frozen = h1.driver.clock() + 10.0
            h1.driver.clock = lambda: frozen
            installed = h1.agent.stats["installed"]
            for dport in range(1000, 1400):  # a UDP port scan: a new megaflow per packet
                h1.dp.receive(_b(udp("A", IP["C"], MAC_R1, 5555, dport)), a.dp_port)
            h1.dp.receive(_b(ping("E", IP["C"], MAC_R1)), e.dp_port)
            await c.pump()
            got = c.got("C")
            icmp = [f for f in got if f.ip is not None and f.ip.src == ip_to_int(IP["E"])]
            assert len(icmp) == 1  # E was served
            assert h1.agent.stats["rate_limited"] == 400 - 50  # all but A's burst
            assert h1.agent.stats["installed"] == installed + 50 + 1  # A's burst and E's ping

    run(scenario())


def _b(frame: Frame) -> bytes:
    from netloom.packet import build

    return build(frame)


def _discover(src: str, chaddr: str) -> Frame:
    msg = DhcpMessage(op=1, xid=0x1234, chaddr=mac_to_int(MAC[chaddr]), options=[(53, b"\x01")])
    return Frame(
        Ethernet(ETH_BROADCAST, mac_to_int(MAC[src]), ETH_TYPE_IPV4),
        ip=IPv4(0, 0xFFFFFFFF, IPPROTO_UDP, ttl=64),
        l4=Udp(68, 67),
        payload=build_dhcp(msg),
    )


def test_dhcp_discover_answered_by_local_agent() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await c.send("E", _discover("E", chaddr="B"))  # B's MAC: E gets nothing
            assert c.got("E") == [] and c.got("B") == []
            await c.send("E", _discover("E", chaddr="E"))
            got = c.got("E")
            assert len(got) == 1
            offer = parse_dhcp(got[0].payload)
            assert isinstance(offer, DhcpMessage)
            assert offer.xid == 0x1234 and offer.yiaddr == ip_to_int(IP["E"])
            assert dict(offer.options)[53] == b"\x02"  # OFFER (RFC 2132 9.6)
            assert c.nodes["h1"].agent.stats["installed"] == 0  # answered, never cached

    run(scenario())


def test_metrics_exposed() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            await c.send("A", ping("A", IP["C"], MAC_R1))
            text = c.nodes["h1"].agent.metrics.render().decode()
            assert 'netloom_agent_upcalls_total{reason="miss"} 1.0' in text
            assert "netloom_agent_flows_installed_total 1.0" in text
            assert "netloom_agent_upcall_seconds_count 1.0" in text

    run(scenario())


def test_flowstate_codec_roundtrip_and_rejects_garbage() -> None:
    ct = ConntrackAdded(("ct", "z", 6, 1, 2, 3, 4), 130.0)
    nat = NatAdded(("snat", "r", 17, 1, 2, 3, 4), 99, 1024, 400.0)
    learned = MacLearned(("mac", "b", 0, 5), "p")  # not flow state: not sent
    (dgram,) = flowstate.encode([ct, nat, learned], now=100.0)
    back = flowstate.decode(dgram, now=1000.0)
    assert back == [ConntrackAdded(ct.key, 1030.0), NatAdded(nat.key, 99, 1024, 1300.0)]
    many = flowstate.encode([ct] * 40, now=0.0)
    assert len(many) == 3
    for bad in (
        b"\xc1",
        flowstate._ENC.encode([["ct", [1, 2], 3.0]]),
        flowstate._ENC.encode([["nope"]]),
    ):
        with pytest.raises(InvalidInput):
            flowstate.decode(bad, now=0.0)
