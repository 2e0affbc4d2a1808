"""Which cluster process holds which hosts, when several serve one store.

Each topology server of a shared store keeps one member document, ``_members/<member id>``:
the hosts whose topology connection it holds. It rewrites the document when that set changes
and every ``timeout / 3`` seconds otherwise (a beat). The other servers follow the documents
through their store watch and judge freshness on their own clock: a document whose version has
not changed for ``timeout`` seconds belongs to a dead process (no clock is compared between
machines). A host held by a live member is not down for this process, whoever its agent talks
to; a stale document is deleted after ``_FORGET`` timeouts.

The documents are written from a one-thread executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from netloom.errors import NotFound, StoreError, VersionConflict
from netloom.store.base import Change, Delete, Put, Store
from netloom.topology.liveness import Liveness
from netloom.topology.subscriptions import Entry

log = logging.getLogger(__name__)

MEMBER_KIND = "_members"
_FORGET = 10  # timeouts after which a stale member document is deleted


class Members:
    """This process's member document and what the others' say (touched from the loop only)."""

    def __init__(self, store: Store, member_id: str, timeout_s: float) -> None:
        self.member_id = member_id
        self._store = store
        self._timeout = timeout_s
        self._held: Counter[str] = Counter()  # host -> open connections here
        self._others: dict[str, tuple[float, int, frozenset[str]]] = {}  # id -> seen, ver, hosts
        self._last_held: dict[str, float] = {}
        self._dirty = True
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="topology-members")

    # -- this process ------------------------------------------------------------------------

    def hold(self, host: str) -> None:
        self._held[host] += 1
        if self._held[host] == 1:
            self._dirty = True

    def release(self, host: str) -> bool:
        """A connection of ``host`` closed; True when another live member holds the host."""
        self._held[host] -= 1
        if self._held[host] <= 0:
            del self._held[host]
            self._dirty = True
        return self.held_elsewhere(host)

    def holds(self, host: str) -> bool:
        return host in self._held

    async def beat_loop(self) -> None:
        """Write the document at once when the held set changed, and every timeout / 3."""
        loop = asyncio.get_running_loop()
        period = self._timeout / 3
        last = 0.0
        while True:
            now = time.monotonic()
            if self._dirty or now - last >= period:
                self._dirty = False
                last = now
                hosts = sorted(self._held)
                await loop.run_in_executor(self._pool, self._write, hosts)
                await loop.run_in_executor(self._pool, self._forget_stale, self._stale(now))
            await asyncio.sleep(min(0.05, period))

    def _write(self, hosts: list[str]) -> None:
        try:
            self._store.commit([Put(MEMBER_KIND, self.member_id, {"hosts": hosts})])
        except StoreError as exc:
            log.warning("writing member document %s failed: %s", self.member_id, exc)

    def _stale(self, now: float) -> list[tuple[str, int]]:
        bound = now - _FORGET * self._timeout
        return [(id, ver) for id, (seen, ver, _) in self._others.items() if seen < bound]

    def _forget_stale(self, stale: list[tuple[str, int]]) -> None:
        for id, version in stale:
            try:
                self._store.commit([Delete(MEMBER_KIND, id, expect_version=version)])
            except (VersionConflict, NotFound, StoreError):
                continue

    def leave(self) -> None:
        """Delete this process's document (blocking: run it in an executor)."""
        self._pool.shutdown()
        with contextlib.suppress(NotFound, StoreError):
            self._store.commit([Delete(MEMBER_KIND, self.member_id)])

    # -- the others --------------------------------------------------------------------------

    def follow(self, c: Change, liveness: Liveness) -> None:
        """A change seen by the store watch: a member document, or a host's liveness that
        another process may have decided."""
        if c.kind == MEMBER_KIND:
            self.observe(c.id, c.version, c.data)
        elif c.kind == "host":
            alive = c.data is not None and c.data.get("alive") is True
            liveness.observed(c.id, alive=alive, held_here=self.holds(c.id))

    def load(self, docs: Mapping[str, Entry]) -> None:
        """The member documents as the view was loaded: each gets one timeout to beat."""
        for id, e in docs.items():
            self.observe(id, e.version, e.data)

    def observe(self, id: str, version: int, data: dict[str, Any] | None) -> None:
        """A member document as the store watch (or the initial load) shows it."""
        if id == self.member_id:
            return
        if data is None:
            self._others.pop(id, None)
            return
        hosts = frozenset(str(h) for h in data.get("hosts", ()))
        now = time.monotonic()
        self._others[id] = (now, version, hosts)
        for host in hosts:
            self._last_held[host] = now

    def last_held(self, host: str) -> float | None:
        """When another member last said it holds ``host`` (this process's monotonic clock)."""
        return self._last_held.get(host)

    def held_elsewhere(self, host: str) -> bool:
        """True when a live other member holds ``host``."""
        bound = time.monotonic() - self._timeout
        return any(seen >= bound and host in hosts for seen, _, hosts in self._others.values())


__all__ = ["MEMBER_KIND", "Members"]
