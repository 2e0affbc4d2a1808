"""The topology service: one store watch, many agents (the cluster side of the fan-out).

Why: if every agent watched the NSDB, NSDB load and agent memory would both grow with the
cloud (MidoNet's topology API and Calico's Typha exist for this reason). Here the cluster
process holds exactly ONE :meth:`Store.watch`, keeps an in-memory view of every object, and
streams to each agent only the objects it subscribed to (see :mod:`netloom.topology.protocol`
for the wire protocol and its resume rules).

Threading: the store calls the watch callback from its own thread; the callback only hands the
batch to the event loop (``call_soon_threadsafe``). All server state is touched from the event
loop alone, so it needs no locks. Host liveness writes go to a one-thread executor so they
never block the loop and stay in order (alive, then down, then alive again).

Backpressure: every send is a non-blocking ``transport.write``; a connection whose unsent
buffer exceeds ``max_buffer`` bytes is dropped (the agent reconnects and resumes), so a slow
agent costs memory up to that bound and never delays the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from netloom.errors import InvalidInput, NetloomError, NotFound, VersionConflict
from netloom.model.kinds import KINDS
from netloom.store.base import Change, Item, Put, Store, Watch
from netloom.topology.protocol import (
    Batch,
    ClientMsg,
    Error,
    FrameProtocol,
    Hello,
    Key,
    Obj,
    Ping,
    Pong,
    Scalar,
    Snap,
    Sub,
    Unsub,
    Welcome,
    frame,
    matches,
    server_decoder,
    value_key,
    value_keys,
)

log = logging.getLogger(__name__)

# any return value is ignored: ObjectService.set_host_alive (returns the doc) fits as is
SetHostAlive = Callable[[str, bool], object]


def store_host_alive(store: Store, retries: int = 5) -> SetHostAlive:
    """The default liveness writer: compare-and-set of the ``host`` doc's ``alive`` field.

    CAS (``Put(expect_version=...)``) so a concurrent API edit of the host is never lost; on a
    conflict we re-read and retry. A host without a doc is left alone: the topology service
    reports liveness, it does not create hosts.
    """

    def set_alive(host_id: str, alive: bool) -> None:
        for _ in range(retries):
            item = store.get("host", host_id)
            if item is None or item.data.get("alive") is alive:
                return
            try:
                store.commit(
                    [
                        Put(
                            "host",
                            host_id,
                            {**item.data, "alive": alive},
                            expect_version=item.version,
                        )
                    ]
                )
                return
            except (VersionConflict, NotFound):
                continue
        log.warning("could not set host %s alive=%s after %d conflicts", host_id, alive, retries)

    return set_alive


@dataclass(slots=True)
class _Entry:
    version: int
    data: dict[str, Any]
    mod_rev: int  # revision of the last change (0: loaded before the watch started)


@dataclass(eq=False, slots=True)
class _Conn:
    """One agent connection and its interest. ``view`` is what the agent holds now."""

    proto: FrameProtocol
    host: str | None = None
    objects: set[Key] = field(default_factory=set)
    filters: dict[str, set[tuple[str, Scalar]]] = field(default_factory=dict)
    view: set[Key] = field(default_factory=set)

    def wants(self, kind: str, id: str, data: dict[str, Any] | None) -> bool:
        if data is None:
            return False
        if (kind, id) in self.objects:
            return True
        return any(matches(data, f, v) for f, v in self.filters.get(kind, ()))


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    store_watches: int = 0
    dropped_slow: int = 0
    frames_sent: int = 0
    resumes: collections.Counter[str] = field(default_factory=collections.Counter)


class TopologyServer:
    """Serves the topology to agents over TCP; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        host_timeout_s: float = 5.0,
        set_host_alive: SetHostAlive | None = None,
        kinds: Iterable[str] | None = None,
        history: int = 10_000,
        max_buffer: int = 8 * 1024 * 1024,
        backlog: int = 1024,
    ) -> None:
        if host_timeout_s <= 0:
            raise InvalidInput("host_timeout_s must be > 0", field="host_timeout_s")
        self._store = store
        self._timeout = host_timeout_s
        self._set_alive = set_host_alive or store_host_alive(store)
        self._kinds = frozenset(kinds if kinds is not None else KINDS)
        self._history: collections.deque[tuple[int, list[Obj]]] = collections.deque(maxlen=history)
        self._max_buffer = max_buffer
        self._backlog = backlog  # a rack of agents reconnects at once after a restart
        self._objects: dict[str, dict[str, _Entry]] = {}
        # (kind, field) -> value_key -> ids; built when the first filter on it arrives
        self._index: dict[tuple[str, str], dict[tuple[bool, Any], set[str]]] = {}
        self._by_key: dict[Key, set[_Conn]] = {}
        self._by_filter: dict[tuple[str, str, tuple[bool, Any]], set[_Conn]] = {}
        self._filter_fields: dict[str, collections.Counter[str]] = {}
        self._conns: set[_Conn] = set()
        self._last_seen: dict[str, float] = {}
        self._alive: dict[str, bool] = {}
        self._revision = 0
        self._base = 0  # revision the view was loaded at: history covers (base, revision]
        self._watch: Watch | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._alive_pool = ThreadPoolExecutor(1, thread_name_prefix="topology-alive")
        self.stats = ServerStats()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Load the view, start the one store watch, listen; return the bound port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        rev, items = await loop.run_in_executor(None, self._load)
        self._revision = self._base = rev
        for item in items:
            self._objects.setdefault(item.kind, {})[item.id] = _Entry(item.version, item.data, 0)
        now = time.monotonic()
        for id, entry in self._objects.get("host", {}).items():
            if entry.data.get("alive") is True:  # alive per the store: give it one timeout
                self._alive[id] = True
                self._last_seen[id] = now
        self._watch = await loop.run_in_executor(
            None, self._store.watch, rev, self._on_store_changes
        )
        self.stats.store_watches += 1
        self._server = await loop.create_server(
            self._new_protocol, host, port, backlog=self._backlog
        )
        self._reaper = asyncio.create_task(self._reap_loop())
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, drop every agent (they will resume elsewhere), cancel the watch."""
        loop = asyncio.get_running_loop()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            if conn.proto.transport is not None:
                conn.proto.transport.abort()
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        if self._watch is not None:
            await loop.run_in_executor(None, self._watch.cancel)
            self._watch = None
            self.stats.store_watches -= 1
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await loop.run_in_executor(None, self._alive_pool.shutdown)

    @property
    def revision(self) -> int:
        return self._revision

    def host_alive(self, host_id: str) -> bool:
        """Liveness as this server last decided it (the store copy follows asynchronously)."""
        return self._alive.get(host_id, False)

    def _load(self) -> tuple[int, list[Item]]:
        rev = self._store.revision()
        items = [it for kind in sorted(self._kinds) for it in self._store.list(kind)]
        return rev, items

    # -- store side --------------------------------------------------------------------------

    def _on_store_changes(self, changes: list[Change]) -> None:
        """Watch callback (store thread): hand over to the loop, touch nothing here."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed between check and call
            loop.call_soon_threadsafe(self._apply, changes)

    def _apply(self, changes: list[Change]) -> None:
        start = 0
        while start < len(changes):
            rev = changes[start].revision
            end = start
            while end < len(changes) and changes[end].revision == rev:
                end += 1
            self._apply_revision(rev, changes[start:end])
            start = end

    def _apply_revision(self, rev: int, changes: list[Change]) -> None:
        if rev <= self._revision:
            return  # already in the view (loaded after the watch's start point)
        objs: list[Obj] = []
        for c in changes:
            if self._update_view(c, rev):
                objs.append((c.kind, c.id, c.version, c.data))
        self._revision = rev
        if objs:
            self._history.append((rev, objs))
            self._dispatch(rev, objs)

    def _update_view(self, c: Change, rev: int) -> bool:
        per_kind = self._objects.setdefault(c.kind, {})
        old = per_kind.get(c.id)
        if c.op == "put":
            assert c.data is not None
            if old is not None and old.version >= c.version:
                return False
            per_kind[c.id] = _Entry(c.version, c.data, rev)
        else:
            if old is None:
                return False
            del per_kind[c.id]
        self._reindex(c.kind, c.id, old.data if old else None, c.data)
        return True

    def _reindex(
        self, kind: str, id: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for (k, fld), index in self._index.items():
            if k != kind:
                continue
            for data, add in ((old, False), (new, True)):
                if data is None:
                    continue
                for vk in value_keys(data, fld):
                    if add:
                        index.setdefault(vk, set()).add(id)
                    elif vk in index:
                        index[vk].discard(id)
                        if not index[vk]:
                            del index[vk]

    # -- fan-out -----------------------------------------------------------------------------

    def _candidates(self, kind: str, id: str, data: dict[str, Any] | None) -> set[_Conn]:
        """Connections that may need this change: those holding the object now (it may leave
        their view: ``_by_key`` covers the view) and those whose filters the new data matches
        (it may enter: every element of a list field is looked up)."""
        out = set(self._by_key.get((kind, id), ()))
        fields = self._filter_fields.get(kind)
        if fields and data is not None:
            for fld in fields:
                for vk in value_keys(data, fld):
                    conns = self._by_filter.get((kind, fld, vk))
                    if conns:
                        out |= conns
        return out

    def _changes_for(self, conn: _Conn, obj: Obj) -> Obj | None:
        """What ``conn`` must receive for ``obj`` (and update its view), or None."""
        kind, id, version, data = obj
        key = (kind, id)
        if conn.wants(kind, id, data):
            self._view_add(conn, key)
            return obj
        if key in conn.view:
            self._view_discard(conn, key)
            return (kind, id, version, None) if data is not None else obj
        return None

    def _dispatch(self, rev: int, objs: list[Obj]) -> None:
        per_conn: dict[_Conn, list[Obj]] = {}
        for obj in objs:
            for conn in self._candidates(obj[0], obj[1], obj[3]):
                out = self._changes_for(conn, obj)
                if out is not None:
                    per_conn.setdefault(conn, []).append(out)
        # encode once per distinct content: one change to 1000 agents is one encode
        # (within one revision, (kind, id, removed?) determines the content)
        encoded: dict[tuple[tuple[str, str, bool], ...], bytes] = {}
        for conn, sent in per_conn.items():
            ident = tuple((o[0], o[1], o[3] is None) for o in sent)
            data = encoded.get(ident)
            if data is None:
                data = encoded[ident] = frame(Batch(rev, sent))
            self._send(conn, data)

    def _send(self, conn: _Conn, data: bytes) -> None:
        transport = conn.proto.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self.stats.frames_sent += 1
        if transport.get_write_buffer_size() > self._max_buffer:
            log.warning(
                "agent %s is %d bytes behind: dropping it (it will resume)",
                conn.host,
                transport.get_write_buffer_size(),
            )
            self.stats.dropped_slow += 1
            transport.abort()

    # -- per-connection state ----------------------------------------------------------------

    def _view_add(self, conn: _Conn, key: Key) -> None:
        conn.view.add(key)
        self._by_key.setdefault(key, set()).add(conn)

    def _view_discard(self, conn: _Conn, key: Key) -> None:
        conn.view.discard(key)
        if key not in conn.objects:
            self._unref(conn, key)

    def _unref(self, conn: _Conn, key: Key) -> None:
        conns = self._by_key.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_key[key]

    def _add_object(self, conn: _Conn, key: Key) -> None:
        conn.objects.add(key)
        self._by_key.setdefault(key, set()).add(conn)

    def _add_filter(self, conn: _Conn, kind: str, fld: str, value: Scalar) -> None:
        if (fld, value) in conn.filters.get(kind, ()):
            return
        conn.filters.setdefault(kind, set()).add((fld, value))
        self._by_filter.setdefault((kind, fld, value_key(value)), set()).add(conn)
        self._filter_fields.setdefault(kind, collections.Counter())[fld] += 1
        if (kind, fld) not in self._index:
            index: dict[tuple[bool, Any], set[str]] = {}
            for id, entry in self._objects.get(kind, {}).items():
                for vk in value_keys(entry.data, fld):
                    index.setdefault(vk, set()).add(id)
            self._index[(kind, fld)] = index

    def _remove_filter(self, conn: _Conn, kind: str, fld: str, value: Scalar) -> None:
        subs = conn.filters.get(kind)
        if not subs or (fld, value) not in subs:
            return
        subs.discard((fld, value))
        if not subs:
            del conn.filters[kind]
        fkey = (kind, fld, value_key(value))
        conns = self._by_filter[fkey]
        conns.discard(conn)
        if not conns:
            del self._by_filter[fkey]
        counter = self._filter_fields[kind]
        counter[fld] -= 1
        if counter[fld] <= 0:
            del counter[fld]
        for key in [k for k in conn.view if k[0] == kind]:
            entry = self._objects.get(kind, {}).get(key[1])
            if not conn.wants(kind, key[1], entry.data if entry else None):
                self._view_discard(conn, key)

    def _forget(self, conn: _Conn) -> None:
        for key in conn.view | conn.objects:
            self._unref(conn, key)
        for kind, subs in list(conn.filters.items()):
            for fld, value in list(subs):
                self._remove_filter(conn, kind, fld, value)
        conn.view.clear()
        conn.objects.clear()

    def _matching(self, conn: _Conn) -> dict[Key, _Entry]:
        """Everything ``conn``'s subscriptions match in the current view."""
        out: dict[Key, _Entry] = {}
        for kind, id in conn.objects:
            entry = self._objects.get(kind, {}).get(id)
            if entry is not None:
                out[(kind, id)] = entry
        for kind, subs in conn.filters.items():
            per_kind = self._objects.get(kind, {})
            for fld, value in subs:
                for id in self._index[(kind, fld)].get(value_key(value), ()):
                    entry = per_kind.get(id)
                    if entry is not None and matches(entry.data, fld, value):
                        out[(kind, id)] = entry
        return out

    # -- protocol ----------------------------------------------------------------------------

    def _new_protocol(self) -> FrameProtocol:
        holder: list[_Conn] = []
        proto = FrameProtocol(
            server_decoder(),
            lambda msg: self._on_message(holder[0], msg),
            lambda exc: self._on_lost(holder[0]),
        )
        conn = _Conn(proto)
        holder.append(conn)
        self._conns.add(conn)
        self.stats.connections = len(self._conns)
        return proto

    def _on_lost(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        self.stats.connections = len(self._conns)
        self._forget(conn)

    def _on_message(self, conn: _Conn, msg: ClientMsg) -> None:
        try:
            if isinstance(msg, Hello):
                self._on_hello(conn, msg)
            elif conn.host is None:
                raise InvalidInput("the first frame must be hello")
            elif isinstance(msg, Ping):
                self._heard_from(conn.host)
                self._send(conn, frame(Pong(self._revision)))
            elif isinstance(msg, Sub):
                self._on_sub(conn, msg)
            elif isinstance(msg, Unsub):
                self._on_unsub(conn, msg)
        except NetloomError as exc:
            req = msg.req if isinstance(msg, Sub) else 0
            self._send(conn, frame(Error(req, exc.code, exc.message, exc.field)))
            if not isinstance(msg, Sub | Unsub) and conn.proto.transport is not None:
                conn.proto.transport.close()  # a bad hello leaves nothing to talk about

    def _validate(self, kind: str, id: str | None, fld: str | None, value: Any) -> None:
        if kind not in self._kinds:
            raise InvalidInput(f"unknown kind {kind!r}", field="kind")
        if (id is None) == (fld is None):
            raise InvalidInput("subscribe to an id or to a field filter, not both", field="id")
        if fld is not None:
            spec = KINDS.get(kind)
            if spec is not None and fld not in spec.filters:
                raise InvalidInput(f"{kind} cannot be filtered on {fld!r}", field="field")
            if not isinstance(value, str | int | bool | None):
                raise InvalidInput("filter value must be a scalar", field="value")

    def _on_hello(self, conn: _Conn, msg: Hello) -> None:
        if conn.host is not None:
            raise InvalidInput("hello sent twice")
        if not msg.host:
            raise InvalidInput("hello without host id", field="host")
        for kind, id in msg.objects:
            self._validate(kind, id, None, None)
        for kind, fld, value in msg.filters:
            self._validate(kind, None, fld, value)
        conn.host = msg.host
        self._heard_from(msg.host)
        for kind, id in msg.objects:
            self._add_object(conn, (kind, id))
        for kind, fld, value in msg.filters:
            self._add_filter(conn, kind, fld, value)
        have = {(k, i): v for k, i, v in msg.have}
        mode: Literal["fresh", "history", "diff"]
        if msg.since is None and not msg.objects and not msg.filters:
            mode = "fresh"
        elif msg.since is not None and self._covers(msg.since):
            mode = "history"
        else:
            mode = "diff"
        self.stats.resumes[mode] += 1
        self._send(conn, frame(Welcome(self._revision, self._timeout / 3, mode)))
        if mode == "history":
            assert msg.since is not None
            for key in have:
                self._view_add(conn, key)
            self._replay(conn, msg.since)
        elif mode == "diff":
            self._resync(conn, have)
        self._send(conn, frame(Pong(self._revision)))

    def _covers(self, since: int) -> bool:
        """True when the history holds every change after ``since``."""
        if since > self._revision:
            return False
        full = self._history.maxlen is not None and len(self._history) == self._history.maxlen
        floor = self._history[0][0] - 1 if full and self._history else self._base
        return since >= floor

    def _replay(self, conn: _Conn, since: int) -> None:
        pending: list[tuple[int, list[Obj]]] = []
        for rev, objs in reversed(self._history):
            if rev <= since:
                break
            pending.append((rev, objs))
        for rev, objs in reversed(pending):
            sent = [o for o in (self._changes_for(conn, obj) for obj in objs) if o is not None]
            if sent:
                self._send(conn, frame(Batch(rev, sent)))

    def _resync(self, conn: _Conn, have: dict[Key, int]) -> None:
        target = self._matching(conn)
        ordered = sorted(target.items(), key=lambda kv: kv[1].mod_rev)
        out: list[Obj] = [
            (k, i, e.version, e.data) for (k, i), e in ordered if have.get((k, i)) != e.version
        ]
        out += [(k, i, v, None) for (k, i), v in have.items() if (k, i) not in target]
        for key in target:
            self._view_add(conn, key)
        if out:
            self._send(conn, frame(Batch(self._revision, out)))

    def _on_sub(self, conn: _Conn, msg: Sub) -> None:
        self._validate(msg.kind, msg.id, msg.field, msg.value)
        items: list[Obj] = []
        if msg.id is not None:
            key = (msg.kind, msg.id)
            self._add_object(conn, key)
            entry = self._objects.get(msg.kind, {}).get(msg.id)
            if entry is not None:
                self._view_add(conn, key)
                items.append((msg.kind, msg.id, entry.version, entry.data))
        else:
            assert msg.field is not None
            self._add_filter(conn, msg.kind, msg.field, msg.value)
            per_kind = self._objects.get(msg.kind, {})
            for id in sorted(self._index[(msg.kind, msg.field)].get(value_key(msg.value), ())):
                entry = per_kind[id]
                if matches(entry.data, msg.field, msg.value):
                    self._view_add(conn, (msg.kind, id))
                    items.append((msg.kind, id, entry.version, entry.data))
        self._send(conn, frame(Snap(msg.req, self._revision, items)))

    def _on_unsub(self, conn: _Conn, msg: Unsub) -> None:
        self._validate(msg.kind, msg.id, msg.field, msg.value)
        if msg.id is not None:
            key = (msg.kind, msg.id)
            conn.objects.discard(key)
            entry = self._objects.get(msg.kind, {}).get(msg.id)
            if key in conn.view and conn.wants(msg.kind, msg.id, entry.data if entry else None):
                return  # still matched by a filter: stays in the view
            self._view_discard(conn, key)
            self._unref(conn, key)
        else:
            assert msg.field is not None
            self._remove_filter(conn, msg.kind, msg.field, msg.value)

    # -- liveness ----------------------------------------------------------------------------

    def _heard_from(self, host: str) -> None:
        self._last_seen[host] = time.monotonic()
        if not self._alive.get(host, False):
            self._mark(host, True)

    def _mark(self, host: str, alive: bool) -> None:
        self._alive[host] = alive
        fut = self._alive_pool.submit(self._set_alive, host, alive)
        fut.add_done_callback(self._log_alive_failure)

    @staticmethod
    def _log_alive_failure(fut: Future[object]) -> None:
        exc = fut.exception()
        if exc is not None:
            log.error("writing host liveness failed: %s", exc)

    async def _reap_loop(self) -> None:
        """Mark down every host not heard from for ``host_timeout_s``."""
        period = min(self._timeout / 5, 1.0)
        while True:
            await asyncio.sleep(period)
            deadline = time.monotonic() - self._timeout
            for host, seen in list(self._last_seen.items()):
                if seen < deadline and self._alive.get(host, False):
                    self._mark(host, False)


__all__ = ["ServerStats", "SetHostAlive", "TopologyServer", "store_host_alive"]
