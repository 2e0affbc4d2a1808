"""What ``--prune`` removes: the objects of the plan's tenants that the plan does not name.

Only tenant-owned kinds and their children are looked at (hosts, tunnel zones and the tenants
themselves never go), system-owned objects (a router port's routes) are left to their owner, and
the result is ordered so children go before their parents and referrers before what they
refer to.
"""

from __future__ import annotations

from collections.abc import Iterable

from netloom.model.kinds import KINDS, Kind
from netloom.plan.client import Doc, PlanClient

# tenant-owned kinds, deleted in this order after their children
OWNED = ("bridge", "router", "chain", "port_group", "ip_addr_group")
# (child kind, its parent field, parent kind), deleted in this order before the owned kinds
CHILDREN = (
    ("rule", "chain_id", "chain"),
    ("route", "router_id", "router"),
    ("dhcp_subnet", "bridge_id", "bridge"),
    ("port", "device_id", "bridge"),
    ("port", "device_id", "router"),
)


def doomed(client: PlanClient, tenants: Iterable[str], keep: set[str]) -> list[tuple[Kind, Doc]]:
    """The objects of ``tenants`` whose ids are not in ``keep``, children first."""
    owned: dict[str, list[Doc]] = {k: [] for k in OWNED}
    for tenant in sorted(set(tenants)):
        for k in OWNED:
            owned[k] += [
                d
                for d in client.list(KINDS[k].collection, {"tenant_id": tenant})
                if d.get("tenant_id") == tenant
            ]
    out: list[tuple[Kind, Doc]] = []
    for child, parent_field, parent in CHILDREN:
        for p in owned[parent]:
            for d in client.list(KINDS[child].collection, {parent_field: str(p["id"])}):
                if d.get(parent_field) == p["id"] and not d.get("system"):
                    out.append((KINDS[child], d))
    out += [(KINDS[k], d) for k in OWNED for d in owned[k]]
    return [(k, d) for k, d in out if str(d["id"]) not in keep]


__all__ = ["doomed"]
