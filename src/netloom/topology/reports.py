"""Reports from agents to the cluster: what a gateway learned and its sessions' states, which
bound ports have their interface plugged, and the SNAT port blocks a host leases (see
:mod:`netloom.topology.protocol`).

Both ends coalesce: an agent keeps the *latest* report per key (an uplink's route set, a peer's
status) and sends it when connected, again after every reconnect (reports are full states, so
resending is harmless); the server queues the latest job per key and runs them in order on one
worker thread, so a burst of route changes costs one store write per uplink, never one per
change, and the event loop never waits on the store.

The cluster side that writes the store is a :class:`ReportSink` handed to the server (the
object service's, a higher layer); a server without one refuses reports.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Protocol

import msgspec

from netloom.errors import InvalidInput, NetloomError
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.model.neighbors import ArpEntry
from netloom.model.simlog import SimEntry
from netloom.topology.protocol import Arp, Routes, Status

log = logging.getLogger(__name__)

__all__ = ["InsightsSink", "ReportQueue", "ReportSink", "Reporter", "report_job"]


class ReportSink(Protocol):
    """Where the cluster keeps what agents report. Each method runs on the report worker
    thread; it raises a :class:`~netloom.errors.NetloomError` to refuse a report."""

    def learned_routes(self, host_id: str, port_id: str, routes: Sequence[LearnedRoute]) -> int:
        """Make ``routes`` the set learned on uplink ``port_id`` of ``host_id``; the number
        of routes written or deleted."""
        ...

    def peer_status(self, host_id: str, status: PeerStatus) -> None: ...

    def arp_entry(self, host_id: str, entry: ArpEntry) -> None:
        """Keep an ARP entry learned on an uplink of ``host_id`` for every agent."""
        ...

    def hosts_gone(self, host_ids: set[str], uplinks: set[str]) -> None:
        """Remove what the hosts learned on their ``uplinks`` (router ports bound to them) and
        the ARP entries they shared; their sessions are down. Their SNAT blocks stay theirs."""
        ...

    def hosts_down(self, host_ids: set[str], uplinks: set[str]) -> None:
        """As :meth:`hosts_gone`, and the dead hosts' SNAT blocks are free again."""
        ...

    def port_wired(self, host_id: str, port_id: str, *, up: bool) -> None:
        """The interface of ``port_id``, bound to ``host_id``, is plugged (``up``) or not."""
        ...

    def lease_snat_block(self, host_id: str, device_id: str, ip: str) -> tuple[int, int]:
        """A port block of (device, NAT address) no other host holds, leased to ``host_id``."""
        ...


class InsightsSink(Protocol):
    """Where the cluster keeps what agents saw (runs on the report worker thread)."""

    def add(self, host_id: str, entries: Sequence[SimEntry]) -> int:
        """Append simulation-log entries of ``host_id``; how many were kept."""
        ...


Job = Callable[[], object]
OnError = Callable[[NetloomError], None]


def report_job(sink: ReportSink, host: str, msg: Routes | Status | Arp) -> tuple[Hashable, Job]:
    """The queue key (the latest per key is kept) and the store job of a report of ``host``;
    InvalidInput for a session state this cluster does not know."""
    if isinstance(msg, Arp):
        entry = ArpEntry(msg.router, msg.ip, msg.mac, msg.port, msg.expires)
        return ("arp", host, entry.id), partial(sink.arp_entry, host, entry)
    if isinstance(msg, Routes):
        routes = [LearnedRoute(d, nh, p) for d, nh, p in msg.routes]
        return ("routes", host, msg.port), partial(sink.learned_routes, host, msg.port, routes)
    try:
        state = SessionState(msg.state)
    except ValueError:
        raise InvalidInput(f"unknown session state {msg.state!r}", field="state") from None
    status = PeerStatus(msg.peer, msg.port, state, msg.since, msg.routes, msg.bfd_up)
    return ("status", host, msg.peer), partial(sink.peer_status, host, status)


class ReportQueue:
    """The server's queue of report jobs: the latest per key, run in order on one thread."""

    def __init__(self) -> None:
        self._pending: collections.OrderedDict[Hashable, tuple[Job, OnError | None]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self._running = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="topology-reports")
        self.done = 0  # jobs run (tests wait on it)

    def submit(self, key: Hashable, job: Job, on_error: OnError | None = None) -> None:
        """Queue ``job``, replacing a pending job of the same key (it moves to the end)."""
        with self._lock:
            self._pending.pop(key, None)
            self._pending[key] = (job, on_error)
            if not self._running:
                self._running = True
                self._pool.submit(self._drain)

    def drop(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget the pending jobs whose key ``keep`` refuses (a dead host's reports)."""
        with self._lock:
            for key in [k for k in self._pending if not keep(k)]:
                del self._pending[key]

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._running = False
                    return
                _, (job, on_error) = self._pending.popitem(last=False)
            try:
                job()
            except NetloomError as exc:
                log.warning("report refused: %s", exc.message)
                if on_error is not None:
                    on_error(exc)
            except Exception:
                log.exception("report failed")
            self.done += 1

    def shutdown(self) -> None:
        """Run what is queued, then stop (blocking: run it in an executor)."""
        self._pool.shutdown(wait=True)


class Reporter:
    """The agent's side: the latest report per key, sent when connected and after every
    reconnect. Touched from the event loop only (the client hops threads before)."""

    def __init__(self, send: Callable[[msgspec.Struct], bool]) -> None:
        self._send = send  # False: not connected, keep it for later
        self._latest: collections.OrderedDict[Hashable, msgspec.Struct] = collections.OrderedDict()
        self._dirty: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
        self.sent = 0

    def put(self, key: Hashable, msg: msgspec.Struct) -> None:
        self._latest.pop(key, None)
        self._latest[key] = msg
        self._dirty.pop(key, None)
        self._dirty[key] = None

    def flush(self) -> None:
        """Send what changed since the last flush (kept while disconnected)."""
        while self._dirty:
            key = next(iter(self._dirty))
            if not self._send(self._latest[key]):
                return
            del self._dirty[key]
            self.sent += 1

    def resend(self) -> None:
        """After a (re)connect: every latest report again, in the order they were made."""
        self._dirty = collections.OrderedDict.fromkeys(self._latest)
        self.flush()
