"""The ZooKeeper store's change log: reading commits after a revision, trimming, watches.

Each commit is one sequential node under ``log/`` (revision = sequence number + 1) holding the
commit's changes; ``meta/floor`` is the highest revision trimmed. A watch is a thread that a
children watch on ``log/`` (plus every reconnect) wakes; it delivers whole commits in order and
keeps its position across connection loss, session moves and session expiry.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import NoNodeError

from netloom.errors import Compacted, StoreError
from netloom.store.base import Change, ChangeCallback
from netloom.store.zk_conn import TRANSIENT, ZkConnection

log = logging.getLogger(__name__)


def revision_of(name: str) -> int:
    """``<token>-0000000041`` -> 42 (revision = sequence number + 1, so the first is 1)."""
    return int(name.rsplit("-", 1)[1]) + 1


def read_changes(
    zk: ZkConnection, since: int, limit: int, watch: Callable[[Any], None] | None = None
) -> list[Change]:
    """Whole commits after ``since``, oldest first (see ``ZooKeeperStore.changes``)."""
    # list first, floor second: a trim that removed entries we need after the listing
    # has raised the floor by the time we read it (see Compacted below)
    names = zk.call(zk.client.get_children, zk.log, watch=watch)
    floor = zk.read_floor()
    if since < floor:
        raise Compacted(f"revision {since} is older than the kept change log (from {floor})")
    pending = sorted((r, n) for n in names if (r := revision_of(n)) > since)
    out: list[Change] = []
    while pending and len(out) < limit:
        # entries hold >= 0 changes each: fetch about as many as the limit still needs
        size = max(1, min(256, limit - len(out)))
        chunk, pending = pending[:size], pending[size:]
        for rev, entries in _fetch_log(zk, chunk, since):
            out.extend(Change(rev, e[0], e[1], e[2], e[3], e[4]) for e in entries)
            if len(out) >= limit:
                break
    return out


def _fetch_log(
    zk: ZkConnection, chunk: list[tuple[int, str]], since: int
) -> list[tuple[int, list[Any]]]:
    def fetch() -> list[tuple[int, list[Any]]]:
        asyncs = [(r, zk.client.get_async(f"{zk.log}/{n}")) for r, n in chunk]
        return [(r, json.loads(a.get()[0])) for r, a in asyncs]

    try:
        return zk.call(fetch)
    except NoNodeError as exc:  # trimmed while we read: we were below the new floor
        raise Compacted(f"revision {since} was trimmed from the change log") from exc


def trim_log(zk: ZkConnection, keep: int) -> int:
    """Delete all but the newest ``keep`` log nodes; the floor is raised in the same multi as
    each batch of deletes. Returns the floor."""
    names = sorted(zk.call(zk.client.get_children, zk.log), key=revision_of)
    victims = names[: max(len(names) - keep, 0)]
    for start in range(0, len(victims), 500):
        batch = victims[start : start + 500]
        data, stat = zk.call(zk.client.get, zk.floor)
        floor = max(int(data), revision_of(batch[-1]))
        txn = zk.client.transaction()
        txn.set_data(zk.floor, str(floor).encode(), version=stat.version)
        for n in batch:
            txn.delete(f"{zk.log}/{n}")
        try:
            results = txn.commit()  # a transaction object commits once: no retry helper
        except TRANSIENT as exc:
            raise StoreError(f"zookeeper log trim: {type(exc).__name__} {exc}") from exc
        if any(isinstance(r, Exception) for r in results):
            break  # another client is trimming the same entries
    return zk.read_floor()


class ZkWatch:
    """Follows ``log/`` from a revision on, delivering each commit's changes once, in order."""

    def __init__(self, zk: ZkConnection, since: int, callback: ChangeCallback) -> None:
        self._zk = zk
        self._callback = callback
        self._last = since
        self._wake = threading.Event()
        self._cancelled = threading.Event()
        self.error: Exception | None = None  # set if the watch had to stop (Compacted)
        zk.client.add_listener(self._on_state)
        self._thread = threading.Thread(target=self._run, name="zk-watch", daemon=True)
        self._thread.start()

    def _on_state(self, state: str) -> None:
        # runs in kazoo's event thread: only signal, never call ZooKeeper from here
        self._wake.set()

    def _on_children(self, _event: Any) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._cancelled.is_set():
            self._wake.clear()  # before reading: a commit after the read re-fires the watch
            try:
                batch = read_changes(self._zk, self._last, 10_000, watch=self._on_children)
            except Compacted as exc:
                log.error("zookeeper watch stopped at revision %d: %s", self._last, exc)
                self.error = exc
                return
            except StoreError as exc:  # ensemble unreachable for now: keep our place, retry
                log.warning("zookeeper watch at revision %d: %s; retrying", self._last, exc)
                self._cancelled.wait(0.2)
                continue
            if batch:
                self._last = batch[-1].revision
                self._deliver(batch)
                continue
            # the children watch wakes us; the timeout covers a watch lost with a session
            self._wake.wait(1.0)

    def _deliver(self, batch: list[Change]) -> None:
        try:
            self._callback(batch)
        except Exception:  # a broken consumer must not kill the stream for good
            log.exception("store watch callback failed")

    def cancel(self) -> None:
        self._cancelled.set()
        self._wake.set()
        self._zk.client.remove_listener(self._on_state)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


__all__ = ["ZkWatch", "read_changes", "revision_of", "trim_log"]
