"""Neutron floating IPs: an address of an external network (held by a Neutron port with device
owner ``network:floatingip``, which makes no native port) that, associated with a port's fixed
IP, becomes a static DNAT/SNAT pair on the router joining the port's subnet to that external
network (:mod:`.router_nat`)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from netloom.api.neutron import attrs, docs, faults, ports, router_ports, routers
from netloom.api.neutron.attrs import MISSING, Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.errors import NeutronFault
from netloom.model.types import new_id

RESOURCE = "floatingip"
OWNER = "network:floatingip"

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "floating_network_id": Attr(put=False, default=MISSING, convert=attrs.to_uuid),
    "floating_ip_address": Attr(put=False, default=None, convert=attrs.optional(attrs.to_ip)),
    "subnet_id": Attr(put=False, default=None, convert=attrs.optional(attrs.to_uuid)),
    "port_id": Attr(default=None, convert=attrs.optional(attrs.to_uuid)),
    "fixed_ip_address": Attr(default=None, convert=attrs.optional(attrs.to_ip)),
    "router_id": Attr(post=False, put=False),
    "status": Attr(post=False, put=False),
}
del ATTRS["name"]


def _port_id(fip_id: str) -> str:
    """The Neutron port holding a floating IP's address."""
    return str(uuid.uuid5(uuid.UUID(fip_id), "port"))


def _router_for(tx: Tx, service: ObjectService, network_id: str, subnet_id: str) -> str | None:
    """A router with an interface on ``subnet_id`` and its gateway on ``network_id``."""
    for item in service.store.list(router_ports.STATE):
        st = tx.get(router_ports.STATE, item.id)
        if st is None or subnet_id not in st["interfaces"].values() or not st["gw_port"]:
            continue
        gw = tx.get(docs.kind("port"), st["gw_port"])
        if gw is not None and gw["network_id"] == network_id:
            return item.id
    return None


def _associate(
    service: ObjectService, tx: Tx, fip: Doc, caller: docs.Caller
) -> tuple[str | None, str | None, str | None]:
    """(router, port, fixed IP) of the floating IP's association (all None: none)."""
    if not fip["port_id"]:
        return None, None, None
    port = docs.get(tx, "port", fip["port_id"], caller)
    v4 = [f for f in port["fixed_ips"] if ipaddress.ip_address(f["ip_address"]).version == 4]
    chosen = [f for f in v4 if fip["fixed_ip_address"] in (None, f["ip_address"])]
    if not chosen:
        raise faults.bad_request(
            f"Bad floatingip request: Port {port['id']} does not have fixed ip"
            f" {fip['fixed_ip_address']}.",
            "BadRequest",
        )
    fixed = chosen[0]
    router = _router_for(tx, service, fip["floating_network_id"], fixed["subnet_id"])
    if router is None:
        raise NeutronFault(
            404,
            "ExternalGatewayForFloatingIPNotFound",
            f"External network {fip['floating_network_id']} is not reachable from subnet"
            f" {fixed['subnet_id']}. Therefore, cannot associate Port {port['id']} with a"
            " Floating IP.",
        )
    for other_id, (_, inner) in router_ports.state(tx, router)["fips"].items():
        if inner == fixed["ip_address"] and other_id != fip["id"]:
            raise faults.conflict(
                "FloatingIPPortAlreadyAssociated",
                f"Cannot associate floating IP {fip['floating_ip_address']} with port"
                f" {port['id']} using fixed IP {fixed['ip_address']}, as that fixed IP already"
                f" has a floating IP on external network {fip['floating_network_id']}.",
            )
    return router, port["id"], fixed["ip_address"]


def _apply(service: ObjectService, tx: Tx, fip: Doc, old: Doc | None) -> None:
    """Move the NAT pair from the old router (if any) to the new one (if any)."""
    for router_id, add in (((old or {}).get("router_id"), False), (fip["router_id"], True)):
        if not router_id:
            continue
        st = router_ports.state(tx, router_id)
        fips = {k: v for k, v in st["fips"].items() if k != fip["id"]}
        if add:
            fips[fip["id"]] = [fip["floating_ip_address"], fip["fixed_ip_address"]]
        router_ports.save_state(tx, router_id, {**st, "fips": fips})
        router = tx.get(docs.kind("router"), router_id)
        if router is not None:
            routers.sync(service, tx, router)


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    base = {"id": given.pop("id", None) or new_id(), **given, "tenant_id": project}

    def plan(tx: Tx) -> Doc:
        network = docs.get(tx, "network", base["floating_network_id"], caller)
        if not network["router:external"]:
            raise faults.bad_request(
                f"Bad floatingip request: Network {network['id']} is not a valid external network.",
                "BadRequest",
            )
        want: dict[str, str] = {}
        if base["subnet_id"]:
            want["subnet_id"] = base["subnet_id"]
        if base["floating_ip_address"]:
            want["ip_address"] = base["floating_ip_address"]
        spec = {
            "id": _port_id(base["id"]),
            "network_id": network["id"],
            "device_owner": OWNER,
            "device_id": base["id"],
            "fixed_ips": [want] if want else None,
        }
        port = router_ports.new_port(service, tx, spec, native=False)
        v4 = [f for f in port["fixed_ips"] if ":" not in f["ip_address"]]
        if not v4:
            raise faults.bad_request(
                f"Bad floatingip request: no IPv4 subnet on network {network['id']}.",
                "BadRequest",
            )
        doc = {**base, "project_id": project, "floating_ip_address": v4[0]["ip_address"]}
        del doc["subnet_id"]
        doc["router_id"], doc["port_id"], doc["fixed_ip_address"] = _associate(
            service, tx, doc, caller
        )
        doc["status"] = "ACTIVE" if doc["port_id"] else "DOWN"
        _apply(service, tx, doc, None)
        docs.put(tx, RESOURCE, docs.stamp(doc, None))
        return doc

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    def change(tx: Tx, old: Doc) -> Doc:
        doc = {**old, **given}
        if "port_id" in given and "fixed_ip_address" not in given:
            doc["fixed_ip_address"] = None
        doc["router_id"], doc["port_id"], doc["fixed_ip_address"] = _associate(
            service, tx, doc, caller
        )
        doc["status"] = "ACTIVE" if doc["port_id"] else "DOWN"
        return doc

    return docs.update_plan(
        service,
        RESOURCE,
        (caller, id, if_match),
        change,
        lambda tx, doc, old: _apply(service, tx, doc, old),
    )


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        _apply(service, tx, {**old, "router_id": None}, old)
        port = tx.get(docs.kind("port"), _port_id(id))
        if port is not None:
            ports.unstage(service, tx, port)

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


def _disassociate(service: ObjectService, tx: Tx, port: Doc) -> None:
    """The floating IPs of a port being deleted stay, associated with nothing (as Neutron's
    ``disassociate_floatingips``), their NAT pairs gone from their routers."""
    fixed = {ip["ip_address"] for ip in port["fixed_ips"]}
    for item in service.store.list(router_ports.STATE):
        st = tx.get(router_ports.STATE, item.id)
        for fip_id, (_, inner) in (st or {"fips": {}})["fips"].items():
            old = tx.get(docs.kind(RESOURCE), fip_id)
            if inner not in fixed or old is None or old["port_id"] != port["id"]:
                continue
            doc = {**old, "port_id": None, "fixed_ip_address": None, "router_id": None}
            doc["status"] = "DOWN"
            _apply(service, tx, doc, old)
            docs.put(tx, RESOURCE, docs.stamp(doc, old))


def delete_port(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    """Delete a Neutron port (:func:`.ports.check_deletable`, :func:`.ports.unstage`); its
    floating IPs are disassociated in the same commit."""

    def remove(tx: Tx, old: Doc) -> None:
        ports.check_deletable(old)
        _disassociate(service, tx, old)
        ports.unstage(service, tx, old)

    docs.delete_plan(service, ports.RESOURCE, (caller, id, if_match), remove)


__all__ = ["ATTRS", "OWNER", "RESOURCE", "create", "delete", "delete_port", "update"]
