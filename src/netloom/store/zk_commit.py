"""The ZooKeeper store's commit encoding: one ``multi`` per commit, conditional on versions.

The plan reads the current znode versions, checks the caller's conditions against them and
builds a multi whose every write is conditional on those versions, plus the commit's log node
(``log/<token>-``). A lost connection mid-commit is resolved by looking for the token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from netloom.errors import PayloadTooLarge, StoreError
from netloom.store.base import Check, Item, Op, Put
from netloom.store.memory import check_op
from netloom.store.zk_conn import TRANSIENT, ZkConnection
from netloom.store.zk_log import revision_of

# ZooKeeper refuses requests above jute.maxbuffer (1 MiB by default) by dropping the connection;
# refuse such commits up front with a clear error instead.
MAX_REQUEST_BYTES = 1_000_000

# one log entry per change: [kind, id, op, version, data]
LogEntry = list[Any]


def _versions(zk: ZkConnection, ops: Sequence[Op]) -> dict[tuple[str, str], int | None]:
    """Current znode version of every object the ops touch (None: absent), pipelined."""

    def fetch() -> dict[tuple[str, str], int | None]:
        keys = list(dict.fromkeys((op.kind, op.id) for op in ops))
        asyncs = [(k, zk.client.exists_async(zk.path(*k))) for k in keys]
        out: dict[tuple[str, str], int | None] = {}
        for k, a in asyncs:
            stat = a.get()
            out[k] = None if stat is None else stat.version
        return out

    return zk.call(fetch)


def plan(zk: ZkConnection, ops: Sequence[Op]) -> tuple[Any, list[LogEntry]]:
    """Check the caller's conditions against current versions (netloom errors) and build
    the multi that applies them only if nothing changed meanwhile."""
    current = _versions(zk, ops)
    txn = zk.client.transaction()
    changes: list[LogEntry] = []
    size = 0
    for op in ops:
        key = (op.kind, op.id)
        zv = current[key]
        path = zk.path(*key)
        check_op(op, None if zv is None else Item(op.kind, op.id, zv + 1, {}))
        size += len(path) + 64
        if isinstance(op, Check):
            if zv is None:  # "must not exist": ZooKeeper has no such check, so
                txn.create(path, b"")  # create-then-delete fails iff it exists
                txn.delete(path)
            else:
                txn.check(path, zv)
        elif isinstance(op, Put):
            data = json.dumps(op.data, separators=(",", ":")).encode()
            size += 2 * len(data)  # in the object and in the log entry
            if zv is None:
                txn.create(path, data)
                new = 0
            else:
                txn.set_data(path, data, version=zv)
                new = zv + 1
            current[key] = new
            changes.append([op.kind, op.id, "put", new + 1, op.data])
        else:
            assert zv is not None  # check_op refused deleting a missing object
            txn.delete(path, version=zv)
            current[key] = None
            changes.append([op.kind, op.id, "delete", zv + 1, None])
    if size > MAX_REQUEST_BYTES:
        raise PayloadTooLarge(
            f"commit of ~{size} bytes exceeds ZooKeeper's {MAX_REQUEST_BYTES} byte limit"
        )
    return txn, changes


def try_commit(zk: ZkConnection, txn: Any, changes: list[LogEntry], token: str) -> int | None:
    """Run the multi; the revision, or None when a concurrent write beat our plan."""
    txn.create(
        f"{zk.log}/{token}-",
        json.dumps(changes, separators=(",", ":")).encode(),
        sequence=True,
    )
    try:
        results = txn.commit()
    except TRANSIENT as lost:
        try:
            return _outcome(zk, token)
        except StoreError as exc:
            raise StoreError(
                f"zookeeper connection lost during a commit and not regained: the commit "
                f"(log token {token}) may or may not have been applied ({exc.message})"
            ) from lost
    failures = [r for r in results if isinstance(r, Exception)]
    if not failures:
        return revision_of(results[-1])
    cause = next((r for r in failures if not isinstance(r, RolledBackError)), failures[0])
    if isinstance(cause, BadVersionError | NodeExistsError | NoNodeError | RolledBackError):
        return None  # raced with another writer: re-plan
    raise StoreError(f"zookeeper commit failed: {type(cause).__name__} {cause}")


def _outcome(zk: ZkConnection, token: str) -> int | None:
    """After connection loss mid-commit: did the multi happen? Look for our log node once
    reconnected and synced (a moved session's stale requests can no longer apply)."""
    zk.call(zk.client.sync, zk.log)
    names = zk.call(zk.client.get_children, zk.log)
    for n in names:
        if n.startswith(token + "-"):
            return revision_of(n)
    return None


__all__ = ["MAX_REQUEST_BYTES", "LogEntry", "plan", "try_commit"]
