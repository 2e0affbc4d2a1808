"""The cluster's simulation log: every host's entries in one bounded, queryable SQLite file.

Agents ship their :class:`~netloom.model.simlog.SimEntry` values in batches (the topology
connection); :meth:`SimLogStore.add` writes a batch in one transaction on the topology server's
report thread and, past ``max_rows``, deletes the oldest rows (ids grow with time, so the bound
is one range delete). The columns a query filters on are columns; the entry itself is kept as
msgpack. Reads (the API) and writes may come from different threads: one connection, one lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from netloom.errors import InvalidInput
from netloom.model.simlog import KINDS, SimEntry

FILE_NAME = "simlog.sqlite"
DEFAULT_MAX_ROWS = 1_000_000
MAX_LIMIT = 1000  # entries per query page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS simlog (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL,
    port TEXT, verdict TEXT NOT NULL, trace TEXT, flow INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS simlog_t ON simlog (t);
CREATE INDEX IF NOT EXISTS simlog_port ON simlog (port, id);
CREATE INDEX IF NOT EXISTS simlog_host ON simlog (host, id);
CREATE INDEX IF NOT EXISTS simlog_trace ON simlog (trace) WHERE trace IS NOT NULL;
"""


@dataclass(frozen=True, slots=True)
class SimLogQuery:
    """Which entries: every given filter must hold. Newest first; ``before`` (an id from a
    previous page) pages back."""

    host: str | None = None
    port: str | None = None
    kind: str | None = None
    verdict: str | None = None
    trace: str | None = None
    since: float | None = None  # wall-clock seconds
    until: float | None = None
    before: int | None = None
    limit: int = 100

    def check(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", field="limit")
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")


class SimLogStore:
    """See the module docstring. ``path`` None: in memory (tests, a cluster without a state
    dir)."""

    def __init__(self, path: Path | None, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        if max_rows < 1:
            raise InvalidInput("max_rows must be >= 1", field="max_rows")
        self.max_rows = max_rows
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path) if path is not None else ":memory:", check_same_thread=False
            )
            self._db.executescript(_SCHEMA)
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise InvalidInput(
                f"cannot open the simulation log {path}: {exc}", field="state_dir"
            ) from None
        self._lock = threading.Lock()
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(SimEntry)

    def add(self, host_id: str, entries: Sequence[SimEntry]) -> int:
        """Keep ``entries`` of ``host_id`` (the host a batch came from, whatever it claims);
        the number of rows added."""
        rows = []
        enc = self._enc.encode
        for e in entries:
            e.host = host_id
            rows.append((e.t, host_id, e.kind, e.port, e.verdict, e.trace, e.flow, enc(e)))
        with self._lock, self._db:
            cur = self._db.executemany(
                "INSERT INTO simlog (t, host, kind, port, verdict, trace, flow, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            last = self._db.execute("SELECT max(id) FROM simlog").fetchone()[0] or 0
            if last > self.max_rows:
                self._db.execute("DELETE FROM simlog WHERE id <= ?", (last - self.max_rows,))
        return cur.rowcount

    def query(self, q: SimLogQuery) -> list[tuple[int, SimEntry]]:
        """``(id, entry)`` of the entries ``q`` selects, newest first."""
        q.check()
        where: list[str] = []
        args: list[str | float] = []
        for col, val in (
            ("host", q.host),
            ("port", q.port),
            ("kind", q.kind),
            ("verdict", q.verdict),
            ("trace", q.trace),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        for cond, num in (("t >= ?", q.since), ("t <= ?", q.until), ("id < ?", q.before)):
            if num is not None:
                where.append(cond)
                args.append(num)
        sql = "SELECT id, body FROM simlog"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, q.limit)).fetchall()
        return [(i, self._dec.decode(b)) for i, b in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM simlog").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["DEFAULT_MAX_ROWS", "FILE_NAME", "MAX_LIMIT", "SimLogQuery", "SimLogStore"]
