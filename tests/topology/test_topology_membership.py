"""List-membership filters: ``(port, port_group_ids, G)`` follows the ports in group G."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.store.base import Delete
from netloom.store.memory import MemoryStore
from netloom.topology import TopologyClient
from netloom.topology.protocol import matches, value_keys
from waiting import eventually

from .conftest import put, run, serving

pytestmark = pytest.mark.unit

Seen = list[tuple[str, str, dict[str, Any] | None, int]]


def recorder(client: TopologyClient) -> Seen:
    seen: Seen = []
    client.add_listener(lambda k, i, d, r: seen.append((k, i, d, r)))
    return seen


def test_matches_is_membership_for_list_fields() -> None:
    doc = {"port_group_ids": ["g1", "g2"], "n": 1, "flag": True}
    assert matches(doc, "port_group_ids", "g2")
    assert not matches(doc, "port_group_ids", "g3")
    assert not matches({"port_group_ids": []}, "port_group_ids", "g1")
    assert not matches({"port_group_ids": [True]}, "port_group_ids", 1)  # bool is not int
    assert matches(doc, "n", 1) and not matches(doc, "flag", 1)
    assert value_keys(doc, "port_group_ids") == [(False, "g1"), (False, "g2")]
    assert value_keys(doc, "missing") == []
    assert value_keys({"x": {"a": 1}}, "x") == []  # unhashable: in no index bucket


def test_group_snapshot_entering_and_leaving_only_to_subscribers() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        put(store, "port", "p1", port_group_ids=["g1"])
        put(store, "port", "p2", port_group_ids=["g2", "g1"])
        put(store, "port", "p3", port_group_ids=["g2"])
        put(store, "port", "p4")
        async with serving(store) as (server, port):
            c1 = TopologyClient("h1", ("127.0.0.1", port))
            c2 = TopologyClient("h2", ("127.0.0.1", port))
            await c1.start()
            await c2.start()
            assert sorted(await c1.watch_field("port", "port_group_ids", "g1")) == ["p1", "p2"]
            assert sorted(await c2.watch_field("port", "port_group_ids", "g2")) == ["p2", "p3"]
            s1, s2 = recorder(c1), recorder(c2)
            # p3 enters g1 (and stays in g2): both see the new version
            r_enter = put(store, "port", "p3", port_group_ids=["g2", "g1"])
            await eventually(lambda: len(s1) == 1 and len(s2) == 1)
            assert s1[0] == ("port", "p3", {"id": "p3", "port_group_ids": ["g2", "g1"]}, r_enter)
            assert s2[0] == s1[0]
            # p1 leaves g1 for g2: a removal for h1, a new member for h2
            r_move = put(store, "port", "p1", port_group_ids=["g2"])
            await eventually(lambda: len(s1) == 2 and len(s2) == 2)
            assert s1[1] == ("port", "p1", None, r_move)
            assert s2[1] == ("port", "p1", {"id": "p1", "port_group_ids": ["g2"]}, r_move)
            # p4 joins g3, in nobody's view: nothing is sent; p2 deleted: both hear it
            put(store, "port", "p4", port_group_ids=["g3"])
            r_del = store.commit([Delete("port", "p2")])
            await eventually(lambda: len(s1) == 3 and len(s2) == 3)
            assert s1[2] == s2[2] == ("port", "p2", None, r_del)
            assert c1.cached("port", "p4") is None and c2.cached("port", "p4") is None
            assert sorted(server._subs.index[("port", "port_group_ids")]) == [
                (False, "g1"),
                (False, "g2"),
                (False, "g3"),
            ]
            assert server._subs.index[("port", "port_group_ids")][(False, "g1")] == {"p3"}
            # unwatching drops the members from the client and the server's view
            c1.unwatch_field("port", "port_group_ids", "g1")
            assert c1.cached("port", "p3") is None
            assert await c1.get("router", "sentinel") is None  # round trip: unsub is applied
            last = put(store, "port", "p3", port_group_ids=["g1"])  # back to g1 only
            await eventually(lambda: len(s2) == 4)
            assert s2[3] == ("port", "p3", None, last)
            assert await c1.get("router", "sentinel") is None  # anything for h1 came before
            assert len(s1) == 3
            await c1.stop()
            await c2.stop()

    run(scenario())
