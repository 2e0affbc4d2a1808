"""Concurrent writers: integrity holds whatever the interleaving.

The store is slowed on reads so that the read-decide-commit windows of two threads overlap
(otherwise the GIL would mostly serialise them); it counts the commits that lost a race, to
show the races really happened and were resolved by the compare-and-set conditions."""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.errors import NetloomError, VersionConflict
from netloom.store.base import Change, ChangeCallback, Item, Op, Store, Watch

from .conftest import assert_integrity, mac

pytestmark = pytest.mark.unit


class SlowStore:
    """A Store that delegates to ``inner`` with random latency on reads and commits."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lost = 0
        self._random = random.Random()

    def get(self, kind: str, id: str) -> Item | None:
        time.sleep(self._random.uniform(0, 0.0008))
        return self.inner.get(kind, id)

    def list(self, kind: str) -> list[Item]:
        return self.inner.list(kind)

    def revision(self) -> int:
        return self.inner.revision()

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        return self.inner.changes(since, limit)

    def watch(self, since: int, callback: ChangeCallback) -> Watch:
        return self.inner.watch(since, callback)

    def close(self) -> None:
        self.inner.close()

    def commit(self, ops: Sequence[Op]) -> int:
        time.sleep(self._random.uniform(0, 0.002))  # a network round trip to the NSDB
        try:
            return self.inner.commit(ops)
        except NetloomError:
            self.lost += 1
            raise


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment; each result is its return value or its error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except NetloomError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def succeeded(results: list[Any]) -> int:
    return sum(not isinstance(r, NetloomError) for r in results)


@pytest.fixture
def slow(store: Store) -> SlowStore:
    return SlowStore(store)


def test_create_referrer_vs_delete_target_never_dangles(slow: SlowStore) -> None:
    svc = ObjectService(slow)
    for i in range(40):
        bridge, _ = svc.create("bridge", {"name": f"b{i}"})
        results = race(
            partial(
                svc.create, "port", {"device_id": bridge["id"], "type": "bridge", "mac": mac(i + 1)}
            ),
            partial(svc.delete, "bridge", bridge["id"]),
        )
        # exactly one side wins: a port on a live bridge, or a deleted bridge and no port
        assert succeeded(results) == 1, results
        if isinstance(results[0], NetloomError):
            assert svc.list("port", {"device_id": bridge["id"]}) == []
        else:
            assert svc.get("bridge", bridge["id"])[1] == 1
    assert_integrity(slow.inner)
    assert slow.lost > 0, "the race never happened; the test proves nothing"


def test_create_referrer_vs_cascade_delete(slow: SlowStore) -> None:
    svc = ObjectService(slow)
    for i in range(25):
        chain, _ = svc.create("chain", {"name": f"c{i}"})
        svc.create("rule", {"chain_id": chain["id"], "action": "accept"})
        race(
            partial(svc.create, "rule", {"chain_id": chain["id"], "action": "drop"}),
            partial(svc.delete, "chain", chain["id"], cascade=True),
        )
        assert_integrity(slow.inner)
    assert slow.lost > 0


def test_concurrent_jumps_cannot_close_a_cycle(slow: SlowStore) -> None:
    svc = ObjectService(slow)
    for i in range(15):
        a, _ = svc.create("chain", {"name": f"a{i}"})
        b, _ = svc.create("chain", {"name": f"b{i}"})
        results = race(
            partial(
                svc.create,
                "rule",
                {"chain_id": a["id"], "action": "jump", "jump_chain_id": b["id"]},
            ),
            partial(
                svc.create,
                "rule",
                {"chain_id": b["id"], "action": "jump", "jump_chain_id": a["id"]},
            ),
        )
        assert succeeded(results) == 1, results
    assert_integrity(slow.inner)


def test_concurrent_duplicate_mac_and_links(slow: SlowStore) -> None:
    svc = ObjectService(slow)
    router, _ = svc.create("router", {})
    for i in range(10):
        bridge, _ = svc.create("bridge", {})
        same_mac = {"device_id": bridge["id"], "type": "bridge", "mac": mac(0x500 + i)}
        results = race(*(partial(svc.create, "port", same_mac) for _ in range(3)))
        assert succeeded(results) == 1, results
        rport, _ = svc.create(
            "port",
            {
                "device_id": router["id"],
                "type": "router",
                "mac": mac(0x600 + i),
                "address": f"10.{i}.0.1/24",
            },
        )
        b1, _ = svc.create("port", {"device_id": bridge["id"], "type": "bridge"})
        b2, _ = svc.create("port", {"device_id": bridge["id"], "type": "bridge"})
        results = race(
            partial(svc.link_ports, b1["id"], rport["id"]),
            partial(svc.link_ports, b2["id"], rport["id"]),
        )
        assert succeeded(results) == 1, results
    assert_integrity(slow.inner)


def test_concurrent_creates_get_unique_tunnel_keys(slow: SlowStore) -> None:
    svc = ObjectService(slow)
    bridge, _ = svc.create("bridge", {})
    made: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            port, _ = svc.create("port", {"device_id": bridge["id"], "type": "bridge"})
            with lock:
                made.append(port["tunnel_key"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(made) == 100 and len(set(made)) == 100
    assert slow.lost > 0
    assert_integrity(slow.inner)


def test_stale_version_is_a_conflict(service: ObjectService, client: Any) -> None:
    tenant, version = service.create("tenant", {"name": "a"})
    _, v2 = service.update("tenant", tenant["id"], {"name": "b"}, expect_version=version)
    assert v2 == version + 1
    with pytest.raises(VersionConflict):
        service.update("tenant", tenant["id"], {"name": "c"}, expect_version=version)
    with pytest.raises(VersionConflict):
        service.delete("tenant", tenant["id"], expect_version=version)
    # over HTTP: a stale ETag is a 412, the current one succeeds
    stale = client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "d"}, headers={"If-Match": f'"{version}"'}
    )
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed"
    fresh = client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "d"}, headers={"If-Match": f'"{v2}"'}
    )
    assert fresh.status_code == 200 and fresh.headers["etag"] == f'"{v2 + 1}"'
    gone = client.delete(f"/api/v1/tenants/{tenant['id']}", headers={"If-Match": f'"{v2 + 1}"'})
    assert gone.status_code == 204
    assert service.list("tenant") == []
