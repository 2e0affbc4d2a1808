"""Helpers of the NSDB conformance suite (importable by test modules, unlike conftest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netloom.store.base import Change, Store
from netloom.store.memory import MemoryStore
from netloom.store.sqlite import SqliteStore
from netloom.store.zookeeper import ZooKeeperStore


class Backend:
    """Opens stores of one backend on one shared storage (a file, a chroot), and closes every
    store it opened at teardown. ``shared`` is False for memory, whose only "second instance"
    is the same object."""

    def __init__(self, name: str, opener: Callable[..., Store]) -> None:
        self.name = name
        self._opener = opener
        self._opened: list[Store] = []
        self._memory: Store | None = None

    @property
    def shared(self) -> bool:
        return self.name != "memory"

    def open(self, *, keep: int | None = None) -> Store:
        """A store on this test's storage; ``keep`` asks for a tiny change log (a fresh
        storage for memory, whose log lives in the object)."""
        if self.name == "memory" and keep is None:
            if self._memory is None:
                self._memory = self._opener()
            return self._memory
        store = self._opener(keep=keep)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for s in self._opened:
            s.close()
        if self._memory is not None:
            self._memory.close()


def memory_opener() -> Callable[..., Store]:
    def opener(keep: int | None = None) -> Store:
        return MemoryStore() if keep is None else MemoryStore(keep_changes=keep)

    return opener


def sqlite_opener(path: Path) -> Callable[..., Store]:
    def opener(keep: int | None = None) -> Store:
        if keep is None:
            return SqliteStore(path)
        return SqliteStore(path, keep_revisions=keep, trim_every=1)

    return opener


def zk_opener(hosts: str) -> Callable[..., Store]:
    def opener(keep: int | None = None) -> Store:
        if keep is None:
            return ZooKeeperStore(hosts)
        return ZooKeeperStore(hosts, keep_revisions=keep, trim_every=1)

    return opener


class Collector:
    """A watch callback that records every batch and lets a test wait for a count."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.batches = 0
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, batch: list[Change]) -> None:
        with self._cond:
            self.changes.extend(batch)
            self.batches += 1
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Change]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.changes):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_count(self, n: int, timeout: float = 10.0) -> list[Change]:
        assert self.wait_for(lambda c: len(c) >= n, timeout), (
            f"watch delivered {len(self.changes)} changes, expected {n}"
        )
        return list(self.changes)

    def wait_revision(self, rev: int, timeout: float = 10.0) -> list[Change]:
        assert self.wait_for(lambda c: bool(c) and c[-1].revision >= rev, timeout), (
            f"watch stuck at {self.changes[-1].revision if self.changes else 0}, want {rev}"
        )
        return list(self.changes)


def key_of(c: Change) -> tuple[Any, ...]:
    return (c.revision, c.kind, c.id, c.op, c.version)
