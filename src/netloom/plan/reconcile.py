"""Create-or-update: which existing object a document stands for, and what differs.

An object is the document's when it has the same kind, the same scope (its tenant, or for
ports, routes, rules and DHCP subnets its parent: see :attr:`Kind.scope`) and the same name.
Nameless objects are matched by what else identifies them: a rule by its position in the chain
(its ``position``, or else its place among the file's rules of that chain), a DHCP subnet by its
CIDR, a route by its destination, source, next hop and type; other nameless documents always
create. System-owned objects (a router port's routes) are never matched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from netloom.model import integrity
from netloom.model.kinds import Kind
from netloom.plan.client import Doc, PlanClient
from netloom.plan.prune import system_owned

Action = Literal["create", "update", "unchanged", "link", "bind", "delete"]
Identity = tuple[str, ...]

# applied after every object exists (links, bindings): never part of a create-or-update diff
LINK_FIELDS: dict[str, frozenset[str]] = {
    "port": frozenset({"peer_id", "host_id", "interface_name"}),
}
PLACEHOLDER_MAC = "02:00:00:00:00:00"


@dataclass
class Change:
    """What applying does (or, in a dry run, would do) to one object."""

    action: Action
    kind: Kind
    ref: str  # the document's handle, or the deleted object's name
    id: str | None
    changes: Doc = field(default_factory=dict)  # update: field -> new value
    index: int | None = None  # the document's position in the plan (None: a deletion)


def identity(kind: Kind, data: Doc, ordinal: int = 0) -> Identity | None:
    """What identifies an object of ``kind`` within its scope; None: nothing does."""
    if data.get("name"):
        return ("name", str(data["name"]))
    if kind.name == "rule":
        position = data.get("position")
        return ("position", str(ordinal if position is None else position))
    if kind.name == "dhcp_subnet":
        return ("cidr", str(data.get("cidr")))
    if kind.name == "route":
        keys = ("dst", "src", "next_hop_port_id", "next_hop_gateway", "type")
        defaults = {"src": "0.0.0.0/0", "type": "normal"}
        return ("route", *(str(data.get(k) or defaults.get(k, "")) for k in keys))
    return None


class State:
    """The existing objects of each scope, listed once per (kind, scope value) and indexed by
    identity. Safe to share between threads."""

    def __init__(self, client: PlanClient) -> None:
        self.client = client
        self._index: dict[tuple[str, str | None], dict[Identity, Doc]] = {}
        self._lock = threading.Lock()

    def find(self, kind: Kind, data: Doc, ordinal: int = 0) -> Doc | None:
        """The existing object ``data`` (references resolved) stands for, if any."""
        key = identity(kind, data, ordinal)
        if key is None:
            return None
        scope = data.get(kind.scope) if kind.scope else None
        return self._scope(kind, None if scope is None else str(scope)).get(key)

    def _scope(self, kind: Kind, scope: str | None) -> dict[Identity, Doc]:
        with self._lock:
            cached = self._index.get((kind.name, scope))
        if cached is not None:
            return cached
        wanted = {kind.scope: scope} if kind.scope and scope is not None else None
        items = self.client.list(kind.collection, wanted)
        if kind.scope:
            items = [d for d in items if d.get(kind.scope) == scope]  # the filter is a hint
        index: dict[Identity, Doc] = {}
        for d in items:
            key = None if system_owned(d) else identity(kind, d, int(d.get("position") or 0))
            if key is not None:
                index.setdefault(key, d)
        with self._lock:
            self._index[(kind.name, scope)] = index
        return index


def _default(kind: Kind, name: str) -> Any:
    value = kind.record.model_fields[name].get_default(call_default_factory=True)
    return value.value if isinstance(value, Enum) else value


def _comparable(kind: Kind, data: Doc) -> Doc:
    """``data`` without what a diff leaves aside: links, bindings and ``"auto"`` addresses."""
    out = {k: v for k, v in data.items() if k not in LINK_FIELDS.get(kind.name, ())}
    if "auto" in (out.get("fixed_ips") or ()):
        out.pop("fixed_ips")  # allocated by the API: whatever it chose stands
    return out


def differences(kind: Kind, desired: Doc, existing: Doc) -> Doc:
    """The fields to change so ``existing`` becomes what ``desired`` (a document, references
    resolved) says: given fields compare in their normalised form, fields left out compare
    with their default, except those the API keeps or chooses (a port's MAC, a rule's
    position). Raises :class:`~netloom.errors.InvalidInput` if the result would not validate."""
    wanted = _comparable(kind, desired)
    fields = kind.record.model_fields
    current = {k: v for k, v in existing.items() if k in fields}
    normal = integrity.validate(kind.name, {**current, **wanted})
    kept = integrity.KEPT.get(kind.name, frozenset()) | LINK_FIELDS.get(kind.name, frozenset())
    out: Doc = {}
    for name in fields:
        if name == "id" or name in kind.read_only:
            continue
        if name in wanted:
            value = normal[name]
        elif name in kept or (name == "fixed_ips" and name in desired):
            continue
        else:
            value = _default(kind, name)
        if value != existing.get(name):
            out[name] = value
    return out


def check_create(kind: Kind, data: Doc) -> None:
    """Validate a create body as the API's record would (what the API fills in itself, a
    port's MAC and ``"auto"`` addresses, stands in as a placeholder)."""
    body = _comparable(kind, data) | {
        k: data[k] for k in ("host_id", "interface_name") if k in data
    }
    if kind.name == "port" and body.get("mac") is None:
        body["mac"] = PLACEHOLDER_MAC
    integrity.validate(kind.name, body)


__all__ = ["Action", "Change", "State", "check_create", "differences", "identity"]
