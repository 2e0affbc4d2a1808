"""Plan documents: a topology as data, and the order to create it in.

A plan is a JSON list (or ``{"objects": [...]}``) of documents ``{"kind": ..., fields...}``.
``"@x"`` anywhere in a document refers to the document whose ``"ref"`` (or else ``"name"``) is
``x``; plain names and ids of objects that already exist work too. Rules take the CLI's value
forms: ``"tp_dst": 22`` or ``"1000-2000"`` for a port range, ``"nw_proto": "tcp"``. A port's
``peer_id`` and its binding (``host_id`` + ``interface_name``) are applied after every object
exists, so two ports can name each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netloom.errors import InvalidInput
from netloom.model.kinds import BY_COLLECTION, KINDS, Kind
from netloom.model.values import RULE_VALUE_FORMS
from netloom.plan.client import Doc


@dataclass
class Document:
    """One object to create; ``index`` is its 1-based position in the plan."""

    index: int
    kind: Kind
    handle: str | None
    data: Doc
    link_to: str | None = None  # peer_id, applied after creation
    bind: tuple[str, str] | None = None  # (host_id, interface_name), applied after creation

    def where(self) -> str:
        """How errors name this document."""
        return (
            f"document #{self.index} ({self.kind.name}{' ' + self.handle if self.handle else ''})"
        )


def _kind_named(raw: Any, index: int) -> Kind:
    name = str(raw or "").replace("-", "_")
    kind = KINDS.get(name) or BY_COLLECTION.get(name)
    if kind is None:
        raise InvalidInput(f"document #{index}: unknown kind {raw!r}", field="kind")
    return kind


def _document(index: int, raw: Any) -> Document:
    if not isinstance(raw, dict):
        raise InvalidInput(f"document #{index} is not a JSON object", field="file")
    data = dict(raw)
    kind = _kind_named(data.pop("kind", None), index)
    handle = data.pop("ref", None) or data.get("name") or None
    doc = Document(index, kind, str(handle) if handle is not None else None, data)
    if kind.name == "rule":
        for field, form in RULE_VALUE_FORMS.items():
            if data.get(field) is not None:
                try:
                    data[field] = form(field, data[field])  # "tp_dst": 22, "nw_proto": "tcp"
                except InvalidInput as exc:
                    exc.message = f"{doc.where()}: {exc.message}"
                    raise
    if kind.name == "port":
        doc.link_to = data.pop("peer_id", None)
        if data.get("host_id") is not None:
            doc.bind = (str(data.pop("host_id")), str(data.pop("interface_name", "") or ""))
    return doc


def parse_documents(body: Any) -> list[Document]:
    """The documents of a plan (decoded JSON), in plan order.

    Raises :class:`~netloom.errors.InvalidInput` for a body that is not a list of objects, an
    unknown kind, or a handle used twice."""
    if isinstance(body, dict) and isinstance(body.get("objects"), list):
        body = body["objects"]
    if not isinstance(body, list):
        raise InvalidInput("the file must hold a JSON list of {kind, ...} documents", field="file")
    docs: list[Document] = []
    handles: set[str] = set()
    for i, raw in enumerate(body, 1):
        doc = _document(i, raw)
        if doc.handle is not None:
            if doc.handle in handles:
                raise InvalidInput(f"document #{i}: handle {doc.handle!r} used twice", field="ref")
            handles.add(doc.handle)
        docs.append(doc)
    return docs


def handles_in(value: Any) -> Iterator[str]:
    """The handles (``"@x"`` -> ``x``) a value refers to, at any depth."""
    if isinstance(value, str) and value.startswith("@"):
        yield value[1:]
    elif isinstance(value, list):
        for v in value:
            yield from handles_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from handles_in(v)


def substitute(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every ``"@x"`` replaced by ``ids[x]``."""
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, ids) for k, v in value.items()}
    return value


def _dependencies(docs: list[Document]) -> dict[int, set[int]]:
    """Index -> indexes of the documents it must come after; every handle must exist."""
    by_handle = {d.handle: d for d in docs if d.handle}
    deps: dict[int, set[int]] = {}
    for d in docs:
        for h in handles_in([d.data, d.link_to, *(d.bind or ())]):
            if h not in by_handle:
                raise InvalidInput(f"document #{d.index}: unknown reference @{h}", field="ref")
        # links and bindings are applied after every object exists: not an order constraint
        deps[d.index] = {by_handle[h].index for h in handles_in(d.data)} - {d.index}
        if d.kind.name == "bgp_peer":  # its address is checked against the router's uplinks
            deps[d.index] |= {
                p.index
                for p in docs
                if p.kind.name == "port" and p.data.get("device_id") == d.data.get("router_id")
            }
    return deps


def creation_levels(docs: list[Document]) -> list[list[Document]]:
    """Documents in dependency levels (Kahn's algorithm by rounds): every document of a level
    references only documents of earlier levels, so one level's documents can be created
    concurrently. Stable: plan order within a level.

    Raises :class:`~netloom.errors.InvalidInput` for an unknown ``@handle`` or a reference
    cycle."""
    deps = _dependencies(docs)
    levels: list[list[Document]] = []
    done: set[int] = set()
    pending = list(docs)
    while pending:
        ready = [d for d in pending if deps[d.index] <= done]
        if not ready:
            cycle = ", ".join(d.handle or f"#{d.index}" for d in pending)
            raise InvalidInput(f"reference cycle among: {cycle}", field="ref")
        levels.append(ready)
        done.update(d.index for d in ready)
        pending = [d for d in pending if d.index not in done]
    return levels


def creation_order(docs: list[Document]) -> list[Document]:
    """Documents ordered so each comes after the ones it references: the levels of
    :func:`creation_levels`, one after the other."""
    return [d for level in creation_levels(docs) for d in level]


__all__ = ["Document", "creation_order", "handles_in", "parse_documents", "substitute"]
