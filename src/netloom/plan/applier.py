"""Applying a plan through the REST API: objects in dependency order, then links and bindings;
on failure everything the run created is removed again (newest first)."""

from __future__ import annotations

from collections.abc import Callable

from netloom.errors import NetloomError
from netloom.plan.client import Doc, PlanClient
from netloom.plan.document import Document, creation_order, substitute
from netloom.plan.resolve import Resolver, infer_port_type

Progress = Callable[[str], None]
Created = list[tuple[Document, Doc]]


def _quiet(what: str) -> None:
    del what


class Applier:
    """Creates the documents, then the links and bindings; on failure removes what it
    created (newest first) so a bad plan changes nothing.

    After :meth:`run`, ``ids`` maps each handle to the id of the object created for it."""

    def __init__(self, client: PlanClient, docs: list[Document]) -> None:
        self.client = client
        self.resolver = Resolver(client)
        self.docs = creation_order(docs)
        self.ids: dict[str, str] = {}
        self.created: Created = []
        self._current = "before the first document"  # where a failure happened

    def steps(self) -> int:
        """How many API writes :meth:`run` makes (creations, links once per pair, bindings)."""
        links = {
            frozenset((d.handle or f"#{d.index}", str(d.link_to).removeprefix("@")))
            for d in self.docs
            if d.link_to
        }
        return len(self.docs) + len(links) + sum(1 for d in self.docs if d.bind)

    def run(self, advance: Progress = _quiet) -> Created:
        """Apply the plan; ``advance(what)`` is called as each step starts. Returns each
        document with the record the API holds for it at the end.

        A :class:`~netloom.errors.NetloomError` is re-raised after the rollback, its message
        prefixed with the document that failed."""
        try:
            for d in self.docs:
                advance(f"creating {d.kind.name} {d.handle or ''}")
                self._create(d)
            self._links_and_bindings(advance)
        except NetloomError as exc:
            self._rollback()
            exc.message = f"{self._current}: {exc.message} (nothing kept)"
            raise
        return self.created

    def _create(self, d: Document) -> None:
        self._current = d.where()
        data = self.resolver.refs(d.kind, substitute(d.data, self.ids))
        if d.kind.name == "port":
            data = infer_port_type(self.resolver, data)
        doc = self.client.create(d.kind.collection, data)
        self.created.append((d, doc))
        if d.handle:
            self.ids[d.handle] = str(doc["id"])

    def _links_and_bindings(self, advance: Progress) -> None:
        """Link (once per pair) and bind the ports that asked for it; a link changes both
        ports, so the peer's record is read again to show what the API holds."""
        position = {str(doc["id"]): i for i, (_, doc) in enumerate(self.created)}
        linked: set[frozenset[str]] = set()
        for d, doc in list(self.created):
            self._current = d.where()
            me = str(doc["id"])
            if d.link_to:
                target = str(substitute(d.link_to, self.ids))
                peer = self.resolver.find(("port",), target, "peer_id")[1]
                if frozenset((me, peer)) not in linked:
                    advance(f"linking {d.handle or me}")
                    linked.add(frozenset((me, peer)))
                    self._replace(position, self.client.link_ports(me, peer))
                    if peer in position:
                        self._replace(position, self.client.get("ports", peer))
            if d.bind:
                target = str(substitute(d.bind[0], self.ids))
                host = self.resolver.find(("host",), target, "host_id")[1]
                advance(f"binding {d.handle or me}")
                self._replace(position, self.client.bind_port(me, host, d.bind[1]))

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


__all__ = ["Applier", "Created", "Progress"]
