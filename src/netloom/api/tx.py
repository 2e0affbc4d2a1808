"""The optimistic transaction of :class:`~netloom.api.service.ObjectService` and the internal
documents its plans keep next to the records.

``_refs/<kind>:<id>``
    ``{"referrers": {"<kind>:<id>": [fields]}}``: who references the object. Creating a
    referrer rewrites the target's document (CAS) and pins the target (Check); deleting the
    target requires the document to be absent or empty and pins it too. Whichever of a racing
    create-referrer / delete-target commits second fails its condition -- no dangling reference.
``_unique/<index>:<value>``
    ``{"owner": "<kind>:<id>"}``: MACs (``mac:``), tunnel keys (``tunnel_key:``) and bindings
    (``binding:<host>:<interface>``). Created with "must not exist", released on delete/update.
``_counter/tunnel_key``
    ``{"next": n}``: where the next tunnel-key search starts (CAS, so allocations spread out).
``_meta/jump_graph``
    ``{"gen": n}``: bumped by every write that adds a jump edge out of a chain something
    jumps to, so two concurrent jump rules cannot each pass the cycle check against a graph
    that lacks the other (a chain nothing jumps to is guarded by its ``_refs`` document).

``_owner/<kind>:<id>``
    ``{"owner": "<api>:<kind>:<id>"}``: a record made by a translation (the Neutron API) for one
    of its objects; the native API refuses to change or delete it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from netloom.errors import InvalidInput, NotFound
from netloom.model.neighbors import ARP_KIND
from netloom.store.base import Check, Delete, Item, Op, Put, Store

Doc = dict[str, Any]

REFS = "_refs"
UNIQUE = "_unique"
COUNTER = "_counter"
META = "_meta"
OWNER = "_owner"
# {"ports": {port id: [fixed IPs]}}: the members of a port group whose addresses its address
# group holds, so a membership change rewrites the group without reading every member
GROUP_MEMBERS = "_group_members"
# {state, since, routes, port_id, host_id, bfd_up}: a bgp_peer's session as its gateway agent
# last reported it (the API answers it as the peer's read-only ``status``)
BGP_STATUS = "_bgp_status"
# {"blocks": {"<k>": host id}}: the SNAT port blocks of one (router, NAT address) and the
# host leasing each (see netloom.api.snat)
SNAT_BLOCKS = "_snat_blocks"
# {"port_id", "host_id"} under "<port>:<host>": the agent on the host reported the port's
# interface plugged into its datapath (gone when it reports it unplugged, or dies)
WIRED = "_wired"
# a router's ARP entry for a next hop behind an uplink, kept for every agent (model/neighbors.py)
INTERNAL_KINDS = (
    REFS,
    UNIQUE,
    COUNTER,
    META,
    GROUP_MEMBERS,
    BGP_STATUS,
    SNAT_BLOCKS,
    OWNER,
    ARP_KIND,
    WIRED,
)

Key = tuple[str, str]


_SCALARS = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    """A deep copy of a JSON-shaped document (dicts, lists, scalars), several times faster
    than :func:`copy.deepcopy` on the large reverse-reference documents; anything else is
    handed to ``deepcopy``."""
    t = type(value)
    if t is dict:
        return {k: _copy(v) for k, v in value.items()}
    if t is list:
        return [_copy(v) for v in value]
    if t in _SCALARS:
        return value
    return copy.deepcopy(value)


class Tx:
    """An optimistic transaction: cached reads with their versions, staged writes, and the
    single conditional commit that makes them atomic."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: dict[Key, Item | None] = {}
        self._staged: dict[Key, Doc | None] = {}
        self._edits: dict[Key, Doc] = {}  # copies handed out by edit(), not staged yet

    def _load(self, key: Key) -> Item | None:
        if key not in self._read:
            self._read[key] = self._store.get(*key)
        return self._read[key]

    def prefetch(self, keys: Iterable[Key]) -> None:
        """Read the documents a plan is about to touch in one round (a pipelined read on
        ZooKeeper), so each later :meth:`get` is served from the transaction."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._read]
        for key, item in zip(todo, self._store.get_many(todo), strict=True):
            self._read[key] = item

    def get(self, kind: str, id: str) -> Doc | None:
        """The document as this transaction sees it (its own staged writes included). A copy:
        plans may mutate it freely."""
        key = (kind, id)
        if key in self._staged:
            staged = self._staged[key]
            return _copy(staged) if staged is not None else None
        item = self._load(key)
        return _copy(item.data) if item is not None else None

    def peek(self, kind: str, id: str) -> Doc | None:
        """The document as :meth:`get` sees it, without a copy: only to read, never to
        change (checks that run once per record of a large commit)."""
        key = (kind, id)
        if key in self._staged:
            return self._staged[key]
        item = self._load(key)
        return item.data if item is not None else None

    def exists(self, kind: str, id: str) -> bool:
        """Whether the document exists as this transaction sees it (no copy made)."""
        key = (kind, id)
        if key in self._staged:
            return self._staged[key] is not None
        return self._load(key) is not None

    def version(self, kind: str, id: str) -> int:
        """The stored version (0: absent) as first read by this transaction."""
        item = self._load((kind, id))
        return item.version if item is not None else 0

    def edit(self, kind: str, id: str) -> Doc | None:
        """The document to change in place and :meth:`put` back: once staged, the staged
        document itself, so growing one document (a reverse-reference list) over many writes
        of a commit copies it once, not once per write."""
        key = (kind, id)
        if key in self._staged:
            return self._staged[key]
        doc = self.get(kind, id)
        if doc is not None:
            self._edits[key] = doc
        return doc

    def put(self, kind: str, id: str, data: Doc) -> None:
        key = (kind, id)
        self._load(key)
        # the staged document edited in place, or the copy edit() made: no copy again
        if self._edits.pop(key, None) is data:
            self._staged[key] = data
        elif self._staged.get(key) is not data:
            self._staged[key] = _copy(data)

    def delete(self, kind: str, id: str) -> None:
        self._load((kind, id))
        self._staged[(kind, id)] = None

    @property
    def writes(self) -> bool:
        return bool(self._staged)

    def ops(self) -> list[Op]:
        """Writes with the versions they replace, and a Check for everything only read."""
        ops: list[Op] = []
        for key, item in self._read.items():
            have = item.version if item is not None else 0
            if key not in self._staged:
                ops.append(Check(key[0], key[1], have))
                continue
            new = self._staged[key]
            if new is not None:
                ops.append(Put(key[0], key[1], new, expect_version=have))
            elif have:
                ops.append(Delete(key[0], key[1], expect_version=have))
            else:
                ops.append(Check(key[0], key[1], 0))
        return ops


def ref_id(kind: str, id: str) -> str:
    return f"{kind}:{id}"


def split_ref(ref: str) -> Key:
    kind, _, id = ref.partition(":")
    return kind, id


def referrers(tx: Tx, kind: str, id: str, of_kind: str, field: str) -> list[str]:
    """The ids of the ``of_kind`` records whose ``field`` references ``kind`` ``id`` (the
    children of a parent), from its reverse-reference document: read in ``tx``, so a child
    added concurrently fails the commit."""
    doc = tx.get(REFS, ref_id(kind, id)) or {"referrers": {}}
    out = []
    for ref, fields in sorted(doc["referrers"].items()):
        k, child = split_ref(ref)
        if k == of_kind and field in fields:
            out.append(child)
    return out


def check_id(kind: str, id: str) -> None:
    """Every record id is a canonical UUID; anything else cannot exist, and must not reach a
    backend whose keys are paths (ZooKeeper: ``..`` or ``/`` in an id would escape)."""
    try:
        ok = str(uuid.UUID(id)) == id
    except (ValueError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise NotFound(f"no {kind} {id!r} (ids are lowercase UUIDs)", field="id")


def as_object(data: Any) -> Doc:
    if not isinstance(data, Mapping):
        raise InvalidInput("the body must be a JSON object")
    return dict(data)


__all__ = [
    "BGP_STATUS",
    "COUNTER",
    "GROUP_MEMBERS",
    "INTERNAL_KINDS",
    "META",
    "OWNER",
    "REFS",
    "SNAT_BLOCKS",
    "UNIQUE",
    "WIRED",
    "Doc",
    "Key",
    "Tx",
    "as_object",
    "check_id",
    "ref_id",
    "referrers",
    "split_ref",
]
