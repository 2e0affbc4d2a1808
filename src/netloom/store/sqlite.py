"""Embedded NSDB on one SQLite file: the zero-setup default for a single machine.

Three tables: ``objects`` (the current documents), ``changes`` (the change log: one row per
changed object, keyed by the commit's revision) and ``meta`` (the last revision and the
compaction floor). Every commit runs in one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's
write lock up front, so commits from any number of threads *and processes* sharing the file are
serialised: the revision (``meta.revision + 1``) is store-wide, strictly increasing and
contiguous, and a failed compare-and-set rolls everything back (all-or-nothing).

WAL journal mode lets readers run while a writer commits (https://sqlite.org/wal.html);
``synchronous=NORMAL`` is the documented WAL setting that never corrupts the file, at the cost of
possibly losing the last commits on power loss (not on a process crash).

Watches poll: a background thread wakes immediately on commits made through this object (a
condition variable) and otherwise re-reads ``meta.revision`` every ``poll_interval`` seconds to
notice commits from other processes (SQLite has no cross-process notification).

Log retention: the change log keeps the last ``keep_revisions`` commits; older rows are deleted
every ``trim_every`` commits and the highest removed revision becomes the *floor*: resuming
(``changes``/``watch``) from below it raises :class:`~netloom.errors.Compacted`.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netloom.errors import Compacted, InvalidInput, StoreError
from netloom.store.base import Change, ChangeCallback, Check, Delete, Doc, Item, Op, Put
from netloom.store.memory import check_op

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    version INTEGER NOT NULL,
    data TEXT,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('floor', 0);
"""


def _dumps(doc: Doc) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


class _SqliteWatch:
    """Delivers the change log from ``since`` on, commit by commit, from one thread."""

    def __init__(self, store: SqliteStore, since: int, callback: ChangeCallback) -> None:
        self._store = store
        self._callback = callback
        self._last = since
        self._cancelled = threading.Event()
        self.error: Exception | None = None  # set if the watch had to stop (e.g. Compacted)
        self._thread = threading.Thread(target=self._run, name="sqlite-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        store = self._store
        while not self._cancelled.is_set():
            try:
                batch = store.changes(self._last)
            except StoreError as exc:  # Compacted (fell too far behind) or the file vanished
                log.error("sqlite watch stopped at revision %d: %s", self._last, exc)
                self.error = exc
                return
            if batch:
                self._last = batch[-1].revision
                self._deliver(batch)
                continue
            with store._cond:
                if store._local_rev <= self._last and not self._cancelled.is_set():
                    store._cond.wait(store.poll_interval)

    def _deliver(self, batch: list[Change]) -> None:
        try:
            self._callback(batch)
        except Exception:  # a broken consumer must not kill the stream for good
            log.exception("store watch callback failed")

    def cancel(self) -> None:
        self._cancelled.set()
        with self._store._cond:
            self._store._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class SqliteStore:
    """The :class:`netloom.store.base.Store` on a SQLite file (``:memory:`` is refused: other
    threads could not share it through separate connections)."""

    def __init__(
        self,
        path: str | Path,
        *,
        keep_revisions: int = 100_000,
        trim_every: int = 1_000,
        poll_interval: float = 0.05,
        busy_timeout: float = 30.0,
    ) -> None:
        if str(path) in ("", ":memory:"):
            raise InvalidInput("sqlite store needs a file path", field="store")
        if keep_revisions < 1 or trim_every < 1:
            raise InvalidInput("keep_revisions and trim_every must be >= 1", field="store")
        self.path = Path(path)
        self.keep_revisions = keep_revisions
        self.trim_every = trim_every
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._cond = threading.Condition()
        self._local_rev = 0  # last revision committed through this object (wakes watches)
        self._watches: list[_SqliteWatch] = []
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # one write transaction, so processes opening a new file together agree on it
            self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite store {self.path}: {exc}") from exc

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the file's write lock from the start, so the
        read-check-write of a commit cannot interleave with another process's commit."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.ProgrammingError as exc:  # closed
                raise StoreError(f"sqlite store {self.path} is closed") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> Item | None:
        rows = self._query(
            "SELECT version, data FROM objects WHERE kind = ? AND id = ?", (kind, id)
        )
        if not rows:
            return None
        version, data = rows[0]
        return Item(kind, id, version, json.loads(data))

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        return [self.get(kind, id) for kind, id in keys]

    def list(self, kind: str) -> builtins.list[Item]:
        rows = self._query(
            "SELECT id, version, data FROM objects WHERE kind = ? ORDER BY id", (kind,)
        )
        return [Item(kind, id_, version, json.loads(data)) for id_, version, data in rows]

    def revision(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key = 'revision'")[0][0])

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        """Whole commits after ``since``, oldest first: at most ``limit`` changes unless one
        commit alone has more (a commit is never split, so a resumed reader never skips half of
        one)."""
        with self._lock:
            # one read transaction: the floor check and the rows come from the same snapshot
            try:
                self._db.execute("BEGIN")
                try:
                    floor = self._meta(self._db, "floor")
                    if since < floor:
                        raise Compacted(
                            f"revision {since} is older than the kept change log (from {floor})"
                        )
                    rows = self._db.execute(
                        "SELECT revision, kind, id, op, version, data FROM changes "
                        "WHERE revision > ? ORDER BY revision, seq LIMIT ?",
                        (since, limit),
                    ).fetchall()
                    if len(rows) == limit:  # complete the last commit
                        rows += self._db.execute(
                            "SELECT revision, kind, id, op, version, data FROM changes "
                            "WHERE revision = ? AND seq >= ? ORDER BY seq",
                            (rows[-1][0], self._seq_of_count(rows)),
                        ).fetchall()
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc
        return [
            Change(rev, kind, id_, op, version, None if data is None else json.loads(data))
            for rev, kind, id_, op, version, data in rows
        ]

    @staticmethod
    def _seq_of_count(rows: builtins.list[Any]) -> int:
        """Index (seq) within the last revision of the first change not yet in ``rows``."""
        last = rows[-1][0]
        return sum(1 for r in rows if r[0] == last)

    # -- writes --------------------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        with self._txn() as db:
            staged: dict[tuple[str, str], Item | None] = {}
            for op in ops:
                key = (op.kind, op.id)
                current = staged[key] if key in staged else self._read(db, key)
                check_op(op, current)
                if isinstance(op, Put):
                    version = (current.version if current else 0) + 1
                    staged[key] = Item(op.kind, op.id, version, op.data)
                elif isinstance(op, Delete):
                    staged[key] = None
            rev = self._meta(db, "revision") + 1
            self._apply(db, rev, ops)
            db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (rev,))
            if rev % self.trim_every == 0:
                self._trim(db, rev)
        with self._cond:
            self._local_rev = max(self._local_rev, rev)
            self._cond.notify_all()
        return rev

    @staticmethod
    def _read(db: sqlite3.Connection, key: tuple[str, str]) -> Item | None:
        row = db.execute("SELECT version FROM objects WHERE kind = ? AND id = ?", key).fetchone()
        # the CAS checks need only the version; data is not loaded
        return None if row is None else Item(key[0], key[1], int(row[0]), {})

    def _apply(
        self,
        db: sqlite3.Connection,
        rev: int,
        ops: Sequence[Op],
    ) -> None:
        """Write the checked ops in order; each put/delete also appends one change row."""
        seq = 0
        for op in ops:
            if isinstance(op, Check):
                continue
            key = (op.kind, op.id)
            if isinstance(op, Put):
                data = _dumps(op.data)
                old = db.execute(
                    "SELECT version FROM objects WHERE kind = ? AND id = ?", key
                ).fetchone()
                version = (int(old[0]) if old else 0) + 1
                db.execute(
                    "INSERT INTO objects (kind, id, version, data) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, "
                    "data = excluded.data",
                    (*key, version, data),
                )
                row: tuple[Any, ...] = (rev, seq, *key, "put", version, data)
            else:
                old = db.execute(
                    "DELETE FROM objects WHERE kind = ? AND id = ? RETURNING version", key
                ).fetchone()
                row = (rev, seq, *key, "delete", int(old[0]), None)
            db.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            seq += 1

    def _trim(self, db: sqlite3.Connection, rev: int) -> None:
        floor = rev - self.keep_revisions
        if floor > self._meta(db, "floor"):
            db.execute("DELETE FROM changes WHERE revision <= ?", (floor,))
            db.execute("UPDATE meta SET value = ? WHERE key = 'floor'", (floor,))

    def compact(self, keep_revisions: int | None = None) -> int:
        """Drop change-log commits older than the last ``keep_revisions`` now; returns the new
        floor (resuming below it raises Compacted)."""
        keep = self.keep_revisions if keep_revisions is None else keep_revisions
        with self._txn() as db:
            rev = self._meta(db, "revision")
            floor = rev - max(keep, 0)
            if floor > self._meta(db, "floor"):
                db.execute("DELETE FROM changes WHERE revision <= ?", (floor,))
                db.execute("UPDATE meta SET value = ? WHERE key = 'floor'", (floor,))
            return self._meta(db, "floor")

    # -- watches -------------------------------------------------------------------------

    def watch(self, since: int, callback: ChangeCallback) -> _SqliteWatch:
        """Start delivering changes after ``since``; raises Compacted right away if the log no
        longer reaches back to ``since``."""
        self.changes(since, limit=1)
        w = _SqliteWatch(self, since, callback)
        with self._lock:
            self._watches.append(w)
        return w

    def close(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for w in watches:
            w.cancel()
        with self._lock:
            self._db.close()


__all__ = ["SqliteStore"]
