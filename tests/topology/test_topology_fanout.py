"""Topology service + client: snapshots, deltas, interest filtering, ordering, resume."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netloom.errors import InvalidInput
from netloom.store.base import Delete, Put
from netloom.store.memory import MemoryStore
from netloom.topology import TopologyClient
from waiting import eventually

from .conftest import CountingStore, put, run, serving

pytestmark = pytest.mark.unit

Seen = list[tuple[str, str, dict[str, Any] | None, int]]


def recorder(client: TopologyClient) -> Seen:
    seen: Seen = []
    client.add_listener(lambda k, i, d, r: seen.append((k, i, d, r)))
    return seen


def test_snapshot_then_deltas() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "router", "r1", name="edge")
        async with serving(store) as (_, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            seen = recorder(client)
            assert await client.get("router", "r1") == {"id": "r1", "name": "edge"}
            assert await client.get("router", "missing") is None
            assert seen == [("router", "r1", {"id": "r1", "name": "edge"}, 1)]  # snapshot
            seen.clear()
            rev = put(store, "router", "r1", name="core")
            await eventually(lambda: len(seen) == 1)
            assert seen[0] == ("router", "r1", {"id": "r1", "name": "core"}, rev)
            assert client.cached("router", "r1") == {"id": "r1", "name": "core"}
            rev2 = put(store, "router", "missing", name="late")  # created after subscribing
            rev3 = store.commit([Delete("router", "r1")])
            await eventually(lambda: len(seen) == 3)
            assert seen[1] == ("router", "missing", {"id": "missing", "name": "late"}, rev2)
            assert seen[2] == ("router", "r1", None, rev3)
            assert client.cached("router", "r1") is None
            assert client.revision == rev3
            await client.stop()

    run(scenario())


def test_only_subscribed_objects_are_delivered() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        for i in range(100):
            put(store, "port", f"p{i}", host_id=f"h{i % 10}", n=0)
        async with serving(store) as (_, port):
            client = TopologyClient("h3", ("127.0.0.1", port))
            await client.start()
            mine = await client.watch_field("port", "host_id", "h3")
            assert sorted(mine) == sorted(f"p{i}" for i in range(3, 100, 10))
            assert await client.get("port", "p0") is not None
            seen = recorder(client)
            for i in range(100):
                put(store, "port", f"p{i}", host_id=f"h{i % 10}", n=1)
            # a sentinel on a subscribed object: once it arrives, everything before it has
            last = put(store, "port", "p0", host_id="h0", n=2)
            await eventually(lambda: bool(seen) and seen[-1][3] == last)
            assert len(seen) == 10 + 1 + 1  # 10 ports of h3, p0 twice
            assert {i for _, i, _, _ in seen} == {f"p{i}" for i in range(3, 100, 10)} | {"p0"}
            assert client.cached_count() == 11  # memory follows interest, not the cloud
            await client.stop()

    run(scenario())


def test_filter_leaves_and_reenters_view() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "port", "p1", host_id="h1")
        async with serving(store) as (server, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            assert list(await client.watch_field("port", "host_id", "h1")) == ["p1"]
            seen = recorder(client)
            moved = put(store, "port", "p1", host_id="h2")  # rebound elsewhere: gone for h1
            await eventually(lambda: len(seen) == 1)
            assert seen[0] == ("port", "p1", None, moved)
            put(store, "port", "p1", host_id="h2", mtu=9000)  # not ours: not sent
            back = put(store, "port", "p1", host_id="h1")
            await eventually(lambda: len(seen) == 2)
            assert seen[1] == ("port", "p1", {"id": "p1", "host_id": "h1"}, back)
            client.unwatch_field("port", "host_id", "h1")
            assert client.cached("port", "p1") is None
            await eventually(lambda: not server._subs.by_key, what="server forgets the view")
            put(store, "port", "p1", host_id="h1", mtu=1)
            assert await client.get("router", "sentinel") is None  # round trip
            assert len(seen) == 2
            await client.stop()

    run(scenario())


def test_unsubscribe_stops_delivery() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "route", "a", router_id="r1")
        put(store, "router", "r1")
        async with serving(store) as (_, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            await client.get("route", "a")
            await client.watch_field("route", "router_id", "r1")
            client.unsubscribe("route", "a")
            assert client.cached("route", "a") is not None  # still matched by the filter
            client.unwatch_field("route", "router_id", "r1")
            assert client.cached("route", "a") is None
            await client.get("router", "r1")
            seen = recorder(client)
            put(store, "route", "a", router_id="r1", x=1)
            last = put(store, "router", "r1", x=1)
            await eventually(lambda: bool(seen) and seen[-1][3] == last)
            assert [(k, i) for k, i, _, _ in seen] == [("router", "r1")]
            await client.stop()

    run(scenario())


def test_changes_arrive_in_revision_order_each_once() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        async with serving(store) as (_, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            for i in range(5):
                await client.get("router", f"r{i}")
            seen = recorder(client)
            revs = []
            for n in range(200):
                if n % 7 == 0:  # a multi-object commit: one revision, delivered together
                    revs.append(
                        store.commit([Put("router", "r0", {"n": n}), Put("router", "r1", {"n": n})])
                    )
                else:
                    revs.append(put(store, "router", f"r{n % 5}", n=n))
            await eventually(lambda: len(seen) == 200 + 29)
            got = [r for _, _, _, r in seen]
            assert got == sorted(got)
            assert sorted(set(got)) == revs
            assert client.cached("router", "r4") == {"id": "r4", "n": 199}
            await client.stop()

    run(scenario())


def test_resume_after_connection_drop_sends_only_missed_changes() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        for i in range(50):
            put(store, "port", f"p{i}", host_id="h1")
        async with serving(store) as (server, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            await client.watch_field("port", "host_id", "h1")
            seen = recorder(client)
            for conn in list(server._conns):
                assert conn.proto.transport is not None
                conn.proto.transport.abort()
            await eventually(lambda: not client.connected, what="drop noticed")
            put(store, "port", "p7", host_id="h1", mtu=1400)
            put(store, "port", "p8", host_id="h2")  # leaves our view while we are away
            put(store, "port", "x", host_id="h9")  # never ours
            await eventually(lambda: client.connected and len(seen) == 2, what="resume")
            assert client.resume_modes == ["fresh", "history"]
            assert [(i, d is None) for _, i, d, _ in seen] == [("p7", False), ("p8", True)]
            assert client.applied == 2  # no full resend
            assert client.cached_count() == 49
            await client.stop()

    run(scenario())


def test_resume_after_server_restart_diffs_instead_of_resending() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        for i in range(50):
            put(store, "port", f"p{i}", host_id="h1")
        async with serving(store) as (_, port):
            client = TopologyClient("h1", ("127.0.0.1", port), backoff_max_s=0.1)
            await client.start()
            await client.watch_field("port", "host_id", "h1")
            assert await client.get("router", "r1") is None
            seen = recorder(client)
        await eventually(lambda: not client.connected)
        put(store, "port", "p3", host_id="h1", mtu=1400)
        store.commit([Delete("port", "p4")])
        put(store, "router", "r1", name="new")
        put(store, "port", "p9", host_id="h1", mtu=1400)
        put(store, "port", "p9", host_id="h1", mtu=1300)  # two changes: latest one sent
        # asked for while disconnected: sent once connected again
        pending = asyncio.ensure_future(client.get("router", "r2"))
        twin = asyncio.ensure_future(client.get("router", "r2"))  # one request for both
        put(store, "router", "r2", name="two")
        async with serving(store) as (_, port2):
            client.address = ("127.0.0.1", port2)
            assert await pending == await twin == {"id": "r2", "name": "two"}
            seen.remove(("router", "r2", {"id": "r2", "name": "two"}, store.revision()))
            await eventually(lambda: client.connected and len(seen) == 4, what="resume")
            assert client.resume_modes == ["fresh", "diff"]
            assert sorted((i, d is None) for _, i, d, _ in seen) == [
                ("p3", False),
                ("p4", True),
                ("p9", False),
                ("r1", False),
            ]
            assert client.cached("port", "p9") == {"id": "p9", "host_id": "h1", "mtu": 1300}
            assert client.revision == store.revision()
            # and it goes on streaming from the new server
            rev = put(store, "router", "r1", name="newer")
            await eventually(lambda: seen[-1][3] == rev)
            await client.stop()

    run(scenario())


def test_resume_beyond_history_falls_back_to_diff() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        for i in range(5):
            put(store, "router", f"r{i}")
        async with serving(store, history=3) as (server, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            for i in range(5):
                await client.get("router", f"r{i}")
            seen = recorder(client)
            for conn in list(server._conns):
                assert conn.proto.transport is not None
                conn.proto.transport.abort()
            await eventually(lambda: not client.connected)
            for n in range(10):
                put(store, "router", "r1", n=n)
            await eventually(lambda: client.connected and len(seen) == 1)
            assert client.resume_modes == ["fresh", "diff"]
            assert seen[0][2] == {"id": "r1", "n": 9}
            await client.stop()

    run(scenario())


def test_one_store_watch_for_many_clients() -> None:
    async def scenario() -> None:
        store = CountingStore()
        put(store, "router", "r1", n=0)
        async with serving(store) as (server, port):
            clients = [TopologyClient(f"h{i}", ("127.0.0.1", port)) for i in range(50)]
            for c in clients:
                await c.start()
            for c in clients:
                assert await c.get("router", "r1") == {"id": "r1", "n": 0}
            put(store, "router", "r1", n=1)
            await eventually(
                lambda: all(c.cached("router", "r1") == {"id": "r1", "n": 1} for c in clients)
            )
            assert store.watches == 1
            assert server.stats.store_watches == 1
            assert server.stats.connections == 50
            for c in clients:
                await c.stop()

    run(scenario())


def test_bad_subscriptions_are_refused_and_change_nothing() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        async with serving(store) as (server, port):
            client = TopologyClient("h1", ("127.0.0.1", port))
            await client.start()
            with pytest.raises(InvalidInput, match="unknown kind"):
                await client.get("nosuchkind", "x")
            with pytest.raises(InvalidInput) as err:
                await client.watch_field("port", "mtu", 1500)
            assert err.value.field == "field"
            assert client.connected and client.cached_count() == 0
            assert not server._subs.by_key and not server._subs.by_filter
            assert await client.get("router", "r1") is None  # the connection still works
            await client.stop()

    run(scenario())
    with pytest.raises(InvalidInput):
        TopologyClient("", ("127.0.0.1", 1))
