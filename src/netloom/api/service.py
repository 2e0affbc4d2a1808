"""The domain object service: the one way topology objects are written.

Why one service: the API, the CLI (through the API), the Neutron translation, the topology
service and the test harness must all keep the same invariants -- no dangling reference, unique
MACs/tunnel keys/bindings, symmetric links, no jump cycles -- and those invariants must survive
several cluster processes writing the same ZooKeeper at once.

How: every public write runs a *plan* against a :class:`_Tx`, an optimistic transaction over the
:class:`~netloom.store.base.Store` protocol. The plan reads what it needs (each read is
remembered with its version), decides, and stages writes; the transaction then commits ONE
store commit in which every document read becomes a compare-and-set condition (a ``Check`` or
the ``expect_version`` of the ``Put``/``Delete`` that replaces it). If anything the plan looked
at changed in the meantime the commit fails as a whole and the plan is run again on fresh data
(a few times, with jittered backoff); a version the *caller* pinned (``expect_version``) is
compared by the plan itself, so a mismatch there is reported, never retried.

Integrity lives in internal documents, written in the same commits as the records:

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
    ``{"gen": n}``: bumped by every write that adds a jump edge, so two concurrent jump rules
    cannot each pass the cycle check against a graph that lacks the other.

Consumers of the change stream (topology service) should ignore kinds starting with ``_``.
"""

from __future__ import annotations

import builtins
import copy
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from netloom.errors import (
    AlreadyExists,
    Conflict,
    InUse,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from netloom.model import integrity
from netloom.model.kinds import KINDS
from netloom.store.base import Check, Delete, Item, Op, Put, Store

Doc = dict[str, Any]
T = TypeVar("T")

REFS = "_refs"
UNIQUE = "_unique"
COUNTER = "_counter"
META = "_meta"
INTERNAL_KINDS = (REFS, UNIQUE, COUNTER, META)

_Key = tuple[str, str]


class _Tx:
    """An optimistic transaction: cached reads with their versions, staged writes, and the
    single conditional commit that makes them atomic."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: dict[_Key, Item | None] = {}
        self._staged: dict[_Key, Doc | None] = {}

    def _load(self, key: _Key) -> Item | None:
        if key not in self._read:
            self._read[key] = self._store.get(*key)
        return self._read[key]

    def get(self, kind: str, id: str) -> Doc | None:
        """The document as this transaction sees it (its own staged writes included). A copy:
        plans may mutate it freely."""
        key = (kind, id)
        if key in self._staged:
            staged = self._staged[key]
            return copy.deepcopy(staged) if staged is not None else None
        item = self._load(key)
        return copy.deepcopy(item.data) if item is not None else None

    def version(self, kind: str, id: str) -> int:
        """The stored version (0: absent) as first read by this transaction."""
        item = self._load((kind, id))
        return item.version if item is not None else 0

    def put(self, kind: str, id: str, data: Doc) -> None:
        self._load((kind, id))
        self._staged[(kind, id)] = copy.deepcopy(data)

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


def _ref_id(kind: str, id: str) -> str:
    return f"{kind}:{id}"


def _split(ref: str) -> _Key:
    kind, _, id = ref.partition(":")
    return kind, id


class ObjectService:
    """Create/read/update/delete topology objects with referential integrity.

    Records cross this boundary as JSON dicts (``model_dump(mode="json")`` of the record
    classes in :mod:`netloom.model.records`) together with their store version."""

    max_attempts = 24

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads -------------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> tuple[Doc, int]:
        k = integrity.kind(kind)
        _check_id(kind, id)
        item = self.store.get(k.name, id)
        if item is None:
            raise NotFound(f"no {kind} {id}", field="id")
        return copy.deepcopy(item.data), item.version

    def list(
        self, kind: str, filters: Mapping[str, str] | None = None
    ) -> builtins.list[tuple[Doc, int]]:
        k = integrity.kind(kind)
        wanted = {f: integrity.filter_value(kind, f, v) for f, v in (filters or {}).items()}
        out = [
            (copy.deepcopy(it.data), it.version)
            for it in self.store.list(k.name)
            if all(integrity.filter_matches(it.data.get(f), v) for f, v in wanted.items())
        ]
        out.sort(key=lambda pair: str(pair[0].get("id")))
        return out

    def revision(self) -> int:
        return self.store.revision()

    # -- writes ------------------------------------------------------------------------------

    def create(self, kind: str, data: Mapping[str, Any]) -> tuple[Doc, int]:
        k = integrity.kind(kind)
        body = _as_object(data)
        for field in sorted(k.read_only & body.keys()):
            raise InvalidInput(f"{field} is set by the system and cannot be given", field=field)
        record = integrity.validate(kind, body)

        def plan(tx: _Tx) -> tuple[Doc, int]:
            new = dict(record)
            if tx.version(kind, new["id"]):
                raise AlreadyExists(f"{kind} {new['id']} already exists", field="id")
            if kind == "port":
                new["tunnel_key"] = self._allocate_tunnel_key(tx)
            self._save(tx, kind, new["id"], None, new)
            return new, 1

        return self._run(plan)

    def update(
        self, kind: str, id: str, patch: Mapping[str, Any], expect_version: int | None = None
    ) -> tuple[Doc, int]:
        """Partial update (RFC 7396 merge patch), re-validated as a whole record."""
        integrity.kind(kind)
        body = _as_object(patch)
        return self._modify(
            kind, id, lambda old: integrity.merge_patch(old, body), body, expect_version
        )

    def replace(
        self, kind: str, id: str, data: Mapping[str, Any], expect_version: int | None = None
    ) -> tuple[Doc, int]:
        """Full replacement (PUT); system-owned fields keep their values."""
        k = integrity.kind(kind)
        body = _as_object(data)

        def build(old: Doc) -> Doc:
            new = dict(body)
            for field in k.read_only:
                if field in old:
                    new.setdefault(field, old[field])
            new.setdefault("id", id)
            return new

        return self._modify(kind, id, build, body, expect_version)

    def delete(
        self, kind: str, id: str, cascade: bool = False, expect_version: int | None = None
    ) -> None:
        integrity.kind(kind)

        def plan(tx: _Tx) -> None:
            self._expect(tx, kind, id, expect_version)
            doomed: dict[str, Doc] = {}
            self._collect(tx, kind, id, cascade, doomed)
            unlink = self._blockers(tx, doomed, cascade)
            for ref, data in doomed.items():
                self._save(tx, *_split(ref), data, None, dying=doomed.keys())
            for peer_id in unlink:
                peer = tx.get("port", peer_id)
                assert peer is not None
                self._save(
                    tx, "port", peer_id, peer, {**peer, "peer_id": None}, dying=doomed.keys()
                )
            for ref in doomed:
                if tx.get(REFS, ref) is not None:
                    tx.delete(REFS, ref)

        self._run(plan)

    def bind_port(self, port_id: str, host_id: str, interface_name: str) -> tuple[Doc, int]:
        return self.update("port", port_id, {"host_id": host_id, "interface_name": interface_name})

    def unbind_port(self, port_id: str) -> tuple[Doc, int]:
        return self.update("port", port_id, {"host_id": None, "interface_name": None})

    def link_ports(self, a: str, b: str) -> tuple[Doc, int]:
        """Link two ports; both ``peer_id`` fields are written in one commit."""
        if not isinstance(b, str):
            raise InvalidInput("peer_id must be a port id", field="peer_id")
        return self.update("port", a, {"peer_id": b})

    def unlink_port(self, a: str) -> tuple[Doc, int]:
        return self.update("port", a, {"peer_id": None})

    def set_host_alive(self, host_id: str, alive: bool) -> tuple[Doc, int]:
        """The only writer of ``host.alive`` (the topology service, from agent liveness)."""

        _check_id("host", host_id)

        def plan(tx: _Tx) -> tuple[Doc, int]:
            host = tx.get("host", host_id)
            if host is None:
                raise NotFound(f"no host {host_id}", field="host_id")
            version = tx.version("host", host_id)
            if host.get("alive") is bool(alive):
                return host, version
            host["alive"] = bool(alive)
            tx.put("host", host_id, host)
            return host, version + 1

        return self._run(plan)

    # -- machinery ---------------------------------------------------------------------------

    def _run(self, plan: Callable[[_Tx], T]) -> T:
        """Run ``plan`` and commit its transaction; re-run it when a concurrent writer changed
        what it read. Errors the plan raises (bad input, caller's version) pass through."""
        last: Exception | None = None
        for attempt in range(self.max_attempts):
            tx = _Tx(self.store)
            result = plan(tx)
            if not tx.writes:
                return result
            try:
                self.store.commit(tx.ops())
                return result
            except (VersionConflict, AlreadyExists, NotFound) as exc:
                last = exc
                time.sleep(random.uniform(0, min(0.05, 0.001 * (2**attempt))))
        raise VersionConflict(
            f"gave up after {self.max_attempts} attempts: concurrent writers keep changing the"
            f" same objects ({last})"
        )

    def _modify(
        self,
        kind: str,
        id: str,
        build: Callable[[Doc], Doc],
        body: Mapping[str, Any],
        expect_version: int | None,
    ) -> tuple[Doc, int]:
        k = integrity.kind(kind)

        def plan(tx: _Tx) -> tuple[Doc, int]:
            version = self._expect(tx, kind, id, expect_version)
            old = tx.get(kind, id)
            assert old is not None
            draft = build(old)
            if str(draft.get("id", id)) != id:
                raise InvalidInput("id cannot be changed", field="id")
            for field in sorted(k.read_only & body.keys()):
                if body[field] != old.get(field):
                    raise InvalidInput(
                        f"{field} is set by the system and cannot be changed", field=field
                    )
            new = integrity.validate(kind, draft)
            for field in sorted(integrity.IMMUTABLE.get(kind, frozenset())):
                if new.get(field) != old.get(field):
                    raise InvalidInput(f"{field} cannot be changed after creation", field=field)
            if new == old:
                return old, version
            self._save(tx, kind, id, old, new)
            return new, version + 1

        return self._run(plan)

    @staticmethod
    def _expect(tx: _Tx, kind: str, id: str, expect_version: int | None) -> int:
        """The object's version; NotFound if absent, VersionConflict if the caller pinned
        another one."""
        _check_id(kind, id)
        version = tx.version(kind, id)
        if not version:
            raise NotFound(f"no {kind} {id}", field="id")
        if expect_version is not None and expect_version != version:
            asked = f", not {expect_version}" if expect_version >= 1 else ""
            raise VersionConflict(f"{kind} {id} is at version {version}{asked}", field="version")
        return version

    def _save(
        self, tx: _Tx, kind: str, id: str, old: Doc | None, new: Doc | None, dying: Any = ()
    ) -> None:
        """Stage one record write (``new`` None: delete) with everything it implies: the
        kind's own rules, reverse references, unique indexes. ``dying``: objects deleted in the
        same commit, whose reverse-reference documents go away anyway."""
        if new is not None:
            self._kind_rules(tx, kind, id, old, new)
        self._save_refs(tx, kind, id, old, new, dying)
        self._save_unique(tx, kind, id, old, new)
        if new is None:
            tx.delete(kind, id)
        else:
            tx.put(kind, id, new)
        if kind == "port":
            self._save_peer(tx, id, old, new)

    def _save_refs(
        self, tx: _Tx, kind: str, id: str, old: Doc | None, new: Doc | None, dying: Any
    ) -> None:
        me = _ref_id(kind, id)
        before = integrity.references(kind, old)
        after = integrity.references(kind, new)
        for tk, tid, field in sorted(after - before):
            if (tk, tid) == (kind, id):
                raise InvalidInput(f"{field}: a {kind} cannot reference itself", field=field)
            if tx.get(tk, tid) is None:
                raise InvalidInput(f"{field}: no {tk} {tid}", field=field)
            doc = tx.get(REFS, _ref_id(tk, tid)) or {"referrers": {}}
            fields = set(doc["referrers"].get(me, ())) | {field}
            doc["referrers"][me] = sorted(fields)
            tx.put(REFS, _ref_id(tk, tid), doc)
        for tk, tid, field in sorted(before - after):
            target = _ref_id(tk, tid)
            if target in dying:
                continue
            current = tx.get(REFS, target)
            if current is None or me not in current["referrers"]:
                continue
            left = set(current["referrers"][me]) - {field}
            if left:
                current["referrers"][me] = sorted(left)
            else:
                del current["referrers"][me]
            if current["referrers"]:
                tx.put(REFS, target, current)
            else:
                tx.delete(REFS, target)

    @staticmethod
    def _save_unique(tx: _Tx, kind: str, id: str, old: Doc | None, new: Doc | None) -> None:
        me = _ref_id(kind, id)
        before = integrity.unique_keys(kind, old)
        after = integrity.unique_keys(kind, new)
        for key in sorted(before.keys() - after.keys()):
            doc = tx.get(UNIQUE, key)
            if doc is not None and doc.get("owner") == me:
                tx.delete(UNIQUE, key)
        for key in sorted(after.keys() - before.keys()):
            doc = tx.get(UNIQUE, key)
            if doc is not None and doc.get("owner") != me:
                raise AlreadyExists(_taken(key, str(doc.get("owner"))), field=after[key])
            tx.put(UNIQUE, key, {"owner": me})

    def _kind_rules(self, tx: _Tx, kind: str, id: str, old: Doc | None, new: Doc) -> None:
        if kind == "port":
            self._check_port_device(tx, new)
        elif kind == "route":
            self._check_route(tx, new)
        elif kind == "rule":
            self._check_jump(tx, id, old, new)

    @staticmethod
    def _check_port_device(tx: _Tx, port: Doc) -> None:
        """A port's ``type`` names its device's kind (a router port on a bridge would have an
        address nothing routes to)."""
        want = port["type"]
        if tx.get(want, port["device_id"]) is not None:
            return
        other = "bridge" if want == "router" else "router"
        if tx.get(other, port["device_id"]) is not None:
            raise InvalidInput(
                f"device_id: {port['device_id']} is a {other}, but the port's type is {want!r}",
                field="device_id",
            )
        raise InvalidInput(f"device_id: no {want} {port['device_id']}", field="device_id")

    @staticmethod
    def _check_route(tx: _Tx, route: Doc) -> None:
        """A route leaves through one of its own router's ports."""
        port_id = route.get("next_hop_port_id")
        if port_id is None:
            return
        port = tx.get("port", port_id)
        if port is None:
            raise InvalidInput(f"next_hop_port_id: no port {port_id}", field="next_hop_port_id")
        if port["device_id"] != route["router_id"]:
            raise InvalidInput(
                f"next_hop_port_id: port {port_id} belongs to {port['type']} "
                f"{port['device_id']}, not to router {route['router_id']}",
                field="next_hop_port_id",
            )

    def _check_jump(self, tx: _Tx, id: str, old: Doc | None, new: Doc) -> None:
        """Refuse a jump that closes a loop in the chain graph (see integrity.jump_cycle)."""
        edge = (new["chain_id"], new.get("jump_chain_id"))
        if edge[1] is None or (
            old is not None and (old["chain_id"], old.get("jump_chain_id")) == edge
        ):
            return
        gen = tx.get(META, "jump_graph") or {"gen": 0}
        tx.put(META, "jump_graph", {"gen": int(gen["gen"]) + 1})
        edges: dict[str, set[str]] = {}
        for item in self.store.list("rule"):
            rule = item.data
            if item.id != id and rule.get("jump_chain_id"):
                edges.setdefault(rule["chain_id"], set()).add(rule["jump_chain_id"])
        path = integrity.jump_cycle(edges, edge[0], edge[1])
        if path is not None:
            loop = " -> ".join([edge[0], *path])
            raise InvalidInput(
                f"jump_chain_id: the jump would create a cycle: chains {loop}",
                field="jump_chain_id",
            )

    def _save_peer(self, tx: _Tx, id: str, old: Doc | None, new: Doc | None) -> None:
        """Keep interior links symmetric: linking/unlinking a port writes its peer too."""
        before = old.get("peer_id") if old else None
        after = new.get("peer_id") if new else None
        if before == after:
            return
        if new is not None and before is not None and after is not None:
            raise Conflict(
                f"port {id} is already linked to {before}; unlink it first", field="peer_id"
            )
        if before is not None and new is not None:
            peer = tx.get("port", before)
            if peer is not None and peer.get("peer_id") == id:
                self._save(tx, "port", before, peer, {**peer, "peer_id": None})
        if after is not None and new is not None:
            peer = tx.get("port", after)
            if peer is None:
                raise InvalidInput(f"peer_id: no port {after}", field="peer_id")
            integrity.check_link(new, peer)
            if peer.get("peer_id") != id:
                self._save(tx, "port", after, peer, {**peer, "peer_id": id})

    def _allocate_tunnel_key(self, tx: _Tx) -> int:
        """The next free 20-bit tunnel key, searching from a shared CAS counter."""
        counter = tx.get(COUNTER, "tunnel_key") or {"next": 1}
        key = int(counter["next"])
        for _ in range(integrity.TUNNEL_KEY_MAX):
            if not 1 <= key <= integrity.TUNNEL_KEY_MAX:
                key = 1
            if tx.get(UNIQUE, f"tunnel_key:{key}") is None:
                tx.put(COUNTER, "tunnel_key", {"next": key % integrity.TUNNEL_KEY_MAX + 1})
                return key
            key += 1
        raise Conflict("all 2^20-1 tunnel keys are in use", field="tunnel_key")

    def _collect(self, tx: _Tx, kind: str, id: str, cascade: bool, doomed: dict[str, Doc]) -> None:
        """The object and, with ``cascade``, its children (KINDS[kind].children) recursively,
        found through its reverse references."""
        ref = _ref_id(kind, id)
        if ref in doomed:
            return
        data = tx.get(kind, id)
        if data is None:
            raise NotFound(f"no {kind} {id}", field="id")
        doomed[ref] = data
        if not cascade:
            return
        referrers = (tx.get(REFS, ref) or {"referrers": {}})["referrers"]
        for child_kind, field in KINDS[kind].children:
            for referrer, fields in sorted(referrers.items()):
                rk, rid = _split(referrer)
                if rk == child_kind and field in fields:
                    self._collect(tx, rk, rid, cascade, doomed)

    @staticmethod
    def _blockers(tx: _Tx, doomed: Mapping[str, Doc], cascade: bool) -> builtins.list[str]:
        """Raise InUse if something outside the deletion set references it; return the ports
        to unlink (with ``cascade``, a link to a deleted port is undone rather than blocking)."""
        blocking: builtins.list[str] = []
        unlink: builtins.list[str] = []
        for ref in doomed:
            referrers = (tx.get(REFS, ref) or {"referrers": {}})["referrers"]
            for referrer, fields in sorted(referrers.items()):
                if referrer in doomed:
                    continue
                if cascade and fields == ["peer_id"] and referrer.startswith("port:"):
                    unlink.append(_split(referrer)[1])
                else:
                    blocking.append(f"{referrer} (its {', '.join(fields)} -> {ref})")
        if blocking:
            shown = "; ".join(blocking[:5])
            more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
            hint = "" if cascade else "; delete those first, or cascade to delete children"
            raise InUse(f"still referenced by {shown}{more}{hint}")
        return unlink


def _check_id(kind: str, id: str) -> None:
    """Every record id is a canonical UUID; anything else cannot exist, and must not reach a
    backend whose keys are paths (ZooKeeper: ``..`` or ``/`` in an id would escape)."""
    try:
        ok = str(uuid.UUID(id)) == id
    except (ValueError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise NotFound(f"no {kind} {id!r} (ids are lowercase UUIDs)", field="id")


def _taken(key: str, owner: str) -> str:
    index, _, value = key.partition(":")
    if index == "binding":
        host, _, iface = value.partition(":")
        return f"interface {iface} of host {host} is already bound to {owner}"
    return f"{index} {value} is already used by {owner}"


def _as_object(data: Any) -> Doc:
    if not isinstance(data, Mapping):
        raise InvalidInput("the body must be a JSON object")
    return dict(data)


__all__ = ["INTERNAL_KINDS", "ObjectService"]
