"""The topology service: one store watch, many agents (the cluster side of the fan-out).

Why: if every agent watched the NSDB, NSDB load and agent memory would both grow with the
cloud (MidoNet's topology API and Calico's Typha exist for this reason). Here the cluster
process holds exactly ONE :meth:`Store.watch`, keeps an in-memory view of every object, and
streams to each agent only the objects it subscribed to (see :mod:`netloom.topology.protocol`
for the wire protocol and its resume rules).

Threading: the store calls the watch callback from its own thread; the callback only hands the
batch to the event loop (``call_soon_threadsafe``). All server state is touched from the event
loop alone, so it needs no locks. Host liveness lives in :mod:`netloom.topology.liveness`, the
object view and who subscribed to what in :mod:`netloom.topology.subscriptions`.

Backpressure: every send is a non-blocking ``transport.write``; a connection whose unsent
buffer exceeds ``max_buffer`` bytes is dropped (the agent reconnects and resumes), so a slow
agent costs memory up to that bound and never delays the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from netloom.errors import InvalidInput, NetloomError
from netloom.model.kinds import KINDS
from netloom.model.neighbors import ARP_KIND
from netloom.store.base import Change, Item, Store, Watch
from netloom.topology.gate import HelloGate
from netloom.topology.history import History
from netloom.topology.liveness import Liveness, SetHostAlive, store_host_alive
from netloom.topology.members import MEMBER_KIND, Members
from netloom.topology.protocol import (
    Arp,
    Batch,
    ClientMsg,
    Error,
    FrameProtocol,
    Hello,
    Key,
    Lease,
    Leased,
    Obj,
    Ping,
    Pong,
    Routes,
    SimBatch,
    Snap,
    Status,
    Sub,
    Unsub,
    Welcome,
    Wired,
    frame,
    server_decoder,
)
from netloom.topology.reports import InsightsSink, ReportQueue, ReportSink, report_job
from netloom.topology.subscriptions import Conn, Entry, Subscriptions, validate_sub

log = logging.getLogger(__name__)


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
        reports: ReportSink | None = None,
        insights: InsightsSink | None = None,
        member_id: str | None = None,
    ) -> None:
        if host_timeout_s <= 0:
            raise InvalidInput("host_timeout_s must be > 0", field="host_timeout_s")
        self._store = store
        self._timeout = host_timeout_s
        # one of several cluster processes on this store: who holds which host (members.py)
        self._members = Members(store, member_id, host_timeout_s) if member_id else None
        held = self._members.last_held if self._members else None
        alive = set_host_alive or store_host_alive(store)
        self._liveness = Liveness(host_timeout_s, alive, self._on_host_down, held)
        self._sink = reports
        self._insights = insights  # None: simulation-log batches are dropped
        self._batches = 0
        self._reports = ReportQueue()
        # the topology, and the routers' shared ARP entries (model/neighbors.py)
        own = (MEMBER_KIND,) if self._members is not None else ()
        self._kinds = frozenset((*(kinds if kinds is not None else (*KINDS, ARP_KIND)), *own))
        self._history = History(history)
        self._max_buffer = max_buffer
        self._backlog = backlog  # a rack of agents reconnects at once after a restart
        self._subs = Subscriptions()
        self._conns: set[Conn] = set()
        self._gate = HelloGate(self._handle, host_timeout_s)  # hellos ahead of the view
        self._revision = 0
        self._watch: Watch | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self.stats = ServerStats()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Load the view, start the one store watch, listen; return the bound port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        rev, items = await loop.run_in_executor(None, self._load)
        self._revision = self._history.base = rev
        objects = self._subs.objects
        for item in items:
            objects.setdefault(item.kind, {})[item.id] = Entry(item.version, item.data, 0)
        hosts = objects.get("host", {}).items()
        self._liveness.seed(id for id, e in hosts if e.data.get("alive") is True)
        dead = {id for id, e in hosts if e.data.get("alive") is not True}
        if self._sink is not None and dead:  # what dead hosts learned before a restart
            job = partial(self._sink.hosts_down, dead, self._uplinks_of(dead))
            self._reports.submit(("sweep",), job)
        self._watch = await loop.run_in_executor(
            None, self._store.watch, rev, self._on_store_changes
        )
        self.stats.store_watches += 1
        self._server = await loop.create_server(
            self._new_protocol, host, port, backlog=self._backlog
        )
        self._reaper = asyncio.create_task(self._liveness.reap_loop())
        if self._members is not None:
            self._members.load(objects.get(MEMBER_KIND, {}))
            self._beats = asyncio.create_task(self._members.beat_loop())
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, drop every agent (they will resume elsewhere), cancel the watch."""
        loop = asyncio.get_running_loop()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.proto.drop()
        tasks = [t for t in (self._reaper, self._beats) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._members is not None:
            await loop.run_in_executor(None, self._members.leave)
        if self._watch is not None:
            await loop.run_in_executor(None, self._watch.cancel)
            self._watch = None
            self.stats.store_watches -= 1
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await loop.run_in_executor(None, self._liveness.shutdown)
        await loop.run_in_executor(None, self._reports.shutdown)

    @property
    def revision(self) -> int:
        return self._revision

    def host_alive(self, host_id: str) -> bool:
        """Liveness as this server last decided it (the store copy follows asynchronously)."""
        return self._liveness.is_alive(host_id)

    @property
    def reports_done(self) -> int:
        """Report jobs run (written, refused or failed)."""
        return self._reports.done

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
        self._gate.caught_up(self._revision)

    def _apply_revision(self, rev: int, changes: list[Change]) -> None:
        if rev <= self._revision:
            return  # already in the view (loaded after the watch's start point)
        objs: list[Obj] = []
        for c in changes:
            if self._members is not None:  # several cluster processes
                self._members.follow(c, self._liveness)
            if self._subs.update(c, rev):
                objs.append((c.kind, c.id, c.version, c.data))
        self._revision = rev
        if objs:
            self._history.append(rev, objs)
            self._dispatch(rev, objs)

    # -- fan-out -----------------------------------------------------------------------------

    def _dispatch(self, rev: int, objs: list[Obj]) -> None:
        per_conn: dict[Conn, list[Obj]] = {}
        for obj in objs:
            for conn in self._subs.candidates(obj[0], obj[1], obj[3]):
                out = self._subs.changes_for(conn, obj)
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

    def _send(self, conn: Conn, data: bytes) -> None:
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
            conn.proto.drop()

    # -- protocol ----------------------------------------------------------------------------

    def _new_protocol(self) -> FrameProtocol:
        holder: list[Conn] = []
        proto = FrameProtocol(
            server_decoder(),
            lambda msg: self._on_message(holder[0], msg),
            lambda exc: self._on_lost(holder[0]),
        )
        conn = Conn(proto)
        holder.append(conn)
        self._conns.add(conn)
        self.stats.connections = len(self._conns)
        return proto

    def _on_lost(self, conn: Conn) -> None:
        self._gate.forget(conn)
        self._conns.discard(conn)
        self.stats.connections = len(self._conns)
        self._subs.forget(conn)
        host = conn.host
        if host is None:
            return
        elsewhere = self._members is not None and self._members.release(host)
        # the peer closed it; no newer connection (here or at another cluster process): gone
        newer = elsewhere or any(c.host == host for c in self._conns)
        if not conn.proto.closed_here and not newer:
            self._on_host_gone(host)

    def _on_message(self, conn: Conn, msg: ClientMsg) -> None:
        if self._gate.admit(conn, msg, self._revision):
            self._handle(conn, msg)

    def _handle(self, conn: Conn, msg: ClientMsg) -> None:
        try:
            if isinstance(msg, Hello):
                self._on_hello(conn, msg)
            elif conn.host is None:
                raise InvalidInput("the first frame must be hello")
            elif isinstance(msg, Ping):
                self._liveness.heard_from(conn.host)
                self._send(conn, frame(Pong(self._revision)))
            elif isinstance(msg, Sub):
                self._on_sub(conn, msg)
            elif isinstance(msg, Unsub):
                self._on_unsub(conn, msg)
            elif isinstance(msg, SimBatch):
                if self._insights is not None:  # unique key: every batch is kept
                    self._batches += 1
                    job = partial(self._insights.add, conn.host, msg.entries)
                    self._reports.submit(("simlog", conn.host, self._batches), job)
            else:
                self._on_report(conn, conn.host, msg)
        except NetloomError as exc:
            req = msg.req if isinstance(msg, Sub | Lease) else 0
            self._send(conn, frame(Error(req, exc.code, exc.message, exc.field)))
            if isinstance(msg, Hello):
                conn.proto.drop(abort=False)  # a bad hello leaves nothing to talk about

    # -- reports -----------------------------------------------------------------------------

    def _on_report(self, conn: Conn, host: str, msg: Routes | Status | Arp | Wired | Lease) -> None:
        """Check what the view tells at once, queue the store write (the sink checks again)."""
        sink = self._sink
        if sink is None:
            raise InvalidInput("this topology server takes no reports from agents")
        if isinstance(msg, Lease):
            lease = partial(self._lease, conn, host, msg, sink)
            self._reports.submit(("lease", host, msg.req), lease, self._replier(conn, msg.req))
            return
        if isinstance(msg, Wired):  # the sink decides: a late report of a port moved on is moot
            wired = partial(sink.port_wired, host, msg.port, up=msg.up)
            self._reports.submit(("wired", host, msg.port), wired, self._replier(conn, 0))
            return
        self._check_uplink(host, msg.port)
        key, job = report_job(sink, host, msg)
        self._reports.submit(key, job, self._replier(conn, 0))

    def _check_uplink(self, host: str, port_id: str) -> None:
        entry = self._subs.entry("port", port_id)
        bound = entry.data.get("host_id") if entry is not None else None
        if bound != host:
            raise InvalidInput(
                f"port {port_id} is not bound to host {host}: a host reports on its own"
                " uplinks only",
                field="port_id",
            )

    def _lease(self, conn: Conn, host: str, msg: Lease, sink: ReportSink) -> None:
        """(report thread) Lease a block and answer it."""
        start, end = sink.lease_snat_block(host, msg.device, msg.ip)
        self._from_thread(conn, Leased(msg.req, msg.device, msg.ip, start, end))

    def _replier(self, conn: Conn, req: int) -> Callable[[NetloomError], None]:
        def reply(exc: NetloomError) -> None:
            self._from_thread(conn, Error(req, exc.code, exc.message, exc.field))

        return reply

    def _from_thread(self, conn: Conn, msg: Leased | Error) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._send, conn, frame(msg))

    def _on_host_down(self, host: str) -> None:
        """Timeout: what the host learned goes and its SNAT blocks are free; a connection it
        still has is closed, so an agent that was only slow reconnects and reports again."""
        for conn in [c for c in self._conns if c.host == host]:
            conn.proto.drop()
        self._forget(host, "down")

    def _on_host_gone(self, host: str) -> None:
        """The agent closed its connection (its BGP sidecars died with it): what it learned
        goes at once; its SNAT blocks stay for an agent that reconnects."""
        self._forget(host, "gone")

    def _forget(self, host: str, why: Literal["down", "gone"]) -> None:
        """Queue the sink's removal of what ``host`` learned; its queued reports are moot."""
        sink = self._sink
        if sink is not None:
            self._reports.drop(lambda key: not (isinstance(key, tuple) and key[:2] in _moot(host)))
            call = sink.hosts_down if why == "down" else sink.hosts_gone
            self._reports.submit((why, host), partial(call, {host}, self._uplinks_of({host})))

    def _uplinks_of(self, hosts: set[str]) -> set[str]:
        """The router ports bound to ``hosts``, from the view."""
        ports = self._subs.objects.get("port", {})
        return {
            id
            for id, e in ports.items()
            if e.data.get("type") == "router" and e.data.get("host_id") in hosts
        }

    def _on_hello(self, conn: Conn, msg: Hello) -> None:
        if conn.host is not None:
            raise InvalidInput("hello sent twice")
        if not msg.host:
            raise InvalidInput("hello without host id", field="host")
        for kind, id in msg.objects:
            validate_sub(self._kinds, kind, id, None, None)
        for kind, fld, value in msg.filters:
            validate_sub(self._kinds, kind, None, fld, value)
        conn.host = msg.host
        if self._members is not None:
            self._members.hold(msg.host)
        self._liveness.heard_from(msg.host)
        for kind, id in msg.objects:
            self._subs.add_object(conn, (kind, id))
        for kind, fld, value in msg.filters:
            self._subs.add_filter(conn, kind, fld, value)
        have = {(k, i): v for k, i, v in msg.have}
        mode: Literal["fresh", "history", "diff"]
        if msg.since is None and not msg.objects and not msg.filters:
            mode = "fresh"
        elif msg.since is not None and self._history.covers(msg.since, self._revision):
            mode = "history"
        else:
            mode = "diff"
        self.stats.resumes[mode] += 1
        self._send(conn, frame(Welcome(self._revision, self._timeout / 3, mode)))
        if mode == "history":
            assert msg.since is not None
            for key in have:
                self._subs.view_add(conn, key)
            self._replay(conn, msg.since)
        elif mode == "diff":
            self._resync(conn, have)
        self._send(conn, frame(Pong(self._revision)))

    def _replay(self, conn: Conn, since: int) -> None:
        for rev, objs in self._history.after(since):
            sent = [o for o in (self._subs.changes_for(conn, obj) for obj in objs) if o is not None]
            if sent:
                self._send(conn, frame(Batch(rev, sent)))

    def _resync(self, conn: Conn, have: dict[Key, int]) -> None:
        target = self._subs.matching(conn)
        ordered = sorted(target.items(), key=lambda kv: kv[1].mod_rev)
        out: list[Obj] = [
            (k, i, e.version, e.data) for (k, i), e in ordered if have.get((k, i)) != e.version
        ]
        out += [(k, i, v, None) for (k, i), v in have.items() if (k, i) not in target]
        for key in target:
            self._subs.view_add(conn, key)
        if out:
            self._send(conn, frame(Batch(self._revision, out)))

    def _on_sub(self, conn: Conn, msg: Sub) -> None:
        validate_sub(self._kinds, msg.kind, msg.id, msg.field, msg.value)
        items: list[Obj] = []
        if msg.id is not None:
            key = (msg.kind, msg.id)
            self._subs.add_object(conn, key)
            entry = self._subs.entry(msg.kind, msg.id)
            if entry is not None:
                self._subs.view_add(conn, key)
                items.append((msg.kind, msg.id, entry.version, entry.data))
        else:
            assert msg.field is not None
            self._subs.add_filter(conn, msg.kind, msg.field, msg.value)
            for id, entry in self._subs.filtered(msg.kind, msg.field, msg.value):
                self._subs.view_add(conn, (msg.kind, id))
                items.append((msg.kind, id, entry.version, entry.data))
        self._send(conn, frame(Snap(msg.req, self._revision, items)))

    def _on_unsub(self, conn: Conn, msg: Unsub) -> None:
        validate_sub(self._kinds, msg.kind, msg.id, msg.field, msg.value)
        if msg.id is not None:
            key = (msg.kind, msg.id)
            conn.objects.discard(key)
            entry = self._subs.entry(msg.kind, msg.id)
            if key in conn.view and conn.wants(msg.kind, msg.id, entry.data if entry else None):
                return  # still matched by a filter: stays in the view
            self._subs.view_discard(conn, key)
            self._subs.unref(conn, key)
        else:
            assert msg.field is not None
            self._subs.remove_filter(conn, msg.kind, msg.field, msg.value)


def _moot(host: str) -> tuple[tuple[str, str], ...]:
    """The keys of a dead host's queued reports (its leases are still answered)."""
    return (("routes", host), ("status", host), ("arp", host), ("wired", host))


__all__ = ["ServerStats", "TopologyServer"]
