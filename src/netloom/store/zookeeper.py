"""NSDB on a ZooKeeper ensemble (via kazoo): the highly available backend.

Layout under the chroot (default ``/netloom``)::

    <chroot>/objects/<kind>/<id>     the document (JSON); its version = znode version + 1
    <chroot>/log/<token>-<seq>       one persistent sequential node per commit, holding the
                                     commit's changes (JSON); revision = seq + 1
    <chroot>/meta/floor              highest revision trimmed from the log (Compacted below it)

**Commits.** A commit is ONE ZooKeeper ``multi`` transaction: the object writes, each carrying
the znode version the compare-and-set expects (``check``/``setData``/``delete`` with a version,
``create`` for "must not exist"), plus the creation of the commit's log node. ZooKeeper applies a
multi all-or-nothing, and assigns sequence numbers from the parent's ``cversion`` in the leader's
total order, so the revision is atomic with the writes and strictly increasing across all
clients. Revisions are not contiguous: deleting trimmed log nodes also bumps ``cversion``.

To know the version a put produces (it goes into the log node written in the same multi), the
client reads the current versions first and makes every write conditional on them; if another
client got in between, the multi fails, the client re-reads, re-applies the caller's conditions
and retries (optimistic concurrency). A caller's condition that fails against a possibly stale
follower is re-checked after ``sync`` before it is reported, so a conflict is never invented.

**Connection loss during a commit** leaves its outcome unknown. Each log node name starts with a
random token (Curator's "protected" sequential nodes); after reconnecting, the client ``sync``s
and looks for its token: found, the commit happened (its revision is returned); absent, ZooKeeper
guarantees it never will (requests from a moved session are refused), so the commit is retried.
Writes therefore continue, exactly once, while ensemble members fail.

**Watches** are a thread per subscription: a children watch on ``log/`` (plus every reconnect)
wakes it; it reads the log after its last delivered revision and delivers whole commits in
order. It keeps its position across connection loss, session moves and session expiry, so
each change is delivered once.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
)
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry, RetryFailedError

from netloom.errors import (
    Compacted,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreError,
)
from netloom.store.base import Change, ChangeCallback, Check, Item, Op, Put
from netloom.store.memory import check_op

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CHROOT = "/netloom"
# ZooKeeper refuses requests above jute.maxbuffer (1 MiB by default) by dropping the connection;
# refuse such commits up front with a clear error instead.
MAX_REQUEST_BYTES = 1_000_000
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.:@\-]+$")
_TRANSIENT = (KazooException, RetryFailedError, InterruptedError)


def parse_hosts(spec: str) -> tuple[str, str]:
    """Split ``HOST:PORT,HOST:PORT[/chroot]`` into the kazoo hosts string and the chroot
    (``/netloom`` when none is given). Raises InvalidInput on anything else."""
    hosts, _, chroot_part = spec.partition("/")
    hosts = hosts.strip()
    if not hosts:
        raise InvalidInput(f"bad zookeeper address {spec!r}: no hosts", field="store")
    for host in hosts.split(","):
        m = _HOST_RE.match(host.strip())
        if not m or not 0 < int(m.group(2)) < 65536:
            raise InvalidInput(
                f"bad zookeeper host {host!r} in {spec!r}: want HOST:PORT", field="store"
            )
    segments = [s for s in chroot_part.split("/") if s]
    for seg in segments:
        if not _SEGMENT_RE.match(seg) or seg in (".", "..", "zookeeper"):
            raise InvalidInput(f"bad zookeeper chroot segment {seg!r} in {spec!r}", field="store")
    chroot = "/" + "/".join(segments) if segments else DEFAULT_CHROOT
    return ",".join(h.strip() for h in hosts.split(",")), chroot


def _check_name(what: str, value: str) -> None:
    """Kinds and ids become znode names: refuse what ZooKeeper would mangle or reject."""
    if not value or "/" in value or value in (".", "..") or any(ord(c) < 32 for c in value):
        raise InvalidInput(
            f"{what} {value!r} cannot be stored (empty, '/', '.' or control characters)", field=what
        )


def _revision_of(name: str) -> int:
    """``<token>-0000000041`` -> 42 (revision = sequence number + 1, so the first is 1)."""
    return int(name.rsplit("-", 1)[1]) + 1


@dataclass
class _Planned:
    """Per object during planning: the znode version the multi will find, or None (absent)."""

    zversion: int | None


class _ZkWatch:
    """Follows ``log/`` from a revision on, delivering each commit's changes once, in order."""

    def __init__(self, store: ZooKeeperStore, since: int, callback: ChangeCallback) -> None:
        self._store = store
        self._callback = callback
        self._last = since
        self._wake = threading.Event()
        self._cancelled = threading.Event()
        self.error: Exception | None = None  # set if the watch had to stop (Compacted)
        store._client.add_listener(self._on_state)
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
                batch = self._store._changes(self._last, 10_000, watch=self._on_children)
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
        self._store._client.remove_listener(self._on_state)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class ZooKeeperStore:
    """The :class:`netloom.store.base.Store` on ZooKeeper; ``hosts`` is
    ``HOST:PORT,HOST:PORT[/chroot]``."""

    def __init__(
        self,
        hosts: str,
        *,
        timeout: float = 15.0,
        session_timeout: float = 10.0,
        keep_revisions: int = 10_000,
        trim_every: int = 500,
        randomize_hosts: bool = True,
    ) -> None:
        if keep_revisions < 1 or trim_every < 1:
            raise InvalidInput("keep_revisions and trim_every must be >= 1", field="store")
        self.hosts, self.chroot = parse_hosts(hosts)
        self.timeout = timeout
        self.keep_revisions = keep_revisions
        self.trim_every = trim_every
        self._objects = f"{self.chroot}/objects"
        self._log = f"{self.chroot}/log"
        self._floor = f"{self.chroot}/meta/floor"
        self._kinds: set[str] = set()
        self._commits = 0
        self._lock = threading.Lock()
        self._watches: list[_ZkWatch] = []
        self._closed = False
        self._client = KazooClient(
            hosts=self.hosts,
            timeout=session_timeout,
            randomize_hosts=randomize_hosts,
            connection_retry={
                "max_tries": -1,
                "delay": 0.05,
                "backoff": 1.5,
                "max_delay": 1.0,
                "max_jitter": 0.1,
            },
        )
        try:
            self._client.start(timeout=timeout)
        except Exception as exc:  # KazooTimeoutError, socket errors
            self._client.close()
            raise StoreError(f"cannot reach zookeeper at {self.hosts}: {exc}") from exc
        try:
            self._call(self._client.ensure_path, self._objects)
            self._call(self._client.ensure_path, self._log)
            if self._call(self._client.exists, self._floor) is None:
                with contextlib.suppress(NodeExistsError):
                    self._call(self._client.create, self._floor, b"0", makepath=True)
        except BaseException:
            self._client.stop()
            self._client.close()
            raise

    # -- plumbing ------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an idempotent kazoo call, retrying through connection loss until ``timeout``;
        anything else kazoo raises becomes StoreError (NoNode is the caller's business)."""
        if self._closed:
            raise StoreError(f"zookeeper store {self.hosts}{self.chroot} is closed")
        retry = KazooRetry(
            max_tries=-1,
            delay=0.05,
            backoff=1.5,
            max_delay=0.5,
            max_jitter=0.05,
            deadline=self.timeout,
            ignore_expire=True,
            interrupt=lambda: self._closed,
        )
        try:
            result: T = retry(fn, *args, **kwargs)
            return result
        except (NoNodeError, NodeExistsError):
            raise
        except _TRANSIENT as exc:
            raise StoreError(f"zookeeper {self.hosts}: {type(exc).__name__} {exc}") from exc

    def _path(self, kind: str, id: str) -> str:
        return f"{self._objects}/{kind}/{id}"

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> Item | None:
        _check_name("kind", kind)
        _check_name("id", id)
        try:
            data, stat = self._call(self._client.get, self._path(kind, id))
        except NoNodeError:
            return None
        return Item(kind, id, stat.version + 1, json.loads(data))

    def list(self, kind: str) -> builtins.list[Item]:
        _check_name("kind", kind)
        try:
            ids = self._call(self._client.get_children, f"{self._objects}/{kind}")
        except NoNodeError:
            return []

        def fetch() -> builtins.list[Item]:
            asyncs = [(i, self._client.get_async(self._path(kind, i))) for i in sorted(ids)]
            out = []
            for i, a in asyncs:
                try:
                    data, stat = a.get()
                except NoNodeError:  # deleted since the listing
                    continue
                out.append(Item(kind, i, stat.version + 1, json.loads(data)))
            return out

        return self._call(fetch)

    def revision(self) -> int:
        names = self._call(self._client.get_children, self._log)
        if names:
            return max(_revision_of(n) for n in names)
        return self._read_floor()

    def _read_floor(self) -> int:
        data, _ = self._call(self._client.get, self._floor)
        return int(data)

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        """Whole commits after ``since``, oldest first: at most ``limit`` changes unless one
        commit alone has more (a commit is never split)."""
        return self._changes(since, limit)

    def _changes(
        self, since: int, limit: int, watch: Callable[[Any], None] | None = None
    ) -> builtins.list[Change]:
        # list first, floor second: a trim that removed entries we need after the listing
        # has raised the floor by the time we read it (see Compacted below)
        names = self._call(self._client.get_children, self._log, watch=watch)
        floor = self._read_floor()
        if since < floor:
            raise Compacted(f"revision {since} is older than the kept change log (from {floor})")
        pending = sorted((r, n) for n in names if (r := _revision_of(n)) > since)
        out: builtins.list[Change] = []
        while pending and len(out) < limit:
            # entries hold >= 0 changes each: fetch about as many as the limit still needs
            size = max(1, min(256, limit - len(out)))
            chunk, pending = pending[:size], pending[size:]
            for rev, entries in self._fetch_log(chunk, since):
                out.extend(Change(rev, e[0], e[1], e[2], e[3], e[4]) for e in entries)
                if len(out) >= limit:
                    break
        return out

    def _fetch_log(
        self, chunk: builtins.list[tuple[int, str]], since: int
    ) -> builtins.list[tuple[int, builtins.list[Any]]]:
        def fetch() -> builtins.list[tuple[int, builtins.list[Any]]]:
            asyncs = [(r, self._client.get_async(f"{self._log}/{n}")) for r, n in chunk]
            return [(r, json.loads(a.get()[0])) for r, a in asyncs]

        try:
            return self._call(fetch)
        except NoNodeError as exc:  # trimmed while we read: we were below the new floor
            raise Compacted(f"revision {since} was trimmed from the change log") from exc

    # -- writes --------------------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        ops = list(ops)
        for op in ops:
            _check_name("kind", op.kind)
            _check_name("id", op.id)
        self._ensure_kinds({op.kind for op in ops})
        token = uuid.uuid4().hex[:12]
        deadline = time.monotonic() + self.timeout
        synced = False
        while True:
            try:
                txn, changes = self._plan(ops)
            except (Conflict, NotFound):
                if synced:
                    raise
                self._call(self._client.sync, self.chroot)  # rule out a lagging follower
                synced = True
                continue
            rev = self._try_commit(txn, changes, token)
            if rev is not None:
                self._after_commit()
                return rev
            if time.monotonic() > deadline:
                raise StoreError(f"zookeeper commit gave up after {self.timeout}s of contention")
            synced = False

    def _ensure_kinds(self, kinds: set[str]) -> None:
        for kind in kinds - self._kinds:
            self._call(self._client.ensure_path, f"{self._objects}/{kind}")
            self._kinds.add(kind)

    def _versions(self, ops: Sequence[Op]) -> dict[tuple[str, str], int | None]:
        """Current znode version of every object the ops touch (None: absent), pipelined."""

        def fetch() -> dict[tuple[str, str], int | None]:
            keys = list(dict.fromkeys((op.kind, op.id) for op in ops))
            asyncs = [(k, self._client.exists_async(self._path(*k))) for k in keys]
            out: dict[tuple[str, str], int | None] = {}
            for k, a in asyncs:
                stat = a.get()
                out[k] = None if stat is None else stat.version
            return out

        return self._call(fetch)

    def _plan(self, ops: Sequence[Op]) -> tuple[Any, builtins.list[builtins.list[Any]]]:
        """Check the caller's conditions against current versions (netloom errors) and build
        the multi that applies them only if nothing changed meanwhile."""
        current = self._versions(ops)
        txn = self._client.transaction()
        changes: builtins.list[builtins.list[Any]] = []
        size = 0
        for op in ops:
            key = (op.kind, op.id)
            zv = current[key]
            path = self._path(*key)
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

    def _try_commit(
        self, txn: Any, changes: builtins.list[builtins.list[Any]], token: str
    ) -> int | None:
        """Run the multi; the revision, or None when a concurrent write beat our plan."""
        txn.create(
            f"{self._log}/{token}-",
            json.dumps(changes, separators=(",", ":")).encode(),
            sequence=True,
        )
        try:
            results = txn.commit()
        except _TRANSIENT as lost:
            try:
                return self._outcome(token)
            except StoreError as exc:
                raise StoreError(
                    f"zookeeper connection lost during a commit and not regained: the commit "
                    f"(log token {token}) may or may not have been applied ({exc.message})"
                ) from lost
        failures = [r for r in results if isinstance(r, Exception)]
        if not failures:
            return _revision_of(results[-1])
        cause = next((r for r in failures if not isinstance(r, RolledBackError)), failures[0])
        if isinstance(cause, BadVersionError | NodeExistsError | NoNodeError | RolledBackError):
            return None  # raced with another writer: re-plan
        raise StoreError(f"zookeeper commit failed: {type(cause).__name__} {cause}")

    def _outcome(self, token: str) -> int | None:
        """After connection loss mid-commit: did the multi happen? Look for our log node once
        reconnected and synced (a moved session's stale requests can no longer apply)."""
        self._call(self._client.sync, self._log)
        names = self._call(self._client.get_children, self._log)
        for n in names:
            if n.startswith(token + "-"):
                return _revision_of(n)
        return None

    def _after_commit(self) -> None:
        with self._lock:
            self._commits += 1
            due = self._commits % self.trim_every == 0
        if due:
            try:
                self.compact()
            except StoreError as exc:  # trimming is housekeeping: the next one retries
                log.warning("zookeeper log trim failed: %s", exc)

    def compact(self, keep_revisions: int | None = None) -> int:
        """Delete all but the newest ``keep_revisions`` log nodes (default: the store's); the
        floor is raised in the same multi as each batch of deletes. Returns the floor."""
        keep = max(self.keep_revisions if keep_revisions is None else keep_revisions, 0)
        names = sorted(self._call(self._client.get_children, self._log), key=_revision_of)
        victims = names[: max(len(names) - keep, 0)]
        for start in range(0, len(victims), 500):
            batch = victims[start : start + 500]
            data, stat = self._call(self._client.get, self._floor)
            floor = max(int(data), _revision_of(batch[-1]))
            txn = self._client.transaction()
            txn.set_data(self._floor, str(floor).encode(), version=stat.version)
            for n in batch:
                txn.delete(f"{self._log}/{n}")
            try:
                results = txn.commit()  # a transaction object commits once: no retry helper
            except _TRANSIENT as exc:
                raise StoreError(f"zookeeper log trim: {type(exc).__name__} {exc}") from exc
            if any(isinstance(r, Exception) for r in results):
                break  # another client is trimming the same entries
        return self._read_floor()

    # -- watches -------------------------------------------------------------------------

    def watch(self, since: int, callback: ChangeCallback) -> _ZkWatch:
        """Start delivering changes after ``since``; raises Compacted right away if the log no
        longer reaches back to ``since``."""
        self._changes(since, 1)
        w = _ZkWatch(self, since, callback)
        with self._lock:
            self._watches.append(w)
        return w

    @property
    def connected(self) -> bool:
        return bool(self._client.state == KazooState.CONNECTED)

    @property
    def server(self) -> str | None:
        """``host:port`` of the member this client is talking to now (diagnostics; kazoo has
        no public accessor, so this peeks at its connection and may return None)."""
        sock = getattr(getattr(self._client, "_connection", None), "_socket", None)
        try:
            host, port = sock.getpeername()[:2] if sock is not None else (None, None)
        except OSError:
            return None
        return None if host is None else f"{host}:{port}"

    def close(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for w in watches:
            w.cancel()
        self._closed = True
        self._client.stop()
        self._client.close()


__all__ = ["ZooKeeperStore", "parse_hosts"]
