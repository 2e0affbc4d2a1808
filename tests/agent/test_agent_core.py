"""The sans-IO core alone: requests it makes, parking bounds and timeouts."""

from __future__ import annotations

import pytest

from netloom.agent.core import Agent, AgentConfig, Subscribe
from netloom.agent.view import Interest
from netloom.datapath.memory import MemoryDatapath
from netloom.model.types import new_id
from netloom.packet import build

from .agentlab import IP, MAC, MAC_R1, ping

pytestmark = pytest.mark.unit


def _agent(**cfg: object) -> tuple[Agent, MemoryDatapath, str, int]:
    host, port, bridge = new_id(), new_id(), new_id()
    dp = MemoryDatapath(clock=0.0)
    a = Agent(AgentConfig(host, **cfg), dp)  # type: ignore[arg-type]
    a.start(0.0)
    reqs = a.take_requests()
    assert Subscribe(Interest.where("port", "host_id", host)) in reqs
    a.on_topology(
        "port",
        port,
        {
            "id": port,
            "device_id": bridge,
            "type": "bridge",
            "mac": MAC["A"],
            "fixed_ips": [IP["A"]],
            "host_id": host,
            "interface_name": "tap-a",
            "tunnel_key": 7,
        },
        0.0,
    )
    n = a.dp_port_of(port)
    assert n and dp.ports()[0].ifname == "tap-a"
    return a, dp, bridge, n


def test_missing_topology_is_requested_and_packets_park_with_bounds() -> None:
    a, dp, bridge, n = _agent(park_per_key=2, park_timeout_s=1.0)
    for seq in range(5):
        dp.receive(build(ping("A", IP["C"], MAC_R1, seq=seq)), n)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    assert Subscribe(Interest.obj("bridge", bridge)) in a.take_requests()
    assert a.parked == 2 and a.stats["park_dropped"] == 3  # bounded per awaited object
    a.tick(2.0)  # past the deadline: dropped, not kept forever
    assert a.parked == 0 and a.stats["park_dropped"] == 5


def test_interest_in_untouched_objects_is_dropped() -> None:
    a, dp, bridge, n = _agent(interest_idle_s=10.0)
    dp.receive(build(ping("A", IP["C"], MAC_R1)), n)
    a.handle_upcalls(dp.poll_upcalls(), 0.0)
    a.take_requests()
    a.on_topology("bridge", bridge, {"id": bridge, "name": "b"}, 0.1)
    a.on_loaded(Interest.obj("bridge", bridge), 0.1)
    assert a.view.peek("bridge", bridge) is not None
    assert a.take_requests() == [Subscribe(Interest.where("port", "device_id", bridge))]
    a.tick(5.0)
    assert a.take_requests() == []
    a.tick(60.0)  # nobody asked for the bridge since, and no flow depends on it
    reqs = a.take_requests()
    assert any(getattr(r, "interest", None) == Interest.obj("bridge", bridge) for r in reqs)
    assert a.view.peek("bridge", bridge) is None
    # the pinned subscriptions (this host's ports) stay
    assert Interest.where("port", "host_id", a.host_id) not in [
        getattr(r, "interest", None) for r in reqs
    ]
