"""Neutron networks, translated to native bridges (same id; ``shared`` and ``router:external``
make the bridge shared, so other projects' ports may attach to it)."""

from __future__ import annotations

from typing import Any

from netloom.api.neutron import attrs, docs, faults, security_groups
from netloom.api.neutron.attrs import Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx, referrers
from netloom.model.types import new_id

RESOURCE = "network"
VXLAN_MTU = 1450  # 1500 less the VXLAN encapsulation (RFC 7348: 50 bytes)

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "admin_state_up": Attr(default=True, convert=attrs.to_bool),
    "shared": Attr(default=False, convert=attrs.to_bool),
    "router:external": Attr(default=False, convert=attrs.to_bool),
    "port_security_enabled": Attr(default=True, convert=attrs.to_bool),
    "status": Attr(post=False, put=False),
    "subnets": Attr(post=False, put=False),
    "mtu": Attr(post=False, put=False),
    "availability_zone_hints": Attr(put=False, default=[], convert=attrs.list_of(attrs.string())),
    "availability_zones": Attr(post=False, put=False),
    "ipv4_address_scope": Attr(post=False, put=False),
    "ipv6_address_scope": Attr(post=False, put=False),
    "l2_adjacency": Attr(post=False, put=False),
}


def _bridge(doc: Doc, tenant_id: str) -> Doc:
    return {
        "id": doc["id"],
        "tenant_id": tenant_id,
        "shared": bool(doc["shared"] or doc["router:external"]),
        "admin_state_up": doc["admin_state_up"],
    }


ADMIN_ONLY = ("shared", "router:external")


def _admin_only(given: Doc, caller: docs.Caller, action: str) -> None:
    for attr in ADMIN_ONLY:
        if given.get(attr) and not caller.is_admin:
            raise docs.policy_denied(f"{action}:{attr}")


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    _admin_only(given, caller, "create_network")
    project = attrs.check_project(given, caller)
    nid = given.pop("id", None) or new_id()
    base = {
        "id": nid,
        **given,
        "tenant_id": project,
        "project_id": project,
        "status": "ACTIVE",
        "subnets": [],
        "mtu": VXLAN_MTU,
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "l2_adjacency": True,
    }

    def plan(tx: Tx) -> Doc:
        if tx.get(docs.kind(RESOURCE), nid) is not None:
            raise faults.conflict("NetworkExists", f"Network {nid} already exists.")
        tid = docs.ensure_tenant(service, tx, project)
        security_groups.ensure_default(service, tx, project)
        doc = docs.stamp(dict(base), None)
        service.stage_create(tx, "bridge", _bridge(doc, tid))
        docs.own(tx, "bridge", nid, RESOURCE, nid)
        docs.put(tx, RESOURCE, doc)
        return doc

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)
    _admin_only({k: True for k in ADMIN_ONLY if k in given}, caller, "update_network")

    def apply(tx: Tx, doc: Doc, old: Doc) -> None:
        bridge = tx.get("bridge", id)
        assert bridge is not None
        want = _bridge(doc, bridge["tenant_id"])
        service.stage_update(tx, "bridge", id, {k: want[k] for k in ("shared", "admin_state_up")})

    return docs.update_plan(
        service, RESOURCE, (caller, id, if_match), lambda _tx, old: {**old, **given}, apply
    )


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        if referrers(tx, "bridge", id, "port", "device_id"):
            raise faults.conflict(
                "NetworkInUse",
                f"Unable to complete operation on network {id}. There are one or more ports"
                " still in use on the network.",
            )
        for subnet_id in old["subnets"]:
            docs.delete(tx, "subnet", subnet_id)
            docs.disown(tx, "dhcp_subnet", subnet_id)
        service.stage_delete(tx, "bridge", id, cascade=True)
        docs.disown(tx, "bridge", id)

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


__all__ = ["ATTRS", "RESOURCE", "create", "delete", "update"]
