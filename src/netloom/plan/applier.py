"""Applying a plan through the REST API: objects in dependency order, then links and bindings;
on failure everything the run created is removed again (newest first).

Concurrency: with ``workers > 1`` each dependency level (:func:`creation_levels`) is created by
that many threads at once, then the links and bindings likewise. A cloud of thousands of ports
is one plan; the API serialises what must be (compare-and-set in the store), and a write that
lost such a race (``version_conflict``: nothing was committed) is retried after a short
jittered pause, as any client of a compare-and-set API must.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from netloom.errors import ApiError, NetloomError
from netloom.plan.client import Doc, PlanClient
from netloom.plan.document import Document, creation_levels, substitute
from netloom.plan.resolve import Resolver, infer_port_type

Progress = Callable[[str], None]
Created = list[tuple[Document, Doc]]
T = TypeVar("T")
R = TypeVar("R")

CONFLICT_RETRIES = 50
CONFLICT_PAUSE_S = 0.01  # times the attempt number, jittered


def _quiet(what: str) -> None:
    del what


class Applier:
    """Creates the documents, then the links and bindings; on failure removes what it
    created (newest first) so a bad plan changes nothing.

    A port that names a host but no peer is created bound (one request: ``host_id`` and
    ``interface_name`` in the create body); a port that is also linked is bound after the link.
    After :meth:`run`, ``ids`` maps each handle to the id of the object created for it, and
    ``level_seconds`` holds the wall time of each creation level and of the links/bindings."""

    def __init__(self, client: PlanClient, docs: list[Document], *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.client = client
        self.workers = workers
        self.resolver = Resolver(client)
        self.levels = creation_levels(docs)
        self.docs = [d for level in self.levels for d in level]
        self.ids: dict[str, str] = {}
        self.created: Created = []
        self.conflicts_retried = 0
        self.level_seconds: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._failed_at = "before the first document"  # where a failure happened

    def steps(self) -> int:
        """How many API writes :meth:`run` makes (creations, links once per pair, bindings)."""
        links = {
            frozenset((d.handle or f"#{d.index}", str(d.link_to).removeprefix("@")))
            for d in self.docs
            if d.link_to
        }
        return len(self.docs) + len(links) + sum(1 for d in self.docs if _binds_later(d))

    def run(self, advance: Progress = _quiet) -> Created:
        """Apply the plan; ``advance(what)`` is called as each step starts. Returns each
        document with the record the API holds for it at the end.

        A :class:`~netloom.errors.NetloomError` is re-raised after the rollback, its message
        prefixed with the document that failed."""
        try:
            for level in self.levels:
                t0 = time.monotonic()
                self._each(level, lambda d: self._create(d, advance))
                self.level_seconds.append((_describe(level), time.monotonic() - t0))
            t0 = time.monotonic()
            self._links_and_bindings(advance)
            self.level_seconds.append(("links and bindings", time.monotonic() - t0))
        except NetloomError as exc:
            self._rollback()
            exc.message = f"{self._failed_at}: {exc.message} (nothing kept)"
            raise
        return self.created

    def _each(self, items: Iterable[T], fn: Callable[[T], R]) -> list[R]:
        if self.workers == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(fn, items))

    def _create(self, d: Document, advance: Progress) -> None:
        advance(f"creating {d.kind.name} {d.handle or ''}")
        try:
            data = self.resolver.refs(d.kind, substitute(d.data, self.ids))
            if d.kind.name == "port":
                data = infer_port_type(self.resolver, data)
                if d.bind and not d.link_to:
                    data = {**data, **self._binding(d)}
            doc = self._retrying(lambda: self.client.create(d.kind.collection, data))
        except NetloomError:
            self._failed_at = d.where()
            raise
        self.resolver.remember(d.kind.name, str(doc["id"]))
        with self._lock:
            self.created.append((d, doc))
            if d.handle:
                self.ids[d.handle] = str(doc["id"])

    def _binding(self, d: Document) -> Doc:
        assert d.bind is not None
        host = self.resolver.find(("host",), str(substitute(d.bind[0], self.ids)), "host_id")[1]
        return {"host_id": host, "interface_name": d.bind[1]}

    def _retrying(self, call: Callable[[], Doc]) -> Doc:
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                return call()
            except ApiError as exc:
                if exc.code != "version_conflict" or attempt == CONFLICT_RETRIES:
                    raise
                with self._lock:
                    self.conflicts_retried += 1
                time.sleep(random.uniform(0, CONFLICT_PAUSE_S * attempt))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _links_and_bindings(self, advance: Progress) -> None:
        """Link (once per pair), then bind the linked ports that asked for it; a link changes
        both ports, so the records are read again to show what the API holds."""
        position = {str(doc["id"]): i for i, (_, doc) in enumerate(self.created)}
        pairs: dict[frozenset[str], tuple[str, str, Document]] = {}
        for d, doc in self.created:
            if d.link_to:
                self._failed_at = d.where()
                me = str(doc["id"])
                peer = self.resolver.find(("port",), str(substitute(d.link_to, self.ids)))[1]
                pairs.setdefault(frozenset((me, peer)), (me, peer, d))

        def link(item: tuple[str, str, Document]) -> list[Doc]:
            me, peer, d = item
            advance(f"linking {d.handle or me}")
            linked = self._call(d, lambda: self.client.link_ports(me, peer))
            if peer not in position:
                return [linked]
            return [linked, self._call(d, lambda: self.client.get("ports", peer))]

        for docs in self._each(pairs.values(), link):
            for doc in docs:
                self._replace(position, doc)
        binds = [(d, doc) for d, doc in self.created if _binds_later(d)]

        def bind(item: tuple[Document, Doc]) -> Doc:
            d, doc = item
            advance(f"binding {d.handle or doc['id']}")
            b = self._call(d, lambda: self._binding(d))
            return self._call(
                d, lambda: self.client.bind_port(str(doc["id"]), b["host_id"], b["interface_name"])
            )

        for doc in self._each(binds, bind):
            self._replace(position, doc)

    def _call(self, d: Document, call: Callable[[], R]) -> R:
        try:
            return call()
        except NetloomError:
            self._failed_at = d.where()
            raise

    def _replace(self, position: dict[str, int], doc: Doc) -> None:
        i = position[str(doc["id"])]
        self.created[i] = (self.created[i][0], doc)

    def _rollback(self) -> None:
        for d, doc in reversed(self.created):
            try:
                if d.kind.name == "port" and doc.get("peer_id"):
                    self.client.unlink_port(str(doc["id"]))
                self.client.delete(d.kind.collection, str(doc["id"]), cascade=True)
            except NetloomError:
                continue  # already gone with a cascade, or the API went away: best effort


def _binds_later(d: Document) -> bool:
    """A port bound after its link (a port without a link is created bound)."""
    return d.bind is not None and d.link_to is not None


def _describe(level: list[Document]) -> str:
    counts: dict[str, int] = {}
    for d in level:
        counts[d.kind.name] = counts.get(d.kind.name, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


__all__ = ["Applier", "Created", "Progress"]
