"""Host liveness from heartbeats, and backpressure: a slow agent never delays the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from netloom.store.memory import MemoryStore
from netloom.topology import TopologyClient
from netloom.topology.protocol import Batch, Hello, Pong, Snap, Sub, Welcome
from waiting import eventually

from .conftest import RawAgent, put, run, serving

pytestmark = pytest.mark.unit

TIMEOUT = 0.5
STEADY_TIMEOUT = 2.0  # where heartbeats must win: room for a loaded 2-core machine


def alive(store: MemoryStore, host: str) -> bool:
    item = store.get("host", host)
    assert item is not None
    return bool(item.data["alive"])


def test_heartbeats_keep_host_up_and_silence_marks_it_down() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "host", "h1", name="compute-1", alive=False)
        async with serving(store, host_timeout_s=STEADY_TIMEOUT) as (_, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            await eventually(lambda: alive(store, "h1"), what="host up on hello")
            await asyncio.sleep(2 * STEADY_TIMEOUT)  # heartbeats every STEADY_TIMEOUT/3 keep it up
            assert alive(store, "h1")
            stopped = time.monotonic()
            await client.stop()
            await eventually(
                lambda: not alive(store, "h1"),
                timeout=3 * STEADY_TIMEOUT,
                what="host down after the timeout",
            )
            # not before the timeout: silence counts from the last heartbeat the server heard,
            # which went out at most one heartbeat interval (timeout / 3) before the stop
            assert time.monotonic() - stopped >= STEADY_TIMEOUT * 2 / 3
            again = TopologyClient("h1", ("127.0.0.1", port))
            await again.start()
            await eventually(lambda: alive(store, "h1"), what="host up again")
            await again.stop()
        # the host doc was updated by compare-and-set: other fields untouched
        item = store.get("host", "h1")
        assert item is not None and item.data["name"] == "compute-1"

    run(scenario())


def test_open_connection_without_heartbeats_is_down() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        events: list[tuple[str, bool]] = []
        async with serving(
            store, host_timeout_s=TIMEOUT, set_host_alive=lambda h, a: events.append((h, a))
        ) as (server, port):
            raw = await RawAgent.connect(port)
            raw.send(Hello("h7"))
            assert isinstance(await raw.recv(), Welcome)
            await eventually(lambda: events == [("h7", True)])
            start = time.monotonic()
            await eventually(
                lambda: events == [("h7", True), ("h7", False)],
                timeout=6 * TIMEOUT,
                what="down without pings",
            )
            assert time.monotonic() - start >= TIMEOUT * 0.8
            assert not server.host_alive("h7")
            raw.close()

    run(scenario())


def test_slow_agent_is_dropped_without_delaying_the_others() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "router", "r1", blob="")
        async with serving(store, max_buffer=256 * 1024) as (server, port):
            fast = TopologyClient("fast", ("127.0.0.1", port))
            await fast.start()
            await fast.get("router", "r1")
            slow = await RawAgent.connect(port, rcvbuf=4096)
            slow.send(Hello("slow"))
            slow.send(Sub(1, "router", "r1"))
            msgs = await slow.recv_until(lambda m: isinstance(m, Snap))
            assert isinstance(msgs[0], Welcome) and isinstance(msgs[1], Pong)
            # the slow agent stops reading; 50 changes of 64 KiB each follow
            got: list[int] = []
            fast.add_listener(lambda k, i, d, r: got.append(r))
            blob = "x" * 65536
            for n in range(50):
                put(store, "router", "r1", blob=blob, n=n)
            await eventually(lambda: len(got) == 50, timeout=5, what="fast agent served")
            await eventually(lambda: server.stats.dropped_slow == 1, what="slow agent dropped")
            assert fast.connected and fast.connects == 1
            # the dropped agent sees a clean end of stream after what was buffered
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                while True:
                    assert isinstance(await slow.recv(), Batch)
            slow.close()
            await fast.stop()

    run(scenario())


def test_host_alive_in_store_but_silent_is_marked_down_after_start() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "host", "h1", alive=True)  # left over from a previous cluster process
        put(store, "host", "h2", alive=False)
        async with serving(store, host_timeout_s=TIMEOUT) as (server, _):
            assert server.host_alive("h1")  # given one timeout to reconnect
            await eventually(lambda: not alive(store, "h1"), timeout=6 * TIMEOUT)
            assert not alive(store, "h2")

    run(scenario())


def test_liveness_through_the_object_service() -> None:
    """The cluster passes ObjectService.set_host_alive (the one writer of host.alive)."""
    from netloom.api.service import ObjectService

    async def scenario() -> None:
        store = MemoryStore()
        service = ObjectService(store)
        host, _ = service.create("host", {"name": "compute-9"})
        async with serving(
            store, host_timeout_s=TIMEOUT, set_host_alive=service.set_host_alive
        ) as (_, port):
            client = TopologyClient(host["id"], ("127.0.0.1", port))
            await client.start()
            await eventually(lambda: alive(store, host["id"]), what="up via the service")
            await client.stop()
            await eventually(lambda: not alive(store, host["id"]), timeout=6 * TIMEOUT)

    run(scenario())
