"""Flow state reaches every host of a stateful port group, not only the egress host
(flow state between hosts): A (h1) and C (h2) share a group with D (h3)."""

from __future__ import annotations

import pytest

from netloom.packet import ip_to_int
from waiting import eventually

from .agentlab import IP, MAC_R1, Cluster, cluster, run, tcp

pytestmark = pytest.mark.unit


def ct_key(c: Cluster, sport: int) -> tuple[object, ...]:
    return ("ct", c.ids["net1"], 6, ip_to_int(IP["A"]), sport, ip_to_int(IP["C"]), 22)


async def join(c: Cluster, group: str, *vms: str) -> None:
    """Put ``vms`` in ``group`` and wait until every agent with a member port follows it."""
    for vm in vms:
        c.svc.update("port", c.ids[vm], {"port_group_ids": [group]})

    def followed() -> bool:
        for vm in vms:
            got = c.vms[vm].node.agent.view.group_members(group)
            if got is None or {p.id for p in got} != {c.ids[v] for v in vms}:
                return False
        return True

    await eventually(followed, what=f"agents follow group {group}")


def test_conntrack_key_reaches_every_host_of_a_stateful_group() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h1, h2, h3 = c.nodes["h1"], c.nodes["h2"], c.nodes["h3"]
            sg = c.create("port_group", name="sg", stateful=True)
            await join(c, sg, "A", "C", "D")
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
            assert len(c.got("C")) == 1
            key = ct_key(c, 40000)
            assert key in h1.agent.state.conntrack
            assert key in h2.agent.state.conntrack  # the egress host, as before
            assert key in h3.agent.state.conntrack  # D's host: a member of the stateful group
            # D leaves the group: h1 hears it through its filter, and stops pushing to h3
            c.svc.update("port", c.ids["D"], {"port_group_ids": []})
            await eventually(
                lambda: (
                    {p.id for p in h1.agent.view.group_members(sg) or ()}
                    == {c.ids["A"], c.ids["C"]}
                ),
                what="D left",
            )
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40001, 22))
            assert len(c.got("C")) == 1
            assert ct_key(c, 40001) in h2.agent.state.conntrack
            assert ct_key(c, 40001) not in h3.agent.state.conntrack

    run(scenario())


def test_non_stateful_group_causes_no_push() -> None:
    async def scenario() -> None:
        async with cluster() as c:
            h2, h3 = c.nodes["h2"], c.nodes["h3"]
            plain = c.create("port_group", name="plain", stateful=False)
            for vm in ("A", "C", "D"):
                c.svc.update("port", c.ids[vm], {"port_group_ids": [plain]})
            h1 = c.nodes["h1"]
            await eventually(
                lambda: h1.agent.view.peek("port_group", plain) is not None,
                what="h1 loads the group record",
            )
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40000, 22))
            assert len(c.got("C")) == 1
            key = ct_key(c, 40000)
            assert key in h2.agent.state.conntrack
            assert key not in h3.agent.state.conntrack
            # not stateful: its members are not even followed
            assert h1.agent.view.group_members(plain) is None
            # made stateful: h1 starts following it, and the next connection reaches h3
            c.svc.update("port_group", plain, {"stateful": True})
            await eventually(
                lambda: len(h1.agent.view.group_members(plain) or ()) == 3,
                what="h1 follows the now stateful group",
            )
            await c.send("A", tcp("A", IP["C"], MAC_R1, 40002, 22))
            assert ct_key(c, 40002) in h3.agent.state.conntrack

    run(scenario())
