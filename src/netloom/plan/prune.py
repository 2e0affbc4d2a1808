"""What ``--prune`` removes: the objects of the plan's tenants that the plan does not name.

Only tenant-owned kinds (``scope`` ``tenant_id``) and their cascade children are looked at
(hosts, tunnel zones and the tenants themselves never go), system-owned objects (a router
port's routes) are left to their owner, and the result is ordered so children go before their
parents and referrers before what they refer to.
"""

from __future__ import annotations

from collections.abc import Iterable

from netloom.model.kinds import KINDS, Kind
from netloom.plan.client import Doc, PlanClient


def referrers_first(kinds: Iterable[Kind]) -> list[Kind]:
    """``kinds`` ordered so a kind comes before the kinds it references (cycles: plan order)."""
    pending = list(dict.fromkeys(kinds))
    out: list[Kind] = []
    while pending:
        wanted = {t for o in pending for r in o.refs for t in r.target if t != o.name}
        ready = [k for k in pending if k.name not in wanted] or pending[:1]
        out += ready
        pending = [k for k in pending if k not in ready]
    return out


OWNED = referrers_first(k for k in KINDS.values() if k.scope == "tenant_id")
# (child kind, its parent field, parent kind) of the owned kinds' cascades
CHILDREN = [
    (KINDS[child], parent_field, parent)
    for child_kind in referrers_first(KINDS[c] for p in OWNED for c, _ in p.children)
    for parent in OWNED
    for child, parent_field in parent.children
    if child == child_kind.name
]


def system_owned(d: Doc) -> bool:
    """Made and removed by the system with another object: a router port's routes, a port
    group's address group. Never pruned, never matched to a document."""
    return bool(d.get("system") or d.get("port_group_id"))


def doomed(client: PlanClient, tenants: Iterable[str], keep: set[str]) -> list[tuple[Kind, Doc]]:
    """The objects of ``tenants`` whose ids are not in ``keep``, children first."""
    owned: dict[str, list[Doc]] = {k.name: [] for k in OWNED}
    for tenant in sorted(set(tenants)):
        for k in OWNED:
            owned[k.name] += [
                d
                for d in client.list(k.collection, {"tenant_id": tenant})
                if d.get("tenant_id") == tenant and not system_owned(d)
            ]
    out: list[tuple[Kind, Doc]] = []
    for child, parent_field, parent in CHILDREN:
        for p in owned[parent.name]:
            for d in client.list(child.collection, {parent_field: str(p["id"])}):
                if d.get(parent_field) == p["id"] and not system_owned(d):
                    out.append((child, d))
    out += [(k, d) for k in OWNED for d in owned[k.name]]
    return [(k, d) for k, d in out if str(d["id"]) not in keep]


__all__ = ["CHILDREN", "OWNED", "doomed", "referrers_first", "system_owned"]
