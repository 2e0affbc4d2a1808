"""In-process store: the reference semantics of :class:`netloom.store.base.Store`, used by unit
tests and the scale harness. Not durable."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Sequence

from netloom.errors import AlreadyExists, Compacted, NotFound, VersionConflict
from netloom.store.base import Change, ChangeCallback, Check, Delete, Item, Op, Put


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
        self._cond = threading.Condition()

    def get(self, kind: str, id: str) -> Item | None:
        with self._cond:
            return self._objects.get((kind, id))

    def list(self, kind: str) -> builtins.list[Item]:
        with self._cond:
            return [it for (k, _), it in self._objects.items() if k == kind]

    def commit(self, ops: Sequence[Op]) -> int:
        with self._cond:
            staged: dict[tuple[str, str], Item | None] = {}
            for op in ops:
                key = (op.kind, op.id)
                current = staged[key] if key in staged else self._objects.get(key)
                check_op(op, current)
                if isinstance(op, Put):
                    version = (current.version if current else 0) + 1
                    staged[key] = Item(op.kind, op.id, version, copy.deepcopy(op.data))
                elif isinstance(op, Delete):
                    staged[key] = None
            self._rev += 1
            for op in ops:
                key = (op.kind, op.id)
                if isinstance(op, Put):
                    item = staged[key]
                    assert item is not None
                    self._objects[key] = item
                    self._log.append(Change(self._rev, op.kind, op.id, "put", item.version,
                                            item.data))
                elif isinstance(op, Delete):
                    old = self._objects.pop(key)
                    self._log.append(Change(self._rev, op.kind, op.id, "delete", old.version,
                                            None))
            if len(self._log) > self._keep:
                del self._log[: len(self._log) - self._keep]
            self._cond.notify_all()
            return self._rev

    def revision(self) -> int:
        with self._cond:
            return self._rev

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        with self._cond:
            if since < self._rev and self._log and self._log[0].revision > since + 1:
                raise Compacted(f"revision {since} is older than the kept change log")
            # the log is in revision order: bisect would do; linear from the end is enough
            out = [c for c in self._log if c.revision > since]
            return out[:limit]

    def watch(self, since: int, callback: ChangeCallback) -> _MemoryWatch:
        return _MemoryWatch(self, since, callback)

    def close(self) -> None:
        pass


__all__ = ["MemoryStore", "check_op"]
