"""Forced interleavings of concurrent writers, for the API's race tests.

A race runs under a :class:`Schedule`, enforced by a store wrapper rather than left to thread
timing: serially in a given order, or overlapped -- every writer has read all it decides on
before any of them commits, then their first commits go in the given order. An overlapped
writer that commits after another read a state that is gone, so its compare-and-set conditions
must reject that commit (counted) and the service re-plans it on fresh data."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from netloom.errors import NetloomError
from netloom.store.base import Change, ChangeCallback, Item, Op, Store, Watch

__all__ = [
    "STUCK_S",
    "Schedule",
    "ScheduledStore",
    "check_conflicts",
    "race",
    "same_calls",
    "schedules",
    "winners",
]

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


def same_calls(n: int) -> list[Schedule]:
    """The schedules that differ for ``n`` identical calls (their order does not matter)."""
    order = tuple(range(n))
    return [Schedule(order, overlap=False), Schedule(order, overlap=True)]


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

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        return self.inner.get_many(keys)

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
