"""In-process store: the reference semantics of :class:`netloom.store.base.Store`, used by unit
tests and the scale harness. Not durable."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Sequence
from typing import Literal

from netloom.errors import AlreadyExists, Compacted, NotFound, VersionConflict
from netloom.store.base import Change, ChangeCallback, Check, Delete, Doc, Item, Op, Put


def check_op(op: Op, current: Item | None) -> None:
    """Raise the error ``op`` meets against ``current`` (shared by every backend)."""
    have = current.version if current else 0
    where = f"{op.kind}/{op.id}"
    if isinstance(op, Check):
        if have != op.version:
            if op.version and not have:
                raise NotFound(f"{where} does not exist")
            raise VersionConflict(f"{where} is at version {have}, expected {op.version}")
        return
    if isinstance(op, Put):
        if op.expect_version == 0 and have:
            raise AlreadyExists(f"{where} already exists")
        if op.expect_version and not have:
            raise NotFound(f"{where} does not exist")
        if op.expect_version and have != op.expect_version:
            raise VersionConflict(f"{where} is at version {have}, expected {op.expect_version}")
        return
    if not have:
        raise NotFound(f"{where} does not exist")
    if op.expect_version is not None and have != op.expect_version:
        raise VersionConflict(f"{where} is at version {have}, expected {op.expect_version}")


class _MemoryWatch:
    def __init__(self, store: MemoryStore, since: int, callback: ChangeCallback) -> None:
        self._store = store
        self._callback = callback
        self._last = since
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memstore-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._cancelled.is_set():
            with self._store._cond:
                while self._store._rev <= self._last and not self._cancelled.is_set():
                    self._store._cond.wait(0.5)
            if self._cancelled.is_set():
                return
            batch = self._store.changes(self._last)
            if batch:
                self._last = batch[-1].revision
                self._callback(batch)

    def cancel(self) -> None:
        self._cancelled.set()
        with self._store._cond:
            self._store._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)


class MemoryStore:
    def __init__(self, keep_changes: int = 100_000) -> None:
        self._objects: dict[tuple[str, str], Item] = {}
        self._log: list[Change] = []
        self._rev = 0
        self._keep = keep_changes
        self._floor = 0  # highest revision trimmed from the log
        self._cond = threading.Condition()

    def get(self, kind: str, id: str) -> Item | None:
        with self._cond:
            return self._objects.get((kind, id))

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        with self._cond:
            return [self._objects.get(k) for k in keys]

    def list(self, kind: str) -> builtins.list[Item]:
        with self._cond:
            return [it for (k, _), it in self._objects.items() if k == kind]

    def commit(self, ops: Sequence[Op]) -> int:
        with self._cond:
            staged: dict[tuple[str, str], Item | None] = {}
            # one change per put/delete, as each op leaves the object (several ops may touch
            # the same key: each is logged with its own version and data)
            pending: list[tuple[str, str, Literal["put", "delete"], int, Doc | None]] = []
            for op in ops:
                key = (op.kind, op.id)
                current = staged[key] if key in staged else self._objects.get(key)
                check_op(op, current)
                if isinstance(op, Put):
                    version = (current.version if current else 0) + 1
                    data = copy.deepcopy(op.data)
                    staged[key] = Item(op.kind, op.id, version, data)
                    pending.append((op.kind, op.id, "put", version, data))
                elif isinstance(op, Delete):
                    assert current is not None  # check_op refused deleting a missing object
                    staged[key] = None
                    pending.append((op.kind, op.id, "delete", current.version, None))
            self._rev += 1
            for key, item in staged.items():
                if item is None:
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = item
            self._log.extend(Change(self._rev, *p) for p in pending)
            if len(self._log) > self._keep:
                cut = len(self._log) - self._keep
                log = self._log
                while cut < len(log) and log[cut].revision == log[cut - 1].revision:
                    cut += 1  # never keep half a commit
                self._floor = self._log[cut - 1].revision
                del self._log[:cut]
            self._cond.notify_all()
            return self._rev

    def revision(self) -> int:
        with self._cond:
            return self._rev

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        with self._cond:
            if since < self._floor:
                raise Compacted(f"revision {since} is older than the kept change log")
            # the log is in revision order: bisect would do; linear from the end is enough
            out = [c for c in self._log if c.revision > since]
            end = min(limit, len(out))
            while 0 < end < len(out) and out[end].revision == out[end - 1].revision:
                end += 1  # never split a commit: a resumed reader would skip its rest
            return out[:end]

    def watch(self, since: int, callback: ChangeCallback) -> _MemoryWatch:
        self.changes(since, limit=1)  # raises Compacted now, not later in the thread
        return _MemoryWatch(self, since, callback)

    def close(self) -> None:
        pass


__all__ = ["MemoryStore", "check_op"]
