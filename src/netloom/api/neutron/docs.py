"""Where the Neutron API keeps its documents and how they are tied to the native records they
become.

A Neutron object is stored as its whole Neutron representation under kind ``_neutron_<resource>``
(kinds starting with ``_`` are not topology: no agent ever sees them), with the same id as the
native record it becomes where there is one (network = bridge, subnet = DHCP subnet, port =
port). Every native record made for it has an ``_owner`` document naming it, so the native API
refuses to change it (409). The caller's identity travels as a :class:`Caller`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from netloom.api.neutron import faults
from netloom.api.service import ObjectService
from netloom.api.tx import OWNER, Doc, Tx, ref_id
from netloom.errors import NeutronFault

T = TypeVar("T")
# the new document of an update, from the stored one (checks, and what must be staged whether
# it changed or not); then what to stage once it is known to change (stamped already)
Change = Callable[[Tx, Doc], Doc]
Apply = Callable[[Tx, Doc, Doc], None]
# what else a delete stages (refusals, native records), before the document itself goes
Remove = Callable[[Tx, Doc], None]
# Neutron writes run one at a time in this process: they share hot reverse-reference documents
# (a network's bridge, a security group's chains), and optimistic retries of several at once
# only waste work (8 concurrent port creations on one network kept losing the race). Another
# cluster process on the same store still races through compare-and-set, as ever.
_WRITES = threading.Lock()

_TENANT_NS = uuid.UUID("0b6f1f0e-4a7c-4c44-9d55-5f3b7f3a1e21")


@dataclass(frozen=True)
class Caller:
    """Who asks: a project (None: none, as without Keystone), admin or not, roles."""

    project_id: str | None = None
    is_admin: bool = True
    roles: frozenset[str] = field(default_factory=frozenset)
    can_write: bool = True


def serial(fn: Callable[..., T], *args: Any) -> T:
    """Run one Neutron write (``fn(*args)``) while no other runs in this process."""
    with _WRITES:
        return fn(*args)


def kind(resource: str) -> str:
    """The store kind of a Neutron resource (``network`` -> ``_neutron_network``)."""
    return f"_neutron_{resource}"


def now() -> str:
    """Neutron's timestamp form: ``2026-01-31T12:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(doc: Doc, old: Doc | None) -> Doc:
    """The standard attributes of a write: created_at kept, updated_at now, revision + 1."""
    t = now()
    doc["created_at"] = old["created_at"] if old else t
    doc["updated_at"] = t
    doc["revision_number"] = (old["revision_number"] + 1) if old else 0
    doc.setdefault("tags", [])
    doc.setdefault("description", "")
    return doc


def get(tx: Tx, resource: str, id: str, caller: Caller) -> Doc:
    """The document, or the resource's NotFound (also for another project's private one)."""
    doc = tx.get(kind(resource), id)
    if doc is None or not visible(doc, caller):
        raise faults.not_found(resource, id)
    return doc


def get_own(tx: Tx, resource: str, id: str, caller: Caller) -> Doc:
    """The document a write changes: another project's is not found (403 when it is shared
    or external, as it is visible)."""
    doc = get(tx, resource, id, caller)
    if not caller.is_admin and doc.get("tenant_id") != caller.project_id:
        raise policy_denied(f"update_{resource}")
    return doc


def policy_denied(rule: str) -> NeutronFault:
    return NeutronFault(403, "PolicyNotAuthorized", f"rule:{rule} is disallowed by policy")


def visible(doc: Doc, caller: Caller) -> bool:
    """Neutron's default read policy: admin, the owner, or a shared or external network."""
    if caller.is_admin:
        return True
    if doc.get("tenant_id") == caller.project_id:
        return True
    return bool(doc.get("shared") or doc.get("router:external"))


def put(tx: Tx, resource: str, doc: Doc) -> None:
    tx.put(kind(resource), doc["id"], doc)


def delete(tx: Tx, resource: str, id: str) -> None:
    tx.delete(kind(resource), id)


def own(tx: Tx, native: str, id: str, resource: str, owner_id: str) -> None:
    """Mark native ``native`` ``id`` as made for Neutron ``resource`` ``owner_id``."""
    tx.put(OWNER, ref_id(native, id), {"owner": f"neutron:{resource}:{owner_id}"})


def disown(tx: Tx, native: str, id: str) -> None:
    if tx.get(OWNER, ref_id(native, id)) is not None:
        tx.delete(OWNER, ref_id(native, id))


def tenant_of(project_id: str) -> str:
    """The native tenant id of a Keystone project (its id is a UUID in hex, or any string)."""
    try:
        return str(uuid.UUID(project_id))
    except ValueError:
        return str(uuid.uuid5(_TENANT_NS, project_id))


def ensure_tenant(service: ObjectService, tx: Tx, project_id: str) -> str:
    """The project's native tenant, made in this commit on its first object."""
    tid = tenant_of(project_id)
    if tx.get("tenant", tid) is None:
        service.stage_create(tx, "tenant", {"id": tid, "name": ""})
        own(tx, "tenant", tid, "project", project_id)
    return tid


def check_revision(doc: Doc, if_match: str | None) -> None:
    """``If-Match: revision_number=N[, ...]``: 412 unless the stored revision is one of them."""
    if not if_match:
        return
    wanted = []
    for part in if_match.split(","):
        key, sep, value = part.strip().partition("=")
        if key != "revision_number" or not sep or not value.isdigit():
            raise faults.bad_request(f"Invalid If-Match header: {if_match}")
        wanted.append(int(value))
    if doc["revision_number"] not in wanted:
        raise NeutronFault(
            412,
            "RevisionNumberConstraintFailed",
            f"Constrained to {wanted[0]}, but current revision is {doc['revision_number']}",
        )


def update_plan(
    service: ObjectService,
    resource: str,
    who: tuple[Caller, str, str | None],
    change: Change,
    apply: Apply | None = None,
) -> Doc:
    """The one shape of a Neutron update, one commit: the caller's own document (``who``:
    caller, id, If-Match) at the revision it names, ``change`` makes the new one; an unchanged
    document is answered as it is, a changed one is stamped, ``apply`` stages what follows
    from it (``apply(tx, new, old)``) and it is stored."""
    caller, id, if_match = who

    def plan(tx: Tx) -> Doc:
        old = get_own(tx, resource, id, caller)
        check_revision(old, if_match)
        doc = change(tx, old)
        if doc == old:
            return old
        stamp(doc, old)
        if apply is not None:
            apply(tx, doc, old)
        put(tx, resource, doc)
        return doc

    return service.transact(plan)


def delete_plan(
    service: ObjectService, resource: str, who: tuple[Caller, str, str | None], remove: Remove
) -> None:
    """The one shape of a Neutron delete, one commit: the caller's own document at the
    revision it names, ``remove(tx, old)`` refuses or stages the rest, the document goes."""
    caller, id, if_match = who

    def plan(tx: Tx) -> None:
        old = get_own(tx, resource, id, caller)
        check_revision(old, if_match)
        remove(tx, old)
        delete(tx, resource, id)

    service.transact(plan)


__all__ = [
    "Apply",
    "Caller",
    "Change",
    "Remove",
    "check_revision",
    "delete",
    "delete_plan",
    "disown",
    "ensure_tenant",
    "get",
    "get_own",
    "kind",
    "now",
    "own",
    "policy_denied",
    "put",
    "serial",
    "stamp",
    "tenant_of",
    "update_plan",
    "visible",
]
