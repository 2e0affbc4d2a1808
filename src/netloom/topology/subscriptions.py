"""The topology server's object view and each connection's interest in it.

Holds every object the server serves (``objects``), the per-field indexes built when the first
filter on a field arrives, and the reverse maps from object keys and filters to the
connections that hold or want them. Touched from the event loop only.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS
from netloom.store.base import Change
from netloom.topology.protocol import (
    FrameProtocol,
    Key,
    Obj,
    Scalar,
    matches,
    value_key,
    value_keys,
)


@dataclass(slots=True)
class Entry:
    version: int
    data: dict[str, Any]
    mod_rev: int  # revision of the last change (0: loaded before the watch started)


@dataclass(eq=False, slots=True)
class Conn:
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


class Subscriptions:
    """The object view, its field indexes and who subscribed to what."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Entry]] = {}
        # (kind, field) -> value_key -> ids; built when the first filter on it arrives
        self.index: dict[tuple[str, str], dict[tuple[bool, Any], set[str]]] = {}
        self.by_key: dict[Key, set[Conn]] = {}
        self.by_filter: dict[tuple[str, str, tuple[bool, Any]], set[Conn]] = {}
        self._filter_fields: dict[str, collections.Counter[str]] = {}

    def entry(self, kind: str, id: str) -> Entry | None:
        return self.objects.get(kind, {}).get(id)

    # -- the object view ---------------------------------------------------------------------

    def update(self, c: Change, rev: int) -> bool:
        """Apply one store change; False when the view already has it (or never had it)."""
        per_kind = self.objects.setdefault(c.kind, {})
        old = per_kind.get(c.id)
        if c.op == "put":
            assert c.data is not None
            if old is not None and old.version >= c.version:
                return False
            per_kind[c.id] = Entry(c.version, c.data, rev)
        else:
            if old is None:
                return False
            del per_kind[c.id]
        self._reindex(c.kind, c.id, old.data if old else None, c.data)
        return True

    def _reindex(
        self, kind: str, id: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for (k, fld), index in self.index.items():
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

    def candidates(self, kind: str, id: str, data: dict[str, Any] | None) -> set[Conn]:
        """Connections that may need this change: those holding the object now (it may leave
        their view: ``by_key`` covers the view) and those whose filters the new data matches
        (it may enter: every element of a list field is looked up)."""
        out = set(self.by_key.get((kind, id), ()))
        fields = self._filter_fields.get(kind)
        if fields and data is not None:
            for fld in fields:
                for vk in value_keys(data, fld):
                    conns = self.by_filter.get((kind, fld, vk))
                    if conns:
                        out |= conns
        return out

    def changes_for(self, conn: Conn, obj: Obj) -> Obj | None:
        """What ``conn`` must receive for ``obj`` (and update its view), or None."""
        kind, id, version, data = obj
        key = (kind, id)
        if conn.wants(kind, id, data):
            self.view_add(conn, key)
            return obj
        if key in conn.view:
            self.view_discard(conn, key)
            return (kind, id, version, None) if data is not None else obj
        return None

    # -- per-connection state ----------------------------------------------------------------

    def view_add(self, conn: Conn, key: Key) -> None:
        conn.view.add(key)
        self.by_key.setdefault(key, set()).add(conn)

    def view_discard(self, conn: Conn, key: Key) -> None:
        conn.view.discard(key)
        if key not in conn.objects:
            self.unref(conn, key)

    def unref(self, conn: Conn, key: Key) -> None:
        conns = self.by_key.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_key[key]

    def add_object(self, conn: Conn, key: Key) -> None:
        conn.objects.add(key)
        self.by_key.setdefault(key, set()).add(conn)

    def add_filter(self, conn: Conn, kind: str, fld: str, value: Scalar) -> None:
        if (fld, value) in conn.filters.get(kind, ()):
            return
        conn.filters.setdefault(kind, set()).add((fld, value))
        self.by_filter.setdefault((kind, fld, value_key(value)), set()).add(conn)
        self._filter_fields.setdefault(kind, collections.Counter())[fld] += 1
        if (kind, fld) not in self.index:
            index: dict[tuple[bool, Any], set[str]] = {}
            for id, entry in self.objects.get(kind, {}).items():
                for vk in value_keys(entry.data, fld):
                    index.setdefault(vk, set()).add(id)
            self.index[(kind, fld)] = index

    def remove_filter(self, conn: Conn, kind: str, fld: str, value: Scalar) -> None:
        subs = conn.filters.get(kind)
        if not subs or (fld, value) not in subs:
            return
        subs.discard((fld, value))
        if not subs:
            del conn.filters[kind]
        fkey = (kind, fld, value_key(value))
        conns = self.by_filter[fkey]
        conns.discard(conn)
        if not conns:
            del self.by_filter[fkey]
        counter = self._filter_fields[kind]
        counter[fld] -= 1
        if counter[fld] <= 0:
            del counter[fld]
        for key in [k for k in conn.view if k[0] == kind]:
            entry = self.entry(kind, key[1])
            if not conn.wants(kind, key[1], entry.data if entry else None):
                self.view_discard(conn, key)

    def forget(self, conn: Conn) -> None:
        for key in conn.view | conn.objects:
            self.unref(conn, key)
        for kind, subs in list(conn.filters.items()):
            for fld, value in list(subs):
                self.remove_filter(conn, kind, fld, value)
        conn.view.clear()
        conn.objects.clear()

    def filtered(self, kind: str, fld: str, value: Scalar) -> list[tuple[str, Entry]]:
        """The objects of ``kind`` whose ``fld`` matches ``value``, by id (the index must exist)."""
        per_kind = self.objects.get(kind, {})
        out: list[tuple[str, Entry]] = []
        for id in sorted(self.index[(kind, fld)].get(value_key(value), ())):
            entry = per_kind.get(id)
            if entry is not None and matches(entry.data, fld, value):
                out.append((id, entry))
        return out

    def matching(self, conn: Conn) -> dict[Key, Entry]:
        """Everything ``conn``'s subscriptions match in the current view."""
        out: dict[Key, Entry] = {}
        for kind, id in conn.objects:
            entry = self.entry(kind, id)
            if entry is not None:
                out[(kind, id)] = entry
        for kind, subs in conn.filters.items():
            for fld, value in subs:
                for id, entry in self.filtered(kind, fld, value):
                    out[(kind, id)] = entry
        return out


def validate_sub(
    kinds: frozenset[str], kind: str, id: str | None, fld: str | None, value: Any
) -> None:
    """Raise :class:`InvalidInput` unless (``kind``, ``id``) or (``kind``, ``fld``, ``value``)
    is something an agent may subscribe to."""
    if kind not in kinds:
        raise InvalidInput(f"unknown kind {kind!r}", field="kind")
    if (id is None) == (fld is None):
        raise InvalidInput("subscribe to an id or to a field filter, not both", field="id")
    if fld is not None:
        spec = KINDS.get(kind)
        if spec is not None and fld not in spec.filters:
            raise InvalidInput(f"{kind} cannot be filtered on {fld!r}", field="field")
        if not isinstance(value, str | int | bool | None):
            raise InvalidInput("filter value must be a scalar", field="value")


__all__ = ["Conn", "Entry", "Subscriptions", "validate_sub"]
