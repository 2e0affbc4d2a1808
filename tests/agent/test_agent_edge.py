"""Edge hygiene through agents on memory datapaths: packets with IPv4 options are simulated
one by one (never a flow), source routes end at a router that does not allow them."""

from __future__ import annotations

import pytest

from netloom.packet import Frame

from .agentlab import IP, MAC_R1, applied, cluster, ping, run

pytestmark = pytest.mark.unit

NOPS = b"\x01\x01\x01\x00"
LSRR = b"\x83\x07\x04\xc0\x00\x02\x09\x00"  # loose source route via 192.0.2.9 (RFC 791)


def _ping(seq: int, options: bytes) -> Frame:
    f = ping("A", IP["C"], MAC_R1, seq=seq)
    assert f.ip is not None
    f.ip.options = options
    return f


def test_ip_options_never_ride_a_flow_and_source_routes_need_the_routers_consent() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h1 = c.nodes["h1"]
            await c.send("A", ping("A", IP["C"], MAC_R1))  # installs A -> C's flow
            assert len(c.got("C")) == 1
            installed, upcalls = h1.agent.stats["installed"], h1.agent.stats["upcalls"]
            for seq in (2, 3):  # the flow matches them, the datapath asks the agent anyway
                await c.send("A", _ping(seq, NOPS))
                [got] = c.got("C")
                assert got.ip is not None and got.ip.options == NOPS and got.ip.ttl == 63
            assert h1.agent.stats["upcalls"] == upcalls + 2
            assert h1.agent.stats["installed"] == installed  # executed, never installed

            await c.send("A", _ping(4, LSRR))
            assert c.got("C") == []  # r1 does not allow source routes
            c.svc.update("router", c.ids["r1"], {"allow_source_route": True})
            await applied(c, "h1")
            await c.send("A", _ping(5, LSRR))
            [got] = c.got("C")
            assert got.ip is not None and got.ip.options == LSRR
            assert h1.agent.stats["installed"] == installed

    run(scenario())
