"""The agent's own per-connection path does not slow down as connections accumulate: state
expiry pops what is due instead of scanning the conntrack/NAT/ARP tables every tick (a fake
clock; the work is counted, not timed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from netloom.agent.core import Agent, AgentConfig
from netloom.datapath.memory import MemoryDatapath
from netloom.model.types import new_id
from netloom.sim.state import ArpLearned, ConntrackAdded, NatAdded

pytestmark = pytest.mark.unit


class Counting(dict[Any, Any]):
    """A dict that counts the entries handed out by whole-table iteration."""

    def __init__(self) -> None:
        super().__init__()
        self.visits = 0

    def __iter__(self) -> Iterator[Any]:
        self.visits += len(self)
        return super().__iter__()

    def items(self) -> Any:
        self.visits += len(self)
        return super().items()

    def keys(self) -> Any:
        self.visits += len(self)
        return super().keys()

    def values(self) -> Any:
        self.visits += len(self)
        return super().values()


def test_per_connection_work_does_not_grow_with_connections_seen() -> None:
    agent = Agent(AgentConfig(new_id()), MemoryDatapath(clock=0.0))
    agent.start(0.0)
    tables = Counting(), Counting(), Counting()
    agent.state.conntrack, agent.state.nat, agent.state.arp = tables
    clock = [0.0]

    def connection(i: int) -> None:
        """What one connection costs the agent's state: its keys, then a timer tick."""
        clock[0] += 0.01
        now = clock[0]
        ct = ("ct", "zone", 6, 1, i, 2, 80)
        nat = ("snat", "zone", 6, 1, i, 2, 80)
        agent.apply_state([ConntrackAdded(ct, now + 300), NatAdded(nat, 3, i, now + 300)], now)
        agent.tick(now)

    for i in range(200):
        connection(i)
    assert len(agent.state.conntrack) == 200
    for i in range(200, 5000):  # 4 800 more connections held, none expired yet
        connection(i)
    assert len(agent.state.conntrack) == 5000
    assert sum(t.visits for t in tables) == 0  # no tick scanned a table
    # they all expire together: exactly those keys go, and nothing is left to look at
    agent.apply_state([ArpLearned(("arp", "r", 9), 1, clock[0] + 1000)], clock[0])
    agent.tick(clock[0] + 301)
    assert (len(agent.state.conntrack), len(agent.state.nat), len(agent.state.arp)) == (0, 0, 1)
    assert len(agent.state._due) == 1  # the ARP entry's deadline only
    assert sum(t.visits for t in tables) == 0


def test_a_refreshed_entry_outlives_its_first_deadline() -> None:
    agent = Agent(AgentConfig(new_id()), MemoryDatapath(clock=0.0))
    key = ("ct", "zone", 17, 1, 5353, 2, 53)
    agent.apply_state([ConntrackAdded(key, 10.0)], 0.0)
    agent.apply_state([ConntrackAdded(key, 20.0)], 5.0)  # pushed again by a peer: later
    agent.tick(15.0)
    assert key in agent.state.conntrack
    agent.tick(20.0)
    assert key not in agent.state.conntrack
