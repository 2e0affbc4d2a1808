"""Neutron security groups (and each project's ``default`` group with Neutron's default rules:
all egress, and ingress from the group's own members, for IPv4 and IPv6), translated by
:mod:`.sg_native`."""

from __future__ import annotations

from typing import Any

from netloom.api.neutron import attrs, docs, faults, sg_native
from netloom.api.neutron.attrs import Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx, referrers
from netloom.model.types import new_id

RESOURCE = "security_group"
RULE = "security_group_rule"
DEFAULTS = "_neutron_default_sg"  # {project id: {"id": the project's default group}}

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "stateful": Attr(put=False, default=True, convert=attrs.to_bool),
    "shared": Attr(post=False, put=False),
    "security_group_rules": Attr(post=False, put=False),
}


def _rule_doc(sg: Doc, direction: str, ethertype: str, remote_group: str | None) -> Doc:
    return {
        "id": new_id(),
        "tenant_id": sg["tenant_id"],
        "project_id": sg["tenant_id"],
        "security_group_id": sg["id"],
        "direction": direction,
        "ethertype": ethertype,
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": remote_group,
        "remote_address_group_id": None,
        "normalized_cidr": None,
        "belongs_to_default_sg": sg["name"] == "default",
    }


def stage_group(service: ObjectService, tx: Tx, sg: Doc, tenant_id: str, rules: list[Doc]) -> Doc:
    """Store a new group with its rules and make its native records."""
    sg_native.create_group(service, tx, sg, tenant_id)
    for r in rules:
        docs.stamp(r, None)
        sg_native.add_rule(service, tx, r)
        docs.put(tx, RULE, r)
    sg["security_group_rules"] = rules
    docs.put(tx, RESOURCE, docs.stamp(sg, None))
    return sg


def _new(project: str, name: str, description: str, *, stateful: bool = True) -> Doc:
    return {
        "id": new_id(),
        "name": name,
        "description": description,
        "tenant_id": project,
        "project_id": project,
        "stateful": stateful,
        "shared": False,
    }


def ensure_default(service: ObjectService, tx: Tx, project: str) -> str:
    """The project's default group, made (in this commit) the first time it is needed."""
    known = tx.get(DEFAULTS, docs.tenant_of(project))
    if known is not None:
        return str(known["id"])
    tid = docs.ensure_tenant(service, tx, project)
    sg = _new(project, "default", "Default security group")
    rules = [
        _rule_doc(sg, "egress", "IPv4", None),
        _rule_doc(sg, "egress", "IPv6", None),
        _rule_doc(sg, "ingress", "IPv4", sg["id"]),
        _rule_doc(sg, "ingress", "IPv6", sg["id"]),
    ]
    stage_group(service, tx, sg, tid, rules)
    tx.put(DEFAULTS, docs.tenant_of(project), {"id": sg["id"]})
    return str(sg["id"])


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    if given.get("name") == "default":
        raise faults.conflict(
            "SecurityGroupDefaultAlreadyExists", "Default security group already exists."
        )

    def plan(tx: Tx) -> Doc:
        ensure_default(service, tx, project)
        tid = docs.ensure_tenant(service, tx, project)
        sg = _new(project, given["name"], given["description"], stateful=given["stateful"])
        if given.get("id"):
            sg["id"] = given["id"]
        if tx.get(docs.kind(RESOURCE), sg["id"]) is not None:
            raise faults.conflict("SecurityGroupExists", f"Security group {sg['id']} exists.")
        rules = [_rule_doc(sg, "egress", e, None) for e in ("IPv4", "IPv6")]
        return stage_group(service, tx, sg, tid, rules)

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    def change(tx: Tx, old: Doc) -> Doc:
        if old["name"] == "default" and given.get("name", "default") != "default":
            raise faults.conflict(
                "SecurityGroupCannotUpdateDefault", "Updating default security group not allowed."
            )
        return {**old, **given}

    return docs.update_plan(service, RESOURCE, (caller, id, if_match), change)


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        if referrers(tx, "port_group", id, "port", "port_group_ids"):
            raise faults.conflict("SecurityGroupInUse", f"Security Group {id} in use.")
        # rules of other groups naming this one as their remote group go with it (as Neutron's
        # foreign key cascades)
        for field in ("remote_group_src_id", "remote_group_dst_id"):
            for rid in referrers(tx, "port_group", id, "rule", field):
                _drop_rule(service, tx, rid, keep_group=id)
        for r in old["security_group_rules"]:
            docs.delete(tx, RULE, r["id"])
            docs.disown(tx, "rule", r["id"])
        sg_native.delete_group(service, tx, id)
        default = tx.get(DEFAULTS, docs.tenant_of(old["tenant_id"]))
        if default is not None and default["id"] == id:
            tx.delete(DEFAULTS, docs.tenant_of(old["tenant_id"]))

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


def _drop_rule(service: ObjectService, tx: Tx, rid: str, keep_group: str) -> None:
    """Remove rule ``rid`` of another group than ``keep_group`` (whose own rules go anyway)."""
    doc = tx.get(docs.kind(RULE), rid)
    if doc is None or doc["security_group_id"] == keep_group:
        return
    sg_native.remove_rule(service, tx, doc)
    docs.delete(tx, RULE, rid)
    sg = tx.get(docs.kind(RESOURCE), doc["security_group_id"])
    if sg is not None:
        rules = [r for r in sg["security_group_rules"] if r["id"] != rid]
        docs.put(tx, RESOURCE, docs.stamp({**sg, "security_group_rules": rules}, sg))


__all__ = ["ATTRS", "DEFAULTS", "RESOURCE", "create", "delete", "ensure_default", "update"]
