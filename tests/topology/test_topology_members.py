"""Host liveness with several cluster processes on one store: a process that never hears a host
does not mark it down while another live process holds its connection."""

from __future__ import annotations

import asyncio

import pytest

from netloom.store.base import Change
from netloom.store.memory import MemoryStore
from netloom.topology import TopologyClient
from netloom.topology.members import MEMBER_KIND
from netloom.topology.server import TopologyServer
from waiting import eventually

from .conftest import put, run

pytestmark = pytest.mark.unit

TIMEOUT = 1.0


def alive(store: MemoryStore, host: str) -> bool:
    item = store.get("host", host)
    assert item is not None
    return bool(item.data["alive"])


async def _member(store: MemoryStore, name: str) -> tuple[TopologyServer, int]:
    server = TopologyServer(store, host_timeout_s=TIMEOUT, member_id=name)
    return server, await server.start("127.0.0.1", 0)


def test_a_host_held_by_another_process_stays_up() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "host", "h1", name="compute-1", alive=False)
        downs: list[int] = []

        def record(changes: list[Change]) -> None:
            downs.extend(
                c.revision
                for c in changes
                if c.kind == "host" and c.data is not None and c.data["alive"] is False
            )

        watch = store.watch(store.revision(), record)
        one, port1 = await _member(store, "m1")
        two, port2 = await _member(store, "m2")
        client = TopologyClient("h1", [("127.0.0.1", port1), ("127.0.0.1", port2)])
        client.address = ("127.0.0.1", port1)  # starts on m1 whatever its hash says
        client.endpoints = (client.address, ("127.0.0.1", port2))
        await client.start()
        await eventually(lambda: alive(store, "h1"), what="up on hello")
        # m2 never hears h1 and a third process starts meanwhile: neither marks it down
        three, _ = await _member(store, "m3")

        def held() -> object:
            item = store.get(MEMBER_KIND, "m1")
            return item is not None and item.data["hosts"] == ["h1"]

        await eventually(held, what="m1's member document names h1")
        await asyncio.sleep(3 * TIMEOUT)
        assert alive(store, "h1") and not downs
        assert two.host_alive("h1") and three.host_alive("h1")
        # m1 goes: the agent moves to m2 and the host never goes down
        await one.stop()
        assert store.get(MEMBER_KIND, "m1") is None  # a process stopping leaves
        await eventually(lambda: client.connects == 2 and client.connected, what="moved")
        await asyncio.sleep(2 * TIMEOUT)
        assert alive(store, "h1") and not downs
        # the agent stops: once nobody holds it, the host is down (after the timeout)
        await client.stop()
        await eventually(lambda: not alive(store, "h1"), timeout=6 * TIMEOUT, what="down")
        # whichever process marked it down, the other follows through its watch
        await eventually(lambda: not three.host_alive("h1") and not two.host_alive("h1"))
        for server in (two, three):
            await server.stop()
        watch.cancel()

    run(scenario())


def test_a_process_marked_down_while_holding_the_host_marks_it_up_again() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "host", "h1", name="compute-1", alive=False)
        one, port1 = await _member(store, "m1")
        client = TopologyClient("h1", ("127.0.0.1", port1))
        await client.start()
        await eventually(lambda: alive(store, "h1"), what="up on hello")
        put(store, "host", "h1", name="compute-1", alive=False)  # decided elsewhere, wrongly
        await eventually(lambda: alive(store, "h1"), what="up again")
        await client.stop()
        await one.stop()

    run(scenario())
