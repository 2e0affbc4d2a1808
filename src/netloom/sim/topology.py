"""What the simulation asks of the topology, and an in-memory answer to it.

The simulation reads topology records through :class:`TopologyView`. A view answers from what
it has loaded and returns None for what it has not (the simulation then returns a "not yet"
result naming the object, and the agent asks the topology service for it: interest-based fan-out).

Contract that makes compilation cheap: a view returns immutable snapshots. An unchanged object
or collection is returned as the *same* Python object on every call; a change produces a new
object. The simulation caches what it compiles from a record keyed on that identity.
Optionally a view has an integer ``generation`` attribute that changes whenever anything in it
changes; while it stays the same, the simulation reuses compiled objects without asking the
view at all (one dict lookup per object on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from netloom.errors import InvalidInput
from netloom.model.kinds import kind_of
from netloom.model.records import DhcpSubnet, Port, Record, Route, Rule


@runtime_checkable
class TopologyView(Protocol):
    """Read access to topology records (see the module docstring for the identity contract)."""

    def get(self, kind: str, id: str) -> Record | None:
        """The record of ``kind`` ("port", "bridge", "router", "chain", "ip_addr_group",
        "port_group", "host"...) with ``id``, or None when not loaded."""
        ...

    def routes(self, router_id: str) -> Sequence[Route] | None: ...

    def rules(self, chain_id: str) -> Sequence[Rule] | None: ...

    def ports(self, device_id: str) -> Sequence[Port] | None: ...

    def dhcp_subnets(self, bridge_id: str) -> Sequence[DhcpSubnet] | None: ...


class MemoryTopology:
    """A :class:`TopologyView` over records held in memory: for tests, the trace command and
    the agent's cache. Child collections are tuples rebuilt only when one of their members
    changes, so unchanged collections keep their identity."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        # Bumped on every change: lets the simulation's compile cache skip re-validating
        # objects while nothing changed (see CompiledTopology.begin).
        self.generation = 0
        self._objs: dict[str, dict[str, Record]] = {}
        # a parent's children by id, and their sorted tuple, built when first read after a
        # change: a thousand routes of one router arriving one by one cost one sort, not one
        # each (each sort would grow with the router's routes)
        self._members: dict[tuple[str, str], dict[str, Record]] = {}
        self._children: dict[tuple[str, str], tuple[Record, ...]] = {}
        for r in records:
            self.put(r)

    # -- mutation ------------------------------------------------------------------------------

    def put(self, record: Record, *, copy: bool = True) -> None:
        """Insert or replace ``record`` (a copy, since callers may keep mutating theirs; not
        copied with ``copy=False``: the caller made it for the view and keeps no reference)."""
        kind = kind_of(record).name
        rec = record.model_copy(deep=True) if copy else record
        self.generation += 1
        old = self._objs.setdefault(kind, {}).get(rec.id)
        self._objs[kind][rec.id] = rec
        if old is not None:
            self._drop_child(kind, old)
        parent = _parent_key(kind, rec)
        if parent is not None:
            self._members.setdefault(parent, {})[rec.id] = rec
            self._children.pop(parent, None)

    def delete(self, kind: str, id: str) -> None:
        old = self._objs.get(kind, {}).pop(id, None)
        if old is None:
            raise InvalidInput(f"no {kind} {id} in this topology", field="id")
        self.generation += 1
        self._drop_child(kind, old)

    def _drop_child(self, kind: str, old: Record) -> None:
        parent = _parent_key(kind, old)
        if parent is not None:
            self._members.get(parent, {}).pop(old.id, None)
            self._children.pop(parent, None)

    # -- TopologyView -------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> Record | None:
        objs = self._objs.get(kind)
        return None if objs is None else objs.get(id)

    def _kids(self, kind: str, parent_id: str) -> tuple[Record, ...]:
        key = (kind, parent_id)
        got = self._children.get(key)
        if got is None:
            got = self._children[key] = _sorted(kind, self._members.get(key, {}).values())
        return got

    def routes(self, router_id: str) -> Sequence[Route] | None:
        if self.get("router", router_id) is None:
            return None
        return self._kids("route", router_id)  # type: ignore[return-value]

    def rules(self, chain_id: str) -> Sequence[Rule] | None:
        if self.get("chain", chain_id) is None:
            return None
        return self._kids("rule", chain_id)  # type: ignore[return-value]

    def ports(self, device_id: str) -> Sequence[Port] | None:
        if self.get("bridge", device_id) is None and self.get("router", device_id) is None:
            return None
        return self._kids("port", device_id)  # type: ignore[return-value]

    def dhcp_subnets(self, bridge_id: str) -> Sequence[DhcpSubnet] | None:
        if self.get("bridge", bridge_id) is None:
            return None
        return self._kids("dhcp_subnet", bridge_id)  # type: ignore[return-value]


_PARENT_FIELD = {
    "route": "router_id",
    "rule": "chain_id",
    "port": "device_id",
    "dhcp_subnet": "bridge_id",
}


def _parent_key(kind: str, rec: Record) -> tuple[str, str] | None:
    f = _PARENT_FIELD.get(kind)
    return None if f is None else (kind, str(getattr(rec, f)))


def _sorted(kind: str, members: Iterable[Record]) -> tuple[Record, ...]:
    if kind == "rule":
        return tuple(sorted(members, key=lambda r: (r.position, r.id)))  # type: ignore[attr-defined]
    return tuple(sorted(members, key=lambda r: r.id))


__all__ = ["MemoryTopology", "TopologyView"]
