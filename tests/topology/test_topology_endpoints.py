"""Several topology servers on one store (several cluster processes): writes through one reach
agents of another, and an agent whose server dies moves to the next one and resumes from its
revision, without a snapshot and without an unchanged object sent again."""

from __future__ import annotations

import pytest

from netloom.errors import InvalidInput
from netloom.store.memory import MemoryStore
from netloom.topology import TopologyClient
from netloom.topology.protocol import Hello, Pong, Welcome
from netloom.topology.server import TopologyServer
from waiting import eventually

from .conftest import RawAgent, put, run

pytestmark = pytest.mark.unit


async def _servers(store: MemoryStore, count: int) -> list[tuple[TopologyServer, int]]:
    out = []
    for _ in range(count):
        server = TopologyServer(store)
        out.append((server, await server.start("127.0.0.1", 0)))
    return out


def test_agent_moves_to_the_next_server_and_resumes_from_its_revision() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        for i in range(20):
            put(store, "port", f"p{i}", host_id="h1", n=0)
        servers = await _servers(store, 3)
        try:
            endpoints = [("127.0.0.1", port) for _, port in servers]
            client = TopologyClient("h1", endpoints)
            await client.start()
            await client.wait_connected(10)
            assert len(await client.watch_field("port", "host_id", "h1")) == 20
            first = client.address
            # a write the agent sees, then its server goes
            rev = put(store, "port", "p1", host_id="h1", n=1)
            await eventually(lambda: client.revision == rev, what="change applied")
            applied = client.applied
            dead = next(s for s, p in servers if ("127.0.0.1", p) == first)
            await dead.stop()
            await eventually(lambda: client.connects == 2 and client.connected, what="moved")
            assert client.address != first
            # resumed from its revision: no snapshot, nothing it holds sent again
            assert client.resume_modes == ["fresh", "history"]
            assert client.applied == applied
            assert client.cached_count() == 20
            assert len(client.timings.reconnect_waits) == 1
            # and it follows the store through its new server
            rev = put(store, "port", "p2", host_id="h1", n=1)
            await eventually(lambda: client.revision == rev, what="change after the move")
            assert client.applied == applied + 1
            await client.stop()
        finally:
            for server, _ in servers:
                await server.stop()

    run(scenario())


def test_server_started_after_the_agent_resumes_by_versions() -> None:
    """A server whose history starts after the agent's revision compares versions: only what
    changed is sent."""

    async def scenario() -> None:
        store = MemoryStore()
        for i in range(20):
            put(store, "port", f"p{i}", host_id="h1", n=0)
        ((one, port1),) = await _servers(store, 1)
        client = TopologyClient("h1", [("127.0.0.1", port1)], backoff_max_s=0.1)
        await client.start()
        assert len(await client.watch_field("port", "host_id", "h1")) == 20
        await one.stop()
        put(store, "port", "p3", host_id="h1", n=1)
        ((two, port2),) = await _servers(store, 1)
        try:
            client.endpoints = (("127.0.0.1", port2),)
            client.address = ("127.0.0.1", port2)
            await eventually(lambda: client.connected and client.connects == 2, what="moved")
            assert client.resume_modes == ["fresh", "diff"]
            await eventually(lambda: client.applied == 1, what="the one change")
            assert client.cached("port", "p3") == {"id": "p3", "host_id": "h1", "n": 1}
            await client.stop()
        finally:
            await two.stop()

    run(scenario())


def test_a_hello_ahead_of_the_view_waits_for_the_view() -> None:
    """An agent coming from a server that was ahead is answered once this view has caught up,
    never with older versions than it holds."""

    async def scenario() -> None:
        store = MemoryStore()
        put(store, "router", "r1", name="a")
        ((server, port),) = await _servers(store, 1)
        try:
            ahead = store.revision() + 1
            agent = await RawAgent.connect(port)
            agent.send(Hello("h1", ahead, [("router", "r1")], [], [("router", "r1", 2)]))
            rev = put(store, "router", "r1", name="b")
            assert rev == ahead
            welcome = await agent.recv()
            assert isinstance(welcome, Welcome) and welcome.rev >= ahead
            assert welcome.mode == "history"
            assert isinstance(await agent.recv(), Pong)  # nothing resent: it holds version 2
            agent.writer.close()
        finally:
            await server.stop()

    run(scenario())


def test_writes_through_one_server_reach_agents_of_another() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        servers = await _servers(store, 2)
        try:
            a = TopologyClient("h1", [("127.0.0.1", servers[0][1])])
            b = TopologyClient("h2", [("127.0.0.1", servers[1][1])])
            for c in (a, b):
                await c.start()
                assert await c.get("router", "r1") is None
            put(store, "router", "r1", name="edge")
            for c in (a, b):
                await eventually(lambda c=c: c.cached("router", "r1") is not None)  # type: ignore[misc]
                await c.stop()
        finally:
            for server, _ in servers:
                await server.stop()

    run(scenario())


def test_an_empty_endpoint_list_is_refused() -> None:
    with pytest.raises(InvalidInput):
        TopologyClient("h1", [])
