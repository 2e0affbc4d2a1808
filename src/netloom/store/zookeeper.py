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

Modules: ``zk_conn`` (addresses, the client, retrying calls), ``zk_commit`` (the multi),
``zk_log`` (reading and trimming the log, watches); this one is the ``Store`` over them.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence

from kazoo.exceptions import NoNodeError

from netloom.errors import Conflict, InvalidInput, NotFound, StoreError
from netloom.store.base import Change, ChangeCallback, Item, Op
from netloom.store.zk_commit import plan, try_commit
from netloom.store.zk_conn import ZkConnection, check_name
from netloom.store.zk_log import ZkWatch, read_changes, revision_of, trim_log

log = logging.getLogger(__name__)


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
        self.keep_revisions = keep_revisions
        self.trim_every = trim_every
        self._kinds: set[str] = set()
        self._commits = 0
        self._lock = threading.Lock()
        self._watches: list[ZkWatch] = []
        self._zk = ZkConnection(
            hosts, timeout=timeout, session_timeout=session_timeout, randomize_hosts=randomize_hosts
        )
        self.hosts, self.chroot, self.timeout = self._zk.hosts, self._zk.chroot, timeout

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> Item | None:
        check_name("kind", kind)
        check_name("id", id)
        zk = self._zk
        try:
            data, stat = zk.call(zk.client.get, zk.path(kind, id))
        except NoNodeError:
            return None
        return Item(kind, id, stat.version + 1, json.loads(data))

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        """One pipelined round of reads (a plan about to touch many objects)."""
        for kind, id in keys:
            check_name("kind", kind)
            check_name("id", id)
        zk = self._zk

        def fetch() -> builtins.list[Item | None]:
            asyncs = [(k, zk.client.get_async(zk.path(*k))) for k in keys]
            out: builtins.list[Item | None] = []
            for (kind, id), a in asyncs:
                try:
                    data, stat = a.get()
                except NoNodeError:
                    out.append(None)
                    continue
                out.append(Item(kind, id, stat.version + 1, json.loads(data)))
            return out

        return zk.call(fetch)

    def list(self, kind: str) -> builtins.list[Item]:
        check_name("kind", kind)
        zk = self._zk
        try:
            ids = zk.call(zk.client.get_children, f"{zk.objects}/{kind}")
        except NoNodeError:
            return []

        def fetch() -> builtins.list[Item]:
            asyncs = [(i, zk.client.get_async(zk.path(kind, i))) for i in sorted(ids)]
            out = []
            for i, a in asyncs:
                try:
                    data, stat = a.get()
                except NoNodeError:  # deleted since the listing
                    continue
                out.append(Item(kind, i, stat.version + 1, json.loads(data)))
            return out

        return zk.call(fetch)

    def revision(self) -> int:
        names = self._zk.call(self._zk.client.get_children, self._zk.log)
        if names:
            return max(revision_of(n) for n in names)
        return self._zk.read_floor()

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        """Whole commits after ``since``, oldest first: at most ``limit`` changes unless one
        commit alone has more (a commit is never split)."""
        return read_changes(self._zk, since, limit)

    # -- writes --------------------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        ops = list(ops)
        for op in ops:
            check_name("kind", op.kind)
            check_name("id", op.id)
        self._ensure_kinds({op.kind for op in ops})
        token = uuid.uuid4().hex[:12]
        deadline = time.monotonic() + self.timeout
        synced = False
        while True:
            try:
                txn, changes = plan(self._zk, ops)
            except (Conflict, NotFound):
                if synced:
                    raise
                self._zk.call(self._zk.client.sync, self.chroot)  # rule out a lagging follower
                synced = True
                continue
            rev = try_commit(self._zk, txn, changes, token)
            if rev is not None:
                self._after_commit()
                return rev
            if time.monotonic() > deadline:
                raise StoreError(f"zookeeper commit gave up after {self.timeout}s of contention")
            synced = False

    def _ensure_kinds(self, kinds: set[str]) -> None:
        for kind in kinds - self._kinds:
            self._zk.call(self._zk.client.ensure_path, f"{self._zk.objects}/{kind}")
            self._kinds.add(kind)

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
        return trim_log(self._zk, keep)

    # -- watches -------------------------------------------------------------------------

    def watch(self, since: int, callback: ChangeCallback) -> ZkWatch:
        """Start delivering changes after ``since``; raises Compacted right away if the log no
        longer reaches back to ``since``."""
        read_changes(self._zk, since, 1)
        w = ZkWatch(self._zk, since, callback)
        with self._lock:
            self._watches.append(w)
        return w

    @property
    def connected(self) -> bool:
        return self._zk.connected

    @property
    def server(self) -> str | None:
        """``host:port`` of the member this client is talking to now (diagnostics)."""
        return self._zk.server

    def close(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for w in watches:
            w.cancel()
        self._zk.close()


__all__ = ["ZooKeeperStore"]
