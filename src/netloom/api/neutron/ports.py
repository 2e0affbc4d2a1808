"""Neutron ports, translated to native bridge ports of the network's bridge (same id): the MAC,
the IPv4 fixed IPs, allowed address pairs, port security, and the binding Nova asks for
(``binding:host_id`` = a host's name: the port is bound on it to the interface os-vif makes,
``tap`` + the first 11 characters of the port id)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netloom.api.neutron import attrs, docs, faults, fixed_ips, groups, port_status, sg_native
from netloom.api.neutron.attrs import MISSING, Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.model.types import new_id

RESOURCE = "port"
VIF_TYPE = "tap"
ROUTER_OWNERS = ("network:router_interface", "network:router_gateway")
SERVICE_OWNERS = (*ROUTER_OWNERS, "network:floatingip")

_PAIR = attrs.dict_of(
    {"ip_address": attrs.to_ip_or_cidr, "mac_address": attrs.to_mac}, required=("ip_address",)
)

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "network_id": Attr(put=False, default=MISSING, convert=attrs.to_uuid),
    "mac_address": Attr(default=None, convert=attrs.to_mac),
    "fixed_ips": Attr(default=None, convert=attrs.list_of(fixed_ips.REQUEST)),
    "device_id": Attr(default="", convert=attrs.string()),
    "device_owner": Attr(default="", convert=attrs.string()),
    "admin_state_up": Attr(default=True, convert=attrs.to_bool),
    "status": Attr(post=False, put=False),
    "allowed_address_pairs": Attr(default=[], convert=attrs.list_of(_PAIR, unique=True)),
    "port_security_enabled": Attr(default=None, convert=attrs.to_bool),
    "security_groups": Attr(default=None, convert=attrs.list_of(attrs.to_uuid, unique=True)),
    "binding:host_id": Attr(default="", convert=attrs.string()),
    "binding:profile": Attr(default={}, convert=attrs.any_dict),
    "binding:vnic_type": Attr(default="normal", convert=attrs.one_of("normal")),
    "binding:vif_type": Attr(post=False, put=False),
    "binding:vif_details": Attr(post=False, put=False),
}


def _check_security(doc: Doc) -> None:
    if doc["port_security_enabled"]:
        return
    if doc["allowed_address_pairs"]:
        raise faults.conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        )
    if doc["security_groups"]:
        raise faults.conflict(
            "PortSecurityAndIPRequiredForSecurityGroups",
            "Port security must be enabled and port must have an IP address in order to use"
            " security groups.",
        )


def _binding(service: ObjectService, tx: Tx, doc: Doc) -> dict[str, Any]:
    """The native binding of ``binding:host_id`` (a host's name) and the answer's vif."""
    host_name = doc["binding:host_id"]
    if not host_name:
        doc["binding:vif_type"], doc["binding:vif_details"] = "unbound", {}
        return {"host_id": None, "interface_name": None}
    found = [h for h in service.store.list("host") if h.data.get("name") == host_name]
    if not found or tx.get("host", found[0].data["id"]) is None:
        doc["binding:vif_type"], doc["binding:vif_details"] = "binding_failed", {}
        return {"host_id": None, "interface_name": None}
    doc["binding:vif_type"] = VIF_TYPE
    doc["binding:vif_details"] = {"port_filter": True}
    return {"host_id": found[0].data["id"], "interface_name": tap_name(doc["id"])}


def tap_name(port_id: str) -> str:
    """The interface Nova/os-vif makes for a port: ``tap`` + 11 characters of its id."""
    return "tap" + port_id[:11]


def _native(doc: Doc, binding: dict[str, Any], groups_of: list[str]) -> Doc:
    """The native bridge port. A router's port: its MAC and address are the linked native
    router port's; the bridge side gets a MAC of its own and no address."""
    router_side = doc["device_owner"] in ROUTER_OWNERS
    v4 = [ip["ip_address"] for ip in doc["fixed_ips"] if ":" not in ip["ip_address"]]
    if router_side:
        v4 = []
    pairs = []
    for pair in doc["allowed_address_pairs"]:
        net = ipaddress.ip_network(pair["ip_address"])
        if net.version == 4:
            pairs.append({"ip_address": str(net), "mac": pair.get("mac_address")})
    return {
        "device_id": doc["network_id"],
        "type": "bridge",
        "mac": None if router_side else doc["mac_address"],
        "fixed_ips": v4,
        "admin_state_up": doc["admin_state_up"],
        "port_security_enabled": doc["port_security_enabled"],
        "allowed_address_pairs": pairs,
        "port_group_ids": groups_of,
        **binding,
    }


def _finish(service: ObjectService, tx: Tx, doc: Doc, network: Doc, caller: docs.Caller) -> Doc:
    """Fill what the system decides, check, make the port's filters; the native port."""
    if doc["port_security_enabled"] is None:
        doc["port_security_enabled"] = network["port_security_enabled"]
    for pair in doc["allowed_address_pairs"]:
        pair.setdefault("mac_address", doc["mac_address"])
    doc["security_groups"] = groups.for_port(service, tx, doc, caller)
    _check_security(doc)
    chains = sg_native.port_filters(
        service, tx, doc["id"], doc["security_groups"] if groups.filtered(doc) else None
    )
    native = _native(
        doc, _binding(service, tx, doc), groups.port_groups(tx, doc["security_groups"])
    )
    return {**native, **chains}


def defaults() -> Doc:
    """A port's attributes as a create without them gives them."""
    return {n: a.default for n, a in ATTRS.items() if a.post and n not in ("id", "name")} | {
        "name": ""
    }


def stage(
    service: ObjectService, tx: Tx, base: Doc, caller: docs.Caller, *, native: bool = True
) -> Doc:
    """Stage a new port (``base``: its attributes) and, unless ``native`` is false (a
    floating IP's port only holds its address), its native records in ``tx``."""
    pid = base["id"]
    if tx.get(docs.kind(RESOURCE), pid) is not None:
        raise faults.conflict("PortExists", f"Port {pid} already exists.")
    network = docs.get(tx, "network", base["network_id"], caller)
    doc = docs.stamp(dict(base), None)
    if doc["mac_address"] is None:
        doc["mac_address"] = fixed_ips.new_mac(tx)
    doc["fixed_ips"] = fixed_ips.assign(tx, network, pid, doc["fixed_ips"], [])
    if native:
        record = _finish(service, tx, doc, network, caller)
        service.stage_create(tx, "port", {"id": pid, **record})
        docs.own(tx, "port", pid, RESOURCE, pid)
    docs.put(tx, RESOURCE, doc)
    return doc


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    base = {
        "id": given.pop("id", None) or new_id(),
        **given,
        "tenant_id": project,
        "project_id": project,
        "status": "DOWN",
    }
    return service.transact(lambda tx: stage(service, tx, base, caller))


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    native: Doc = {}

    def change(tx: Tx, old: Doc) -> Doc:
        network = docs.get(tx, "network", old["network_id"], docs.Caller())
        doc = {**old, **given}
        if "fixed_ips" in given:
            doc["fixed_ips"] = fixed_ips.assign(
                tx, network, id, given["fixed_ips"], old["fixed_ips"]
            )
        native.update(_finish(service, tx, doc, network, caller))
        if doc["device_owner"] not in SERVICE_OWNERS:  # a router's ports are always ACTIVE
            doc["status"] = port_status.status(tx, doc, native["host_id"])
        return doc

    def apply(tx: Tx, doc: Doc, old: Doc) -> None:
        service.stage_update(tx, "port", id, native)
        if native["inbound_filter_id"] is None:
            sg_native.drop_port_filters(service, tx, id)

    return docs.update_plan(service, RESOURCE, (caller, id, if_match), change, apply)


def check_deletable(old: Doc) -> None:
    """A router's or floating IP's port goes with its owner only. (A port is deleted by
    :func:`.floatingips.delete_port`: its floating IPs are disassociated first.)"""
    if old["device_owner"] in SERVICE_OWNERS:
        raise faults.conflict(
            "ServicePortInUse",
            f"Port {old['id']} cannot be deleted directly via the port API: has device owner"
            f" {old['device_owner']}.",
        )


def unstage(service: ObjectService, tx: Tx, old: Doc) -> None:
    """Stage the deletion of a port and its native records."""
    fixed_ips.release_all(tx, old["fixed_ips"])
    if (native := tx.get("port", old["id"])) is not None:
        port_status.forget(tx, old["id"], native.get("host_id"))
        service.stage_delete(tx, "port", old["id"])
        docs.disown(tx, "port", old["id"])
    sg_native.drop_port_filters(service, tx, old["id"])
    docs.delete(tx, RESOURCE, old["id"])


__all__ = [
    "ATTRS",
    "RESOURCE",
    "SERVICE_OWNERS",
    "VIF_TYPE",
    "check_deletable",
    "create",
    "defaults",
    "stage",
    "tap_name",
    "unstage",
    "update",
]
