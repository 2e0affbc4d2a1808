"""Applying a plan through the REST API: create-or-update in dependency order, then links and
bindings, then (with ``prune``) deletions; on failure everything the run created is removed
again (newest first).

Create-or-update: a document whose object exists already (:mod:`netloom.plan.reconcile`: same
kind, scope and name) is compared field by field and updated (``If-Match`` on the version
read) only if something differs; a link to the same peer, a binding to the same host and
interface make no call. Applying a plan twice changes nothing the second time.

Concurrency: with ``workers > 1`` each dependency level (:func:`creation_levels`) is applied by
that many threads at once, then the links and bindings likewise. A cloud of thousands of ports
is one plan; the API serialises what must be (compare-and-set in the store), and a write that
lost such a race (``version_conflict``: nothing was committed) is retried after a short
jittered pause, as any client of a compare-and-set API must.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from netloom.errors import ApiError, NetloomError
from netloom.model.kinds import KINDS
from netloom.plan import prune
from netloom.plan.client import Doc, PlanClient
from netloom.plan.document import Document, creation_levels, substitute
from netloom.plan.reconcile import Action, Change, State, check_create, differences
from netloom.plan.resolve import Resolver, infer_port_type

Progress = Callable[[str], None]
Created = list[tuple[Document, Doc]]
T = TypeVar("T")
R = TypeVar("R")

CONFLICT_RETRIES = 50
CONFLICT_PAUSE_S = 0.01  # times the attempt number, jittered
UPDATE_ATTEMPTS = 3  # an update whose If-Match failed is compared again this often


def _quiet(what: str) -> None:
    del what


class Applier:
    """Creates or updates the documents, then links and binds; with ``prune`` deletes the
    objects of the plan's tenants the plan does not name. On failure removes what it created
    (newest first); updates and deletions already made stay.

    A port that names a host but no peer is created bound (one request: ``host_id`` and
    ``interface_name`` in the create body); a port that is also linked is bound after the link.
    With ``dry_run`` nothing is written: references are resolved and existing objects read
    through the API, and each create or update body is validated against its record.

    After :meth:`run`, ``ids`` maps each handle to the id of its object, ``created`` lists the
    objects this run created, ``changes`` says what happened to every object (creation order,
    then links, bindings, deletions) and ``level_seconds`` holds the wall time of each level
    and of the links/bindings."""

    def __init__(
        self,
        client: PlanClient,
        docs: list[Document],
        *,
        workers: int = 1,
        prune: bool = False,
        dry_run: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.client = client
        self.workers = workers
        self.prune = prune
        self.dry_run = dry_run
        self.resolver = Resolver(client)
        self.state = State(client)
        self.levels = creation_levels(docs)
        self.docs = [d for level in self.levels for d in level]
        self.ids: dict[str, str] = {}
        self.created: Created = []
        self.changes: list[Change] = []
        self.conflicts_retried = 0
        self.level_seconds: list[tuple[str, float]] = []
        self._records: dict[int, Doc] = {}  # document index -> the record the API holds
        self._data: dict[int, Doc] = {}  # document index -> its body, references resolved
        self._done: dict[int, Change] = {}
        self._new: set[str] = set()  # ids this run created (placeholders in a dry run)
        self._created_at: dict[int, int] = {}  # document index -> its place in ``created``
        self._placeholders: dict[str, str] = {}  # dry run: stand-in id -> "@handle"
        self._ordinals = _ordinals(self.docs)
        self._lock = threading.Lock()
        self._failed_at = "before the first document"  # where a failure happened

    def steps(self) -> int:
        """How many API writes :meth:`run` makes at most (creations, links once per pair,
        bindings; deletions are not known in advance)."""
        links = {
            frozenset((d.handle or f"#{d.index}", str(d.link_to).removeprefix("@")))
            for d in self.docs
            if d.link_to
        }
        return len(self.docs) + len(links) + sum(1 for d in self.docs if _binds_later(d))

    def run(self, advance: Progress = _quiet) -> Created:
        """Apply the plan; ``advance(what)`` is called as each step starts. Returns each
        document with the record the API holds for it at the end (in a dry run: the body it
        would send, or the existing record).

        A :class:`~netloom.errors.NetloomError` is re-raised after the rollback, its message
        prefixed with the document that failed."""
        try:
            for level in self.levels:
                t0 = time.monotonic()
                self._each(level, lambda d: self._apply(d, advance))
                self.level_seconds.append((_describe(level), time.monotonic() - t0))
            self.changes = [self._done[d.index] for d in self.docs]
            t0 = time.monotonic()
            self._links_and_bindings(advance)
            self.level_seconds.append(("links and bindings", time.monotonic() - t0))
            if self.prune:
                self._prune(advance)
        except NetloomError as exc:
            self._rollback()
            kept = sum(1 for c in self._done.values() if c.action == "update")
            updates = f"{kept} update{'' if kept == 1 else 's'}"
            done = f"created objects removed, {updates} kept" if kept else "nothing kept"
            done = "dry run: nothing written" if self.dry_run else done
            exc.message = f"{self._failed_at}: {exc.message} ({done})"
            raise
        return [(d, self._records[d.index]) for d in self.docs]

    def _each(self, items: Iterable[T], fn: Callable[[T], R]) -> list[R]:
        if self.workers == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(fn, items))

    def _apply(self, d: Document, advance: Progress) -> None:
        advance(f"applying {d.kind.name} {d.handle or ''}")
        try:
            data = self.resolver.refs(d.kind, substitute(d.data, self.ids))
            if d.kind.name == "port":
                data = infer_port_type(self.resolver, data)
            self._data[d.index] = data
            existing = self._existing(d, data)
            if existing is None:
                self._create(d, data)
            else:
                self._update(d, data, existing)
        except NetloomError:
            self._failed_at = d.where()
            raise

    def _existing(self, d: Document, data: Doc) -> Doc | None:
        scope = data.get(d.kind.scope) if d.kind.scope else None
        if scope is not None and str(scope) in self._new:
            return None  # its parent is new: so is it
        return self.state.find(d.kind, data, self._ordinals.get(d.index, 0))

    def _create(self, d: Document, data: Doc) -> None:
        if d.kind.name == "port" and d.bind and not d.link_to:
            data = {**data, **self._binding(d)}
        if self.dry_run:
            check_create(d.kind, data)
            doc = {**data, "id": str(uuid.uuid4())}
        else:
            doc = self._retrying(lambda: self.client.create(d.kind.collection, data))
        id = str(doc["id"])
        self.resolver.remember(d.kind.name, id)
        change = Change(
            "create", d.kind, d.handle or "", None if self.dry_run else id, index=d.index
        )
        with self._lock:
            self._new.add(id)
            if self.dry_run:
                self._placeholders[id] = f"@{d.handle or d.index}"
            else:
                self._created_at[d.index] = len(self.created)
                self.created.append((d, doc))
            self._done_with(d, doc, change)

    def _update(self, d: Document, data: Doc, existing: Doc) -> None:
        """PATCH what differs, on the version read. A version that moved meanwhile (412: an
        earlier update of this run moved the rule down, or another writer) is read again and
        compared again."""
        id = str(existing["id"])
        doc = existing
        changes = differences(d.kind, data, doc)
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            if not changes or self.dry_run:
                break
            try:
                doc = self._retrying(self._patch(d, id, changes, doc.get("version")))
                break
            except ApiError as exc:
                if exc.status != 412 or attempt == UPDATE_ATTEMPTS:
                    raise
            doc = self.client.get(d.kind.collection, id)
            changes = differences(d.kind, data, doc)
        action: Action = "update" if changes else "unchanged"
        with self._lock:
            self._done_with(d, doc, Change(action, d.kind, d.handle or "", id, changes, d.index))

    def _patch(self, d: Document, id: str, changes: Doc, version: Any) -> Callable[[], Doc]:
        if_version = version if isinstance(version, int) else None
        return lambda: self.client.update(d.kind.collection, id, changes, if_version=if_version)

    def _done_with(self, d: Document, doc: Doc, change: Change) -> None:
        self._records[d.index] = doc
        self._done[d.index] = change
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
        """Link (once per pair, unless already linked so), then bind the ports that asked for
        it and are not bound so already; a link changes both ports, so the records are read
        again to show what the API holds."""
        index = {str(doc["id"]): i for i, doc in self._records.items()}
        pairs: dict[frozenset[str], tuple[str, str, Document]] = {}
        for d in self.docs:
            if d.link_to:
                me = str(self._records[d.index]["id"])
                peer = self._call(d, self._peer(d))
                if self._records[d.index].get("peer_id") != peer:
                    pairs.setdefault(frozenset((me, peer)), (me, peer, d))

        def link(item: tuple[str, str, Document]) -> list[Doc]:
            me, peer, d = item
            advance(f"linking {d.handle or me}")
            shown = {"peer_id": self._placeholders.get(peer, peer)}
            self._note(Change("link", d.kind, d.handle or "", self._shown(me), shown, d.index))
            if self.dry_run:
                return []
            if self._records[d.index].get("peer_id"):
                self._call(d, lambda: self.client.unlink_port(me))
            linked = self._call(d, lambda: self.client.link_ports(me, peer))
            return [linked, self._call(d, lambda: self.client.get("ports", peer))]

        for docs in self._each(pairs.values(), link):
            for doc in docs:
                self._replace(index, doc)
        for doc in self._each([d for d in self.docs if self._binds_now(d)], self._bind(advance)):
            self._replace(index, doc)

    def _peer(self, d: Document) -> Callable[[], str]:
        return lambda: self.resolver.find(("port",), str(substitute(d.link_to, self.ids)))[1]

    def _binds_now(self, d: Document) -> bool:
        """A port to bind here: bound after its link, or existing and bound otherwise."""
        if d.bind is None:
            return False
        if self._done[d.index].action == "create" and not d.link_to:
            return False  # created bound
        b = self._call(d, lambda: self._binding(d))
        held = self._records[d.index]
        return (held.get("host_id"), held.get("interface_name")) != (
            b["host_id"],
            b["interface_name"],
        )

    def _bind(self, advance: Progress) -> Callable[[Document], Doc]:
        def bind(d: Document) -> Doc:
            doc = self._records[d.index]
            advance(f"binding {d.handle or doc['id']}")
            b = self._call(d, lambda: self._binding(d))
            self._note(
                Change("bind", d.kind, d.handle or "", self._shown(str(doc["id"])), b, d.index)
            )
            if self.dry_run:
                return doc
            return self._call(
                d, lambda: self.client.bind_port(str(doc["id"]), b["host_id"], b["interface_name"])
            )

        return bind

    def _shown(self, id: str) -> str | None:
        """An id as changes show it: None for an object a dry run would create."""
        return None if id in self._placeholders else id

    def _note(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)

    def _call(self, d: Document, call: Callable[[], R]) -> R:
        try:
            return call()
        except NetloomError:
            self._failed_at = d.where()
            raise

    def _replace(self, index: dict[str, int], doc: Doc) -> None:
        i = index.get(str(doc["id"]))
        if i is None:
            return  # a peer the plan does not name
        self._records[i] = doc
        n = self._created_at.get(i)
        if n is not None:
            self.created[n] = (self.created[n][0], doc)

    def _prune(self, advance: Progress) -> None:
        """Delete what the plan's tenants hold and the plan does not name or refer to."""
        keep = {str(doc["id"]) for doc in self._records.values()}
        tenants: set[str] = set()
        for d in self.docs:
            data = self._data[d.index]
            keep.update(i for ref in d.kind.refs for i in ref.ids(data))
            if d.kind.name == "tenant":
                tenants.add(str(self._records[d.index]["id"]))
            elif isinstance(data.get("tenant_id"), str):
                tenants.add(data["tenant_id"])
        self._failed_at = "pruning"
        for kind, doc in prune.doomed(self.client, tenants - self._new, keep):
            id = str(doc["id"])
            advance(f"deleting {kind.name} {doc.get('name') or id}")
            self._note(Change("delete", kind, str(doc.get("name") or ""), id))
            if self.dry_run:
                continue
            if kind.name == "port" and doc.get("peer_id"):
                self.client.unlink_port(id)
            self.client.delete(kind.collection, id, cascade=kind.children != ())

    def _rollback(self) -> None:
        for d, doc in reversed(self.created):
            try:
                if d.kind.name == "port" and doc.get("peer_id"):
                    self.client.unlink_port(str(doc["id"]))
                self.client.delete(d.kind.collection, str(doc["id"]), cascade=True)
            except NetloomError:
                continue  # already gone with a cascade, or the API went away: best effort


def _ordinals(docs: list[Document]) -> dict[int, int]:
    """Each nameless rule document's place among the file's nameless rules of its chain."""
    seen: dict[str, int] = {}
    out: dict[int, int] = {}
    for d in sorted(docs, key=lambda d: d.index):
        if d.kind is KINDS["rule"] and not d.data.get("name"):
            chain = str(d.data.get("chain_id"))
            out[d.index] = seen.get(chain, 0)
            seen[chain] = out[d.index] + 1
    return out


def _binds_later(d: Document) -> bool:
    """A port bound after its link (a port without a link is created bound)."""
    return d.bind is not None and d.link_to is not None


def _describe(level: list[Document]) -> str:
    counts: dict[str, int] = {}
    for d in level:
        counts[d.kind.name] = counts.get(d.kind.name, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


__all__ = ["Applier", "Created", "Progress"]
