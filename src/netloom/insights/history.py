"""The flow history: one row per kernel flow, in an embedded DuckDB file.

Why DuckDB and not SQLite (measured on 1 M synthetic flows, see docs/design.md): the queries
are scans with group-bys (top talkers, drops by rule over time), which a column store answers
in milliseconds where SQLite takes seconds; and records arrive in batches, which DuckDB takes
fastest as Arrow tables. No primary key: its index tripled the file and cut ingest by three;
a later record of a flow replaces the earlier one by a delete of the batch's flow ids, in the
same transaction as the insert (a flow's records share ``first_seen``: the delete reads only
the row groups first seen since the batch's oldest flow).

Records are buffered (the latest per flow) and written in batches of ``batch_rows``; every query
writes the buffer first, so it sees every record ingested before it.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from netloom.errors import InvalidInput, StoreError
from netloom.insights.queries import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_FLOWS,
    DROP_VERDICTS,
    MAX_BUCKET_S,
    MIN_BUCKET_S,
    DropPoint,
    FlowFilter,
    Page,
    Talker,
    check_limit,
    make_marker,
    parse_marker,
    talker_columns,
)
from netloom.model.flowrecord import FlowRecord

DEFAULT_BATCH_ROWS = 20_000

_TEXT_LIST = pa.list_(pa.string())
SCHEMA = pa.schema(
    [
        ("flow_id", pa.string()),
        ("host_id", pa.string()),
        ("first_seen", pa.float64()),
        ("last_seen", pa.float64()),
        ("proto", pa.uint8()),
        ("src_ip", pa.string()),
        ("dst_ip", pa.string()),
        ("src_port", pa.uint16()),
        ("dst_port", pa.uint16()),
        ("in_port_id", pa.string()),
        ("out_port_id", pa.string()),
        ("egress_host_id", pa.string()),
        ("project_id", pa.string()),
        ("devices", _TEXT_LIST),
        ("rules", _TEXT_LIST),
        ("security_groups", _TEXT_LIST),
        ("nat", _TEXT_LIST),
        ("verdict", pa.string()),
        ("packets", pa.uint64()),
        ("bytes", pa.uint64()),
        ("final", pa.bool_()),
    ]
)
COLUMNS = [f.name for f in fields(FlowRecord)]
assert SCHEMA.names == COLUMNS, "the table's columns are FlowRecord's fields, in order"
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint64(): "UBIGINT",
    pa.bool_(): "BOOLEAN",
    _TEXT_LIST: "VARCHAR[]",
}
_CREATE = "CREATE TABLE IF NOT EXISTS flows ({})".format(
    ", ".join(f"{f.name} {_SQL_TYPES[f.type]}" for f in SCHEMA)
)
_SELECT = ", ".join(COLUMNS)
_ROW = operator.attrgetter(*COLUMNS)


def _table(records: Sequence[FlowRecord]) -> pa.Table:
    columns = zip(*map(_ROW, records), strict=True)
    arrays = [pa.array(c, t.type) for c, t in zip(columns, SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _record(row: tuple[Any, ...]) -> FlowRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    for name in ("devices", "rules", "security_groups", "nat"):
        values[name] = tuple(values[name] or ())
    return FlowRecord(**values)


class FlowHistory:
    """The flow records of every host, their retention and the queries. Thread-safe (one
    connection behind a lock): the report worker ingests while the API queries."""

    def __init__(
        self,
        path: Path | str = ":memory:",
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_flows: int = DEFAULT_MAX_FLOWS,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        if max_age_s <= 0 or max_flows < 1 or batch_rows < 1:
            raise InvalidInput("retention and batch size must be positive", field="retention")
        self.path = str(path)
        self.max_age_s = max_age_s
        self.max_flows = max_flows
        self.batch_rows = batch_rows
        try:
            self._db = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open flow history {self.path}: {exc}", field="flows"
            ) from None
        self._db.execute(_CREATE)
        self._lock = threading.Lock()
        self._pending: dict[str, FlowRecord] = {}
        self.ingested = 0  # records taken (a figure for metrics)

    # -- writing ---------------------------------------------------------------------------------

    def ingest(self, records: Sequence[FlowRecord]) -> None:
        """Take a batch of records; a later record of a flow replaces the earlier one."""
        with self._lock:
            for r in records:
                self._pending[r.flow_id] = r
            self.ingested += len(records)
            if len(self._pending) >= self.batch_rows:
                self._write()

    def flush(self) -> None:
        """Write what is buffered."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        pending = list(self._pending.values())
        batch = _table(pending)
        first = min(r.first_seen for r in pending)
        self._pending = {}
        db = self._db
        db.register("batch", batch)
        try:
            db.execute("BEGIN")
            # a flow's records share its first_seen: the rows first seen before the batch's
            # oldest flow (most of the file, as rows come in time order) are skipped by their
            # row groups' min/max, not read
            db.execute(
                "DELETE FROM flows WHERE first_seen >= ? "
                "AND flow_id IN (SELECT flow_id FROM batch)",
                [first],
            )
            db.execute("INSERT INTO flows SELECT * FROM batch")
            db.execute("COMMIT")
        except duckdb.Error as exc:
            db.execute("ROLLBACK")
            raise StoreError(f"flow history write failed: {exc}", field="flows") from None
        finally:
            db.unregister("batch")

    def expire(self, now: float) -> int:
        """Retention: drop flows last seen more than ``max_age_s`` before ``now``, then the
        oldest beyond ``max_flows``. The number of flows dropped."""
        with self._lock:
            self._write()
            before = self._count()
            self._db.execute("DELETE FROM flows WHERE last_seen < ?", [now - self.max_age_s])
            over = self._count() - self.max_flows
            if over > 0:
                self._db.execute(
                    "DELETE FROM flows WHERE flow_id IN "
                    "(SELECT flow_id FROM flows ORDER BY last_seen, flow_id LIMIT ?)",
                    [over],
                )
            return before - self._count()

    def close(self) -> None:
        with self._lock:
            self._write()
            self._db.close()

    # -- reading ---------------------------------------------------------------------------------

    def _count(self) -> int:
        rows = self._db.execute("SELECT count(*) FROM flows").fetchall()
        return int(rows[0][0])

    def _query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            self._write()
            return self._db.execute(sql, list(args)).fetchall()

    def count(self) -> int:
        """Flows stored."""
        with self._lock:
            self._write()
            return self._count()

    def get(self, flow_id: str) -> FlowRecord | None:
        rows = self._query(f"SELECT {_SELECT} FROM flows WHERE flow_id = ?", [flow_id])
        return _record(rows[0]) if rows else None

    def flows(
        self, where: FlowFilter | None = None, limit: int = 100, marker: str | None = None
    ) -> Page:
        """Flows matching ``where``, the last seen first (ties by flow id), a page at a time."""
        cond, args = (where or FlowFilter()).where()
        if marker is not None:
            seen, flow_id = parse_marker(marker)
            cond += " AND (last_seen < ? OR (last_seen = ? AND flow_id > ?))"
            args += [seen, seen, flow_id]
        # Two steps (the tail of a port's query halves): the row ids and times of the matching
        # flows and the time of the (limit + 1)-th latest; then only the rows at or after it are
        # read whole (the first limit + 1 in the order asked are among them, ties included).
        rows = self._query(
            f"WITH m AS MATERIALIZED (SELECT rowid AS r, last_seen FROM flows WHERE {cond}), "
            "lo AS (SELECT min(last_seen) AS lo FROM "
            "(SELECT last_seen FROM m ORDER BY last_seen DESC LIMIT ?)) "
            f"SELECT {_SELECT} FROM flows WHERE rowid IN "
            "(SELECT r FROM m, lo WHERE m.last_seen >= lo.lo) "
            "ORDER BY last_seen DESC, flow_id LIMIT ?",
            [*args, check_limit(limit) + 1, limit + 1],
        )
        items = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, make_marker(items[-1].last_seen, items[-1].flow_id) if more else None)

    def top_talkers(
        self, where: FlowFilter | None = None, by: str = "source", limit: int = 10
    ) -> list[Talker]:
        """The keys (``by``: source, destination, pair of addresses, in-port) with the most
        bytes in the flows matching ``where``."""
        n = len(talker_columns(by))
        keys = ", ".join(talker_columns(by))
        cond, args = (where or FlowFilter()).where()
        rows = self._query(
            f"SELECT {keys}, sum(bytes), sum(packets), count(*) FROM flows WHERE {cond} "
            f"GROUP BY {keys} ORDER BY {n + 1} DESC, {keys} LIMIT ?",
            [*args, check_limit(limit)],
        )
        return [Talker(tuple(r[:n]), int(r[n]), int(r[n + 1]), int(r[n + 2])) for r in rows]

    def drops_by_rule(
        self, where: FlowFilter | None = None, bucket_s: float = 60.0, rules: int = 10
    ) -> list[DropPoint]:
        """Dropped and rejected flows per deciding rule (the last of a flow's rules) and time
        bucket (by last seen), oldest bucket first: the series of the ``rules`` rules with the
        most drops in the flows matching ``where``."""
        if not MIN_BUCKET_S <= bucket_s <= MAX_BUCKET_S:
            msg = f"bucket must be between {MIN_BUCKET_S} and {MAX_BUCKET_S:.0f} seconds"
            raise InvalidInput(msg, field="bucket")
        cond, args = (where or FlowFilter()).where()
        verdicts = ", ".join(f"'{v}'" for v in DROP_VERDICTS)
        rows = self._query(
            "WITH d AS (SELECT coalesce(rules[-1], '') AS rule, last_seen, packets, bytes "
            f"FROM flows WHERE verdict IN ({verdicts}) AND {cond}), "
            "top AS (SELECT rule FROM d GROUP BY rule ORDER BY count(*) DESC, rule LIMIT ?) "
            "SELECT rule, floor(last_seen / ?) * ? AS t, count(*), sum(packets), sum(bytes) "
            "FROM d WHERE rule IN (SELECT rule FROM top) GROUP BY rule, t ORDER BY t, rule",
            [*args, check_limit(rules), bucket_s, bucket_s],
        )
        return [DropPoint(r[0] or None, float(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


__all__ = ["FlowHistory"]
