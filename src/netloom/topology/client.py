"""Agent side of the topology service: a cache of exactly what this agent asked for.

The agent never talks to the NSDB. It asks the topology service for objects (``get``: one
object by id) or kind-wide filters (``watch_field``: e.g. the ports bound to this host), gets a
snapshot, then deltas. Memory follows the agent's interest, not the cloud's size.

Failures are the normal case: the client reconnects with exponential backoff (capped, with
jitter so a thousand agents do not reconnect in step after a cluster restart) and resumes from
the last complete revision it applied, sending what it holds so the server can send only what
changed (see :mod:`netloom.topology.protocol`). Heartbeats every ``heartbeat_s`` (the server's
host timeout / 3) keep the host marked alive and detect a silent server (no frame for three
heartbeats: reconnect).

Several cluster processes: given a list of endpoints, the client moves to the next one when its
server goes (lost, refused, connect timed out); revisions are the store's, so any server resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from netloom import errors
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.model.neighbors import ArpEntry
from netloom.topology.endpoints import Address, endpoints, first_endpoint
from netloom.topology.protocol import (
    Arp,
    Batch,
    Error,
    FilterKey,
    FrameProtocol,
    Hello,
    Key,
    Lease,
    Leased,
    Obj,
    Ping,
    Pong,
    Routes,
    Scalar,
    ServerMsg,
    Snap,
    Status,
    Sub,
    Unsub,
    Welcome,
    Wired,
    client_decoder,
    frame,
    matches,
)
from netloom.topology.reports import Reporter
from netloom.topology.timings import ClientTimings

log = logging.getLogger(__name__)

Listener = Callable[[str, str, dict[str, Any] | None, int], None]

_DECODER = client_decoder()  # stateless: shared by every client of the process
_ERRORS: dict[str, type[errors.NetloomError]] = {
    cls.code: cls
    for cls in (getattr(errors, name) for name in errors.__all__)
    if isinstance(cls, type) and issubclass(cls, errors.NetloomError)
}


class TopologyClient:
    """Subscribes to topology objects on a :class:`~netloom.topology.server.TopologyServer`."""

    def __init__(
        self,
        host_id: str,
        address: Address | Sequence[Address],
        *,
        backoff_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 1.0,
    ) -> None:
        if not host_id:
            raise errors.InvalidInput("host_id must not be empty", field="host_id")
        self.host_id = host_id
        self.endpoints = endpoints(address)
        self._at = first_endpoint(host_id, len(self.endpoints))
        self.address = self.endpoints[self._at]  # the endpoint in use (or tried next)
        self._connect_timeout = connect_timeout_s
        self._backoff = backoff_s
        self._backoff_max = backoff_max_s
        self._cache: dict[Key, tuple[int, dict[str, Any]]] = {}
        self._objects: set[Key] = set()  # acknowledged subscriptions
        self._filters: set[FilterKey] = set()
        self._pending: dict[int, tuple[Sub, asyncio.Future[None]]] = {}
        self._pending_by_sub: dict[tuple[str, str | None, str | None, Scalar], int] = {}
        self._next_req = 1
        self._listeners: list[Listener] = []
        self._revision: int | None = None
        self._proto: FrameProtocol | None = None
        self._lost: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._stopping = False
        self.connects = 0
        self.resume_modes: list[str] = []
        self.applied = 0  # changes applied from Batch frames (not snapshots)
        self.timings = ClientTimings()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reporter = Reporter(self._send_report)
        self._flush_due = False
        self._leases: dict[int, tuple[Lease, asyncio.Future[tuple[int, int]]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see :meth:`wait_connected`)."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"topology-{self.host_id}")

    async def stop(self) -> None:
        """Disconnect for good; pending requests fail with CancelledError."""
        self._stopping = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._stop_heartbeat()
        for _, fut in self._pending.values():
            fut.cancel()
        for _, lease in self._leases.values():
            lease.cancel()
        self._leases.clear()
        self._pending.clear()
        self._pending_by_sub.clear()
        self.timings.forget()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def revision(self) -> int | None:
        """The store revision up to which this cache is complete (None before any)."""
        return self._revision

    # -- queries -----------------------------------------------------------------------------

    async def get(self, kind: str, id: str) -> dict[str, Any] | None:
        """The object, subscribing on first use (waits for its snapshot); then from cache."""
        if (kind, id) not in self._objects:
            await self._subscribe(kind, id, None, None)
        return self.cached(kind, id)

    async def watch_field(self, kind: str, field: str, value: Scalar) -> dict[str, dict[str, Any]]:
        """Subscribe to every ``kind`` object whose ``field`` equals ``value``; return them."""
        if (kind, field, value) not in self._filters:
            await self._subscribe(kind, None, field, value)
        return {
            i: d for (k, i), (_, d) in self._cache.items() if k == kind and matches(d, field, value)
        }

    def unsubscribe(self, kind: str, id: str) -> None:
        """Stop following one object (kept if a filter still matches it)."""
        self._cancel_pending((kind, id, None, None))
        self._objects.discard((kind, id))
        self._drop_unwanted(kind)
        self._send(Unsub(kind, id))

    def unwatch_field(self, kind: str, field: str, value: Scalar) -> None:
        """Stop a kind-wide filter; objects no longer of interest leave the cache."""
        self._cancel_pending((kind, None, field, value))
        self._filters.discard((kind, field, value))
        self._drop_unwanted(kind)
        self._send(Unsub(kind, None, field, value))

    def cached(self, kind: str, id: str) -> dict[str, Any] | None:
        """The cached object (no I/O); None if absent or not subscribed."""
        hit = self._cache.get((kind, id))
        return hit[1] if hit else None

    def cached_count(self) -> int:
        return len(self._cache)

    def add_listener(self, cb: Listener) -> None:
        """``cb(kind, id, data_or_None, revision)`` after each applied change."""
        self._listeners.append(cb)

    # -- reports -----------------------------------------------------------------------------

    def report_learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        """Report the full set of routes learned on uplink ``port_id`` of this host (replacing
        the last set). Never blocks: the latest set per port is sent when connected, and again
        after a reconnect. Safe to call from another thread."""
        msg = Routes(port_id, [(r.dst, r.next_hop, r.peer_id) for r in routes])
        self._post(("routes", port_id), msg)

    def report_peer_status(self, status: PeerStatus) -> None:
        """Report a BGP session's state (the latest per peer is sent, as for routes)."""
        s = status
        msg = Status(s.peer_id, s.port_id, SessionState(s.state).value, s.since, s.routes, s.bfd_up)
        self._post(("status", status.peer_id), msg)

    def report_arp(self, entry: ArpEntry) -> None:
        """Report an ARP entry learned on uplink ``entry.port_id`` of this host (the latest per
        router and address is sent, as for routes)."""
        msg = Arp(entry.router_id, entry.ip, entry.mac, entry.port_id, entry.expires)
        self._post(("arp", entry.id), msg)

    def report_wired(self, port_id: str, *, up: bool) -> None:
        """Report that bound port ``port_id``'s interface is plugged into the datapath (``up``)
        or not (the latest per port is sent, as for routes)."""
        self._post(("wired", port_id), Wired(port_id, up))

    async def lease_snat_block(self, device_id: str, ip: str) -> tuple[int, int]:
        """Lease a SNAT port block of (router ``device_id``, NAT address ``ip``) for this host
        from the cluster: ``(first port, last port)``, held by no other host."""
        req = self._next_req
        self._next_req += 1
        lease = Lease(req, device_id, ip)
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._leases[req] = (lease, fut)
        self._send(lease)
        try:
            return await fut
        finally:
            self._leases.pop(req, None)

    def send_frame(self, data: bytes) -> bool:
        """Send an encoded frame (:func:`~netloom.topology.protocol.frame_of`) if connected,
        from the client's loop; False: not sent, nothing kept."""
        if self._proto is None or self._proto.transport is None:
            return False
        self._proto.send(data)
        return True

    @property
    def reports_sent(self) -> int:
        return self._reporter.sent

    def _post(self, key: tuple[str, str], msg: Routes | Status | Arp | Wired) -> None:
        loop = self._loop if self._loop is not None and not self._loop.is_closed() else None
        if loop is not None and not _on_loop(loop):
            loop.call_soon_threadsafe(self._post, key, msg)
            return
        self._reporter.put(key, msg)  # sent on the next (re)connect at the latest
        if loop is not None and not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush_reports)

    def _flush_reports(self) -> None:
        self._flush_due = False
        self._reporter.flush()

    def _send_report(self, msg: msgspec.Struct) -> bool:
        return self.send_frame(frame(msg))

    def _on_leased(self, msg: Leased) -> None:
        entry = self._leases.get(msg.req)
        if entry is not None and not entry[1].done():
            entry[1].set_result((msg.start, msg.end))

    # -- subscriptions -----------------------------------------------------------------------

    async def _subscribe(self, kind: str, id: str | None, field: str | None, value: Scalar) -> None:
        ident = (kind, id, field, value)
        req = self._pending_by_sub.get(ident)
        if req is None:
            req = self._next_req
            self._next_req += 1
            sub = Sub(req, kind, id, field, value)
            self._pending[req] = (sub, asyncio.get_running_loop().create_future())
            self._pending_by_sub[ident] = req
            self.timings.sent(req)
            self._send(sub)
        await asyncio.shield(self._pending[req][1])

    def _cancel_pending(self, ident: tuple[str, str | None, str | None, Scalar]) -> None:
        req = self._pending_by_sub.pop(ident, None)
        if req is not None:
            _, fut = self._pending.pop(req)
            self.timings.forget(req)
            fut.cancel()

    def _wants(self, kind: str, id: str, data: dict[str, Any]) -> bool:
        return (kind, id) in self._objects or any(
            matches(data, f, v) for k, f, v in self._filters if k == kind
        )

    def _drop_unwanted(self, kind: str) -> None:
        for key in [k for k in self._cache if k[0] == kind]:
            if not self._wants(kind, key[1], self._cache[key][1]):
                del self._cache[key]

    # -- connection --------------------------------------------------------------------------

    def _send(self, msg: Hello | Sub | Unsub | Ping | Lease) -> None:
        if self._proto is not None:
            self._proto.send(frame(msg))

    async def _run(self) -> None:
        delay = self._backoff
        failed = 0  # connects failed in a row
        while not self._stopping:
            try:
                proto = await self._connect()
            except (OSError, TimeoutError) as exc:
                log.debug("topology %s: connect to %s failed: %s", self.host_id, self.address, exc)
                failed += 1
                self._next_endpoint()
                if failed % len(self.endpoints) == 0:  # every endpoint tried: back off
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self._backoff_max)
                continue
            failed = 0
            await self._session(proto)
            if self._connected.is_set():
                delay = self._backoff  # it worked for a while: start over
            self._connected.clear()
            self._proto = None
            self._stop_heartbeat()
            self.timings.lost()
            if self._stopping:
                break
            if len(self.endpoints) > 1:
                self._next_endpoint()  # its server is likely gone: try another at once
                failed = 1
            else:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._backoff_max)

    async def _connect(self) -> FrameProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: FrameProtocol(_DECODER, self._on_message, self._on_lost), *self.address
            ),
            self._connect_timeout,
        )
        return proto

    async def _session(self, proto: FrameProtocol) -> None:
        """Say hello, send what is pending, and wait until the connection is lost."""
        self._lost = asyncio.get_running_loop().create_future()
        self._proto = proto
        self._last_rx = time.monotonic()
        self.connects += 1
        self._send(self._hello())
        for sub, _ in list(self._pending.values()):
            self._send(sub)
        for lease, _ in list(self._leases.values()):
            self._send(lease)
        self._reporter.resend()
        await self._lost

    def _next_endpoint(self) -> None:
        if len(self.endpoints) > 1:
            self._at = (self._at + 1) % len(self.endpoints)
            self.address = self.endpoints[self._at]

    def _hello(self) -> Hello:
        return Hello(
            self.host_id,
            self._revision,
            sorted(self._objects),
            sorted(self._filters, key=repr),
            [(k, i, v) for (k, i), (v, _) in self._cache.items()],
        )

    def _on_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _start_heartbeat(self, period: float) -> None:
        self._stop_heartbeat()
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if self._proto is None or self._proto.transport is None:
                return
            if time.monotonic() - self._last_rx > 3 * period:
                log.warning("topology %s: server silent, reconnecting", self.host_id)
                self._proto.transport.abort()
                return
            self._send(Ping())
            self._beat = loop.call_later(period, beat)

        self._beat = loop.call_later(period, beat)

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None

    # -- frames from the server --------------------------------------------------------------

    def _on_message(self, msg: ServerMsg) -> None:
        self._last_rx = time.monotonic()
        if isinstance(msg, Batch):
            self._apply(msg.rev, msg.changes, count=True)
            self._revision = msg.rev
        elif isinstance(msg, Pong):
            self._revision = msg.rev
        elif isinstance(msg, Snap):
            self._on_snap(msg)
        elif isinstance(msg, Welcome):
            self.resume_modes.append(msg.mode)
            self.timings.welcomed()
            self._start_heartbeat(msg.heartbeat_s)
            self._connected.set()
        elif isinstance(msg, Leased):
            self._on_leased(msg)
        elif isinstance(msg, Error):
            self._on_error(msg)

    def _on_snap(self, msg: Snap) -> None:
        entry = self._pending.pop(msg.req, None)
        if entry is None:
            return  # cancelled by an unsubscribe sent after it
        sub, fut = entry
        self._pending_by_sub.pop((sub.kind, sub.id, sub.field, sub.value), None)
        self.timings.answered(msg.req)
        if sub.id is not None:
            self._objects.add((sub.kind, sub.id))
        else:
            assert sub.field is not None
            self._filters.add((sub.kind, sub.field, sub.value))
        self._apply(msg.rev, msg.items, count=False)
        self._revision = msg.rev
        if not fut.done():
            fut.set_result(None)

    def _on_error(self, msg: Error) -> None:
        cls = _ERRORS.get(msg.code, errors.NetloomError)
        exc = cls(msg.message, field=msg.field)
        lease = self._leases.get(msg.req)
        if lease is not None:
            if not lease[1].done():
                lease[1].set_exception(exc)
            return
        entry = self._pending.pop(msg.req, None)
        if entry is None:
            log.error("topology %s: server error: %s", self.host_id, msg.message)
            return
        sub, fut = entry
        self._pending_by_sub.pop((sub.kind, sub.id, sub.field, sub.value), None)
        self.timings.forget(msg.req)
        if not fut.done():
            fut.set_exception(exc)

    def _apply(self, rev: int, changes: list[Obj], *, count: bool) -> None:
        for kind, id, version, data in changes:
            key = (kind, id)
            if data is None:
                if self._cache.pop(key, None) is None:
                    continue
            else:
                old = self._cache.get(key)
                if old is not None and old[0] == version:
                    continue  # a snapshot repeating what we hold
                self._cache[key] = (version, data)
            if count:
                self.applied += 1
            for cb in self._listeners:
                try:
                    cb(kind, id, data, rev)
                except Exception:
                    log.exception("topology listener failed")

    async def __aenter__(self) -> TopologyClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


__all__ = ["Listener", "TopologyClient"]
