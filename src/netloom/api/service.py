"""The domain object service: the one way topology objects are written.

Why one service: the API, the CLI (through the API), the Neutron translation, the topology
service and the test harness must all keep the same invariants -- no dangling reference, unique
MACs/tunnel keys/bindings, symmetric links, no jump cycles -- and those invariants must survive
several cluster processes writing the same ZooKeeper at once.

How: every public write runs a *plan* against a :class:`Tx`, an optimistic transaction over the
:class:`~netloom.store.base.Store` protocol. The plan reads what it needs (each read is
remembered with its version), decides, and stages writes; the transaction then commits ONE
store commit in which every document read becomes a compare-and-set condition (a ``Check`` or
the ``expect_version`` of the ``Put``/``Delete`` that replaces it). If anything the plan looked
at changed in the meantime the commit fails as a whole and the plan is run again on fresh data
(a few times, with jittered backoff); a version the *caller* pinned (``expect_version``) is
compared by the plan itself, so a mismatch there is reported, never retried.

Integrity lives in internal documents written in the same commits as the records: see
:mod:`netloom.api.tx`.

Consumers of the change stream (topology service) should ignore kinds starting with ``_``.
"""

from __future__ import annotations

import builtins
import copy
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from netloom.api import bgp, listing, policy, views
from netloom.api.tx import REFS, UNIQUE, Doc, Tx, as_object, check_id, ref_id, split_ref
from netloom.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from netloom.model import addressing, integrity
from netloom.model.kinds import KINDS
from netloom.model.types import new_id
from netloom.store.base import Store

T = TypeVar("T")


class ObjectService:
    """Create/read/update/delete topology objects with referential integrity; records cross
    this boundary as JSON dicts with their store version."""

    max_attempts = 24

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads -------------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> tuple[Doc, int]:
        k = integrity.kind(kind)
        check_id(kind, id)
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
            for it in listing.candidates(self.store, k.name, wanted)
            if all(integrity.filter_matches(it.data.get(f), v) for f, v in wanted.items())
        ]
        out.sort(key=lambda pair: listing.sort_key(kind, listing.ListQuery(), pair[0]))
        return out

    def list_page(
        self, kind: str, filters: Mapping[str, str], query: listing.ListQuery
    ) -> tuple[builtins.list[tuple[Doc, int]], bool]:
        """One page of a sorted list, and whether more follow it."""
        items = self.list(kind, filters)
        marker = None
        if query.marker is not None:
            found = None
            try:
                check_id(kind, query.marker)
                found = self.store.get(kind, query.marker)
            except NotFound:
                pass
            if found is None:
                raise NotFound(f"marker: no {kind} {query.marker}", field="marker")
            marker = found.data
        return listing.page(kind, items, query, marker)

    def revision(self) -> int:
        return self.store.revision()

    # -- writes ------------------------------------------------------------------------------

    def create(self, kind: str, data: Mapping[str, Any]) -> tuple[Doc, int]:
        integrity.kind(kind)
        body = as_object(data)
        body.setdefault("id", new_id())
        return self.run(lambda tx: (self.stage_create(tx, kind, body), 1))

    def stage_create(self, tx: Tx, kind: str, data: Mapping[str, Any]) -> Doc:
        """Stage the creation of one record in ``tx`` (a plan of :meth:`transact`); the new
        record as stored."""
        k = integrity.kind(kind)
        body = as_object(data)
        for field in sorted(k.read_only & body.keys()):
            raise InvalidInput(f"{field} is set by the system and cannot be given", field=field)
        views.check_secrets(k, body)
        append = kind == "rule" and body.get("position") is None
        if append:
            body.pop("position", None)
        draft = dict(body)
        draft.setdefault("id", new_id())
        if kind == "port":
            policy.fill_mac(tx, self.store, draft)
            policy.fill_ips(tx, self.store, draft)
        elif kind == "port_group":
            draft["ip_addr_group_id"] = addressing.group_addresses_id(draft["id"])
        new = integrity.validate(kind, draft)
        if tx.version(kind, new["id"]):
            raise AlreadyExists(f"{kind} {new['id']} already exists", field="id")
        if kind == "port":
            new["tunnel_key"] = policy.allocate_tunnel_key(tx)
        self.save(tx, kind, new["id"], None, new, append=append)
        return new

    def transact(self, plan: Callable[[Tx], T]) -> T:
        """Run ``plan`` (staging several records with :meth:`stage_create`, :meth:`stage_update`,
        :meth:`stage_delete`, and documents of its own) as ONE store commit; owned records are
        not guarded here: the caller owns them."""
        return self.run(plan)

    def update(
        self, kind: str, id: str, patch: Mapping[str, Any], expect_version: int | None = None
    ) -> tuple[Doc, int]:
        """Partial update (RFC 7396 merge patch), re-validated as a whole record."""
        integrity.kind(kind)
        body = as_object(patch)
        return self._modify(
            kind, id, lambda old: integrity.merge_patch(old, body), body, expect_version
        )

    def replace(
        self, kind: str, id: str, data: Mapping[str, Any], expect_version: int | None = None
    ) -> tuple[Doc, int]:
        """Full replacement (PUT); system-owned fields keep their values."""
        k = integrity.kind(kind)
        body = as_object(data)

        def build(old: Doc) -> Doc:
            new = dict(body)
            for field in k.read_only | integrity.KEPT.get(kind, frozenset()):
                if field in old:
                    new.setdefault(field, old[field])
            new.setdefault("id", id)
            return new

        return self._modify(kind, id, build, body, expect_version)

    def delete(
        self, kind: str, id: str, cascade: bool = False, expect_version: int | None = None
    ) -> None:
        integrity.kind(kind)

        def plan(tx: Tx) -> None:
            self._expect(tx, kind, id, expect_version)
            self._stage_delete(tx, kind, id, cascade, hand=True)

        self.run(plan)

    def stage_delete(self, tx: Tx, kind: str, id: str, cascade: bool = False) -> None:
        """Stage the deletion of one record (and, with ``cascade``, its children) in ``tx``."""
        integrity.kind(kind)
        self._expect(tx, kind, id, None)
        self._stage_delete(tx, kind, id, cascade, hand=False)

    def _stage_delete(self, tx: Tx, kind: str, id: str, cascade: bool, *, hand: bool) -> None:
        doomed: dict[str, Doc] = {}
        self._collect(tx, kind, id, cascade, doomed)
        if hand:
            for ref in doomed:
                policy.check_owner(tx, *split_ref(ref))
        policy.add_system_routes(tx, doomed)
        bgp.add_learned(tx, doomed)
        policy.add_group_addresses(tx, doomed)
        unlink = policy.blockers(tx, doomed, cascade)
        for ref, data in doomed.items():
            self.save(tx, *split_ref(ref), data, None, dying=doomed.keys())
        for peer_id in unlink:
            peer = tx.get("port", peer_id)
            assert peer is not None
            self.save(tx, "port", peer_id, peer, {**peer, "peer_id": None}, dying=doomed.keys())
        for ref in doomed:
            if tx.get(REFS, ref) is not None:
                tx.delete(REFS, ref)

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

        check_id("host", host_id)

        def plan(tx: Tx) -> tuple[Doc, int]:
            host = tx.get("host", host_id)
            if host is None:
                raise NotFound(f"no host {host_id}", field="host_id")
            version = tx.version("host", host_id)
            if host.get("alive") is bool(alive):
                return host, version
            host["alive"] = bool(alive)
            tx.put("host", host_id, host)
            return host, version + 1

        return self.run(plan)

    # -- machinery ---------------------------------------------------------------------------

    def run(self, plan: Callable[[Tx], T]) -> T:
        """Run ``plan`` and commit its transaction; re-run it when a concurrent writer changed
        what it read. Errors the plan raises (bad input, caller's version) pass through."""
        last: Exception | None = None
        for attempt in range(self.max_attempts):
            tx = Tx(self.store)
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
        def plan(tx: Tx) -> tuple[Doc, int]:
            return self._stage_modify(tx, kind, id, build, body, expect_version, hand=True)

        return self.run(plan)

    def stage_update(self, tx: Tx, kind: str, id: str, patch: Mapping[str, Any]) -> Doc:
        """Stage a merge patch of one record in ``tx`` (a plan of :meth:`transact`)."""
        body = as_object(patch)
        doc, _ = self._stage_modify(
            tx, kind, id, lambda old: integrity.merge_patch(old, body), body, None, hand=False
        )
        return doc

    def _stage_modify(
        self,
        tx: Tx,
        kind: str,
        id: str,
        build: Callable[[Doc], Doc],
        body: Mapping[str, Any],
        expect_version: int | None,
        *,
        hand: bool,
    ) -> tuple[Doc, int]:
        k = integrity.kind(kind)
        # a bad body is reported (400) before a version mismatch (409/412)
        version = self._expect(tx, kind, id, None)
        old = tx.get(kind, id)
        assert old is not None
        policy.check_hand_write(kind, id, old)
        if hand:
            policy.check_owner(tx, kind, id)
        draft = views.keep_secrets(k, old, build(old))
        if kind == "port":
            policy.fill_ips(tx, self.store, draft)
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
        self._expect(tx, kind, id, expect_version)
        if new == old:
            return old, version
        self.save(tx, kind, id, old, new)
        return new, version + 1

    @staticmethod
    def _expect(tx: Tx, kind: str, id: str, expect_version: int | None) -> int:
        """The object's stored version (0: staged in this transaction); NotFound if absent,
        VersionConflict if the caller pinned another one."""
        check_id(kind, id)
        version = tx.version(kind, id)
        if not tx.exists(kind, id):
            raise NotFound(f"no {kind} {id}", field="id")
        if expect_version is not None and expect_version != version:
            asked = f", not {expect_version}" if expect_version >= 1 else ""
            raise VersionConflict(f"{kind} {id} is at version {version}{asked}", field="version")
        return version

    def save(
        self,
        tx: Tx,
        kind: str,
        id: str,
        old: Doc | None,
        new: Doc | None,
        dying: Any = (),
        append: bool = False,
    ) -> None:
        """Stage one record write (``new`` None: delete) with everything it implies: the
        kind's own rules, reverse references, unique indexes, a router port's routes.
        ``dying``: objects deleted in the same commit, whose reverse-reference documents go
        away anyway. ``append``: a new rule goes after its chain's last one."""
        if new is not None:
            self._kind_rules(tx, kind, id, old, new, append)
        subnet_left = (
            new is not None or ref_id("bridge", str((old or {}).get("bridge_id"))) not in dying
        )
        if kind == "dhcp_subnet" and old is not None and subnet_left:
            policy.check_subnet_change(tx, old, new)
        self._save_refs(tx, kind, id, old, new, dying)
        self._save_unique(tx, kind, id, old, new)
        if new is None:
            tx.delete(kind, id)
        else:
            tx.put(kind, id, new)
        if kind == "port":
            self._save_peer(tx, id, old, new)
            policy.sync_group_addresses(tx, id, old, new, dying)
            if new is not None:
                self._save_system_routes(tx, id, old, new)
        elif kind == "port_group" and new is not None:
            self._save_group_addresses(tx, old, new)

    def _save_refs(
        self, tx: Tx, kind: str, id: str, old: Doc | None, new: Doc | None, dying: Any
    ) -> None:
        me = ref_id(kind, id)
        before = integrity.references(kind, old)
        after = integrity.references(kind, new)
        for tk, tid, field in sorted(after - before):
            if (tk, tid) == (kind, id):
                raise InvalidInput(f"{field}: a {kind} cannot reference itself", field=field)
            if not tx.exists(tk, tid):
                raise InvalidInput(f"{field}: no {tk} {tid}", field=field)
            doc = tx.edit(REFS, ref_id(tk, tid)) or {"referrers": {}}
            fields = set(doc["referrers"].get(me, ())) | {field}
            doc["referrers"][me] = sorted(fields)
            tx.put(REFS, ref_id(tk, tid), doc)
        for tk, tid, field in sorted(before - after):
            target = ref_id(tk, tid)
            if target in dying:
                continue
            current = tx.edit(REFS, target)
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
    def _save_unique(tx: Tx, kind: str, id: str, old: Doc | None, new: Doc | None) -> None:
        me = ref_id(kind, id)
        before = integrity.unique_keys(kind, old)
        after = integrity.unique_keys(kind, new)
        for key in sorted(before.keys() - after.keys()):
            doc = tx.get(UNIQUE, key)
            if doc is not None and doc.get("owner") == me:
                tx.delete(UNIQUE, key)
        for key in sorted(after.keys() - before.keys()):
            doc = tx.get(UNIQUE, key)
            if doc is not None and doc.get("owner") != me:
                raise AlreadyExists(integrity.taken(key, str(doc.get("owner"))), field=after[key])
            tx.put(UNIQUE, key, {"owner": me})

    def _kind_rules(
        self, tx: Tx, kind: str, id: str, old: Doc | None, new: Doc, append: bool
    ) -> None:
        added = integrity.references(kind, new) - integrity.references(kind, old)
        policy.check_tenancy(tx, kind, new, added)
        if KINDS[kind].scope == "tenant_id":
            policy.check_unshare(tx, kind, id, old, new)
        if kind == "port":
            policy.check_port_device(tx, new)
            policy.check_fixed_ips(tx, new, old)
        elif kind == "route":
            policy.check_route(tx, new)
        elif kind == "bgp_peer":
            bgp.check_peer(tx, new)
        elif kind == "rule":
            policy.check_jump(tx, self.store, id, old, new)
            if append or old is None or old["position"] != new["position"]:
                moves = policy.place_rule(tx, id, new, None if append else new["position"])
                for rid, position in moves.items():
                    tx.put("rule", rid, {**(tx.get("rule", rid) or {}), "position": position})

    def _save_system_routes(self, tx: Tx, id: str, old: Doc | None, new: Doc) -> None:
        """A router port's connected and local routes follow its address (same commit)."""
        if old is not None and old.get("address") == new.get("address"):
            return
        want = addressing.system_routes(new)
        for rid in addressing.system_route_ids(id):
            have = tx.get("route", rid)
            doc = integrity.validate("route", want[rid]) if rid in want else None
            if have != doc:
                self.save(tx, "route", rid, have, doc)

    def _save_group_addresses(self, tx: Tx, old: Doc | None, new: Doc) -> None:
        """A port group's address group is made with it and shared when it is."""
        gid = new.get("ip_addr_group_id")
        have = tx.get("ip_addr_group", gid) if gid else None
        if gid and have is None and old is None:
            doc = integrity.validate("ip_addr_group", addressing.group_addresses(new))
            self.save(tx, "ip_addr_group", gid, None, doc)
        elif gid and have is not None and have["shared"] != bool(new.get("shared")):
            self.save(tx, "ip_addr_group", gid, have, {**have, "shared": new["shared"]})

    def _save_peer(self, tx: Tx, id: str, old: Doc | None, new: Doc | None) -> None:
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
                self.save(tx, "port", before, peer, {**peer, "peer_id": None})
        if after is not None and new is not None:
            peer = tx.get("port", after)
            if peer is None:
                raise InvalidInput(f"peer_id: no port {after}", field="peer_id")
            integrity.check_link(new, peer)
            if peer.get("peer_id") != id:
                self.save(tx, "port", after, peer, {**peer, "peer_id": id})

    def _collect(self, tx: Tx, kind: str, id: str, cascade: bool, doomed: dict[str, Doc]) -> None:
        """The object and, with ``cascade``, its children (KINDS[kind].children) recursively,
        found through its reverse references."""
        ref = ref_id(kind, id)
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
                rk, rid = split_ref(referrer)
                if rk == child_kind and field in fields:
                    self._collect(tx, rk, rid, cascade, doomed)


__all__ = ["ObjectService"]
