"""Concurrent writers: integrity holds whatever the interleaving.

Each race runs under every schedule that matters, forced by a store wrapper rather than left to
thread timing: serially in each order, and overlapped -- every writer has read all it decides on
before any of them commits, then their first commits go in a chosen order. An overlapped writer
that commits second read a state that is gone, so its compare-and-set conditions must reject
that commit (counted) and the service re-plans it on fresh data."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import permutations
from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.errors import NetloomError, VersionConflict
from netloom.store.base import Change, ChangeCallback, Item, Op, Store, Watch

from .conftest import assert_integrity, mac

pytestmark = pytest.mark.unit

STUCK_S = 10.0  # a schedule that cannot proceed fails the test instead of hanging it


@dataclass(frozen=True)
class Schedule:
    """``order``: the racers' indices, first to last; ``overlap``: whether they all read
    before the first commit (else each starts when the previous one has finished)."""

    order: tuple[int, ...]
    overlap: bool

    def __str__(self) -> str:
        return f"{'overlap' if self.overlap else 'serial'}{list(self.order)}"


def schedules(n: int) -> list[Schedule]:
    """Every order of ``n`` racers, serial and overlapped."""
    return [Schedule(p, overlap) for overlap in (False, True) for p in permutations(range(n))]


class ScheduledStore:
    """A Store that delegates to ``inner`` and holds the racers of :func:`race` to a
    :class:`Schedule`. Only a racer's first commit is held: its re-plans run freely."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lost = 0  # commits whose conditions failed
        self._cond = threading.Condition()
        self._who = threading.local()
        self._schedule = Schedule((), overlap=False)
        self._ready: set[int] = set()  # reached its first commit, or finished
        self._passed: set[int] = set()  # made its first commit, or finished
        self._finished: set[int] = set()

    # -- the schedule ----------------------------------------------------------------------------

    def reset(self, schedule: Schedule) -> None:
        with self._cond:
            self._schedule = schedule
            self._ready, self._passed, self._finished = set(), set(), set()

    def _before(self, i: int) -> tuple[int, ...]:
        order = self._schedule.order
        return order[: order.index(i)]

    def _wait(self, pred: Callable[[], bool], what: str) -> None:
        if not self._cond.wait_for(pred, STUCK_S):
            raise AssertionError(f"schedule {self._schedule} stuck: {what}")

    def enter(self, i: int) -> None:
        """Racer ``i`` starts (serial: once the racers before it have finished)."""
        self._who.index = i
        if self._schedule.overlap:
            return
        with self._cond:
            self._wait(lambda: set(self._before(i)) <= self._finished, f"{i} to start")

    def leave(self, i: int) -> None:
        self._who.index = None
        with self._cond:
            self._ready.add(i)
            self._passed.add(i)
            self._finished.add(i)
            self._cond.notify_all()

    def _first_commit(self) -> int | None:
        i: int | None = getattr(self._who, "index", None)
        if i is None or i in self._passed or not self._schedule.overlap:
            return None
        return i

    # -- the Store protocol ----------------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        i = self._first_commit()
        if i is not None:
            with self._cond:
                self._ready.add(i)
                self._cond.notify_all()
                racers = set(self._schedule.order)
                self._wait(lambda: self._ready >= racers, "every racer to have read")
                self._wait(lambda: set(self._before(i)) <= self._passed, f"{i}'s turn")
        try:
            return self._commit(ops)
        finally:
            if i is not None:
                with self._cond:
                    self._passed.add(i)
                    self._cond.notify_all()

    def _commit(self, ops: Sequence[Op]) -> int:
        try:
            return self.inner.commit(ops)
        except NetloomError:
            with self._cond:
                self.lost += 1
            raise

    def get(self, kind: str, id: str) -> Item | None:
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


def race(store: ScheduledStore, schedule: Schedule, *calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads under ``schedule``; each result is its return value or its
    NetloomError. Returns once all have finished; any other error fails the test."""
    store.reset(schedule)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            store.enter(i)
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc
        finally:
            store.leave(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in results:
        if isinstance(r, Exception) and not isinstance(r, NetloomError):
            raise r
    return results


def winners(results: list[Any]) -> list[int]:
    return [i for i, r in enumerate(results) if not isinstance(r, NetloomError)]


def check_conflicts(
    store: ScheduledStore, lost_before: int, schedule: Schedule, *, exact: bool = True
) -> None:
    """Serial writers never conflict; overlapped, every writer after the first read a state
    its turn found gone, so its first commit was refused (``exact``: and nothing more, when
    the re-plans cannot race each other)."""
    lost = store.lost - lost_before
    later = len(schedule.order) - 1
    if not schedule.overlap:
        assert lost == 0, f"{schedule}: {lost} refused commits"
    elif exact:
        assert lost == later, f"{schedule}: {lost} refused commits"
    else:
        assert lost >= later, f"{schedule}: {lost} refused commits"


@pytest.fixture
def sched(store: Store) -> ScheduledStore:
    return ScheduledStore(store)


def test_create_referrer_vs_delete_target_never_dangles(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        bridge, _ = svc.create("bridge", {"name": f"b{i}"})
        lost = sched.lost
        port = {"device_id": bridge["id"], "type": "bridge", "mac": mac(i + 1)}
        results = race(
            sched,
            schedule,
            partial(svc.create, "port", port),
            partial(svc.delete, "bridge", bridge["id"]),
        )
        # the first one wins: a port on a live bridge, or a deleted bridge and no port
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        if schedule.order[0] == 1:
            assert svc.list("port", {"device_id": bridge["id"]}) == []
        else:
            assert svc.get("bridge", bridge["id"])[1] == 1
        assert_integrity(sched.inner)


def test_create_referrer_vs_cascade_delete(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        chain, _ = svc.create("chain", {"name": f"c{i}"})
        svc.create("rule", {"chain_id": chain["id"], "action": "accept"})
        lost = sched.lost
        results = race(
            sched,
            schedule,
            partial(svc.create, "rule", {"chain_id": chain["id"], "action": "drop"}),
            partial(svc.delete, "chain", chain["id"], cascade=True),
        )
        # the cascade always succeeds; a rule created first goes with the chain
        expected = [0, 1] if schedule.order[0] == 0 else [1]
        assert winners(results) == expected, (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        assert svc.list("rule", {"chain_id": chain["id"]}) == []
        assert_integrity(sched.inner)


def test_concurrent_jumps_cannot_close_a_cycle(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        a, _ = svc.create("chain", {"name": f"a{i}"})
        b, _ = svc.create("chain", {"name": f"b{i}"})
        lost = sched.lost
        results = race(
            sched,
            schedule,
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
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
    assert_integrity(sched.inner)


def test_concurrent_duplicate_mac(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(3)):
        bridge, _ = svc.create("bridge", {})
        same_mac = {"device_id": bridge["id"], "type": "bridge", "mac": mac(0x500 + i)}
        lost = sched.lost
        results = race(sched, schedule, *(partial(svc.create, "port", same_mac) for _ in range(3)))
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
    assert_integrity(sched.inner)


def test_concurrent_links_to_one_port(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    router, _ = svc.create("router", {})
    for i, schedule in enumerate(schedules(2)):
        bridge, _ = svc.create("bridge", {})
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
        lost = sched.lost
        results = race(
            sched,
            schedule,
            partial(svc.link_ports, b1["id"], rport["id"]),
            partial(svc.link_ports, b2["id"], rport["id"]),
        )
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        peer = (b1, b2)[schedule.order[0]]["id"]
        assert svc.get("port", rport["id"])[0]["peer_id"] == peer
    assert_integrity(sched.inner)


def test_concurrent_creates_get_unique_tunnel_keys(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    bridge, _ = svc.create("bridge", {})
    made: list[int] = []
    for schedule in schedules(3):
        lost = sched.lost
        results = race(
            sched,
            schedule,
            *(partial(svc.create, "port", {"device_id": bridge["id"], "type": "bridge"}),) * 3,
        )
        assert winners(results) == [0, 1, 2], (str(schedule), results)
        check_conflicts(sched, lost, schedule, exact=False)
        made += [port["tunnel_key"] for port, _ in results]
    assert len(made) == len(set(made)) == 36
    assert_integrity(sched.inner)


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
