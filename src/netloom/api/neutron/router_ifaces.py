"""``add_router_interface`` and ``remove_router_interface``: a router's interface on a subnet
(a new port holding the subnet's gateway address) or on a given port (its address)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netloom.api.neutron import attrs, docs, faults, router_ports, routers
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.errors import NeutronFault

_BODY = attrs.dict_of({"subnet_id": attrs.to_uuid, "port_id": attrs.to_uuid})


def _parse(body: Any) -> dict[str, str]:
    try:
        given: dict[str, str] = _BODY(body)
    except attrs.Reason as exc:
        raise faults.bad_request(f"Invalid input for operation: {exc}.") from None
    if len(given) != 1:
        raise faults.bad_request(
            "Bad router request: Either subnet_id or port_id must be specified.", "BadRequest"
        )
    return given


def _answer(router: Doc, port: Doc) -> Doc:
    subnets = [f["subnet_id"] for f in port["fixed_ips"]]
    return {
        "id": router["id"],
        "tenant_id": router["tenant_id"],
        "project_id": router["tenant_id"],
        "port_id": port["id"],
        "network_id": port["network_id"],
        "subnet_id": subnets[0] if subnets else None,
        "subnet_ids": subnets,
    }


def _check_subnet(tx: Tx, router_id: str, subnet: Doc) -> None:
    """One interface per subnet, and no overlapping subnets on one router (Neutron's
    ``_check_for_dup_router_subnets``)."""
    net = ipaddress.ip_network(subnet["cidr"])
    for port_id in router_ports.state(tx, router_id)["interfaces"]:
        port = tx.get(docs.kind("port"), port_id) or {"fixed_ips": []}
        for fixed in port["fixed_ips"]:
            if fixed["subnet_id"] == subnet["id"]:
                raise faults.bad_request(
                    f"Bad router request: Router already has a port on subnet {subnet['id']}.",
                    "BadRequest",
                )
            other = router_ports.subnet_doc(tx, fixed["subnet_id"])
            if net.overlaps(ipaddress.ip_network(other["cidr"])):
                raise faults.bad_request(
                    f"Bad router request: Cidr {subnet['cidr']} of subnet {subnet['id']}"
                    f" overlaps with cidr {other['cidr']} of subnet {other['id']}.",
                    "BadRequest",
                )


def _interface_port(
    service: ObjectService, tx: Tx, router: Doc, given: dict[str, str], caller: docs.Caller
) -> tuple[Doc, Doc]:
    if "subnet_id" in given:
        subnet = docs.get(tx, "subnet", given["subnet_id"], caller)
        _check_subnet(tx, router["id"], subnet)
        if not subnet["gateway_ip"]:
            raise faults.bad_request(
                f"Bad router request: Subnet {subnet['id']} does not have a gateway IP.",
                "BadRequest",
            )
        fixed = [{"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}]
        want = {
            "network_id": subnet["network_id"],
            "device_owner": router_ports.INTERFACE,
            "device_id": router["id"],
            "fixed_ips": fixed,
            "tenant_id": router["tenant_id"],
        }
        port = router_ports.new_port(service, tx, want)
        return port, subnet
    port = docs.get(tx, "port", given["port_id"], caller)
    if port["device_owner"] or port["device_id"]:
        raise faults.conflict(
            "PortInUse",
            f"Unable to complete operation on port {port['id']} for network"
            f" {port['network_id']}. Port already has an attached device {port['device_id']}.",
        )
    if len(port["fixed_ips"]) != 1:
        raise faults.bad_request(
            "Bad router request: Router port must have exactly one fixed IP.", "BadRequest"
        )
    subnet = router_ports.subnet_doc(tx, port["fixed_ips"][0]["subnet_id"])
    _check_subnet(tx, router["id"], subnet)
    port = {**port, "device_owner": router_ports.INTERFACE, "device_id": router["id"]}
    docs.put(tx, "port", port)
    return port, subnet


def add(service: ObjectService, caller: docs.Caller, id: str, body: Any) -> Doc:
    given = _parse(body)

    def plan(tx: Tx) -> Doc:
        router = docs.get_own(tx, "router", id, caller)
        port, subnet = _interface_port(service, tx, router, given, caller)
        router_ports.link(service, tx, id, port, subnet)
        st = router_ports.state(tx, id)
        router_ports.save_state(
            tx, id, {**st, "interfaces": {**st["interfaces"], port["id"]: subnet["id"]}}
        )
        routers.sync(service, tx, router)
        docs.put(tx, "router", docs.stamp(dict(router), router))
        return _answer(router, port)

    return service.transact(plan)


def remove(service: ObjectService, caller: docs.Caller, id: str, body: Any) -> Doc:
    given = _parse(body)

    def plan(tx: Tx) -> Doc:
        router = docs.get_own(tx, "router", id, caller)
        st = router_ports.state(tx, id)
        found = None
        for port_id, subnet_id in st["interfaces"].items():
            if given.get("port_id") == port_id or given.get("subnet_id") == subnet_id:
                found = tx.get(docs.kind("port"), port_id)
        if found is None:
            if "port_id" in given:
                raise NeutronFault(
                    404,
                    "RouterInterfaceNotFound",
                    f"Router {id} does not have an interface with id {given['port_id']}",
                )
            raise NeutronFault(
                404,
                "RouterInterfaceNotFoundForSubnet",
                f"Router {id} has no interface on subnet {given['subnet_id']}",
            )
        _check_fips(tx, st, found)
        interfaces = {k: v for k, v in st["interfaces"].items() if k != found["id"]}
        router_ports.save_state(tx, id, {**st, "interfaces": interfaces})
        router_ports.unlink(service, tx, found)
        routers.sync(service, tx, router)
        docs.put(tx, "router", docs.stamp(dict(router), router))
        return _answer(router, found)

    return service.transact(plan)


def _check_fips(tx: Tx, st: Doc, port: Doc) -> None:
    """An interface whose subnet holds an associated floating IP's fixed address stays."""
    for fixed in port["fixed_ips"]:
        subnet = router_ports.subnet_doc(tx, fixed["subnet_id"])
        for fip, inner in st["fips"].values():
            if ipaddress.ip_address(inner) in ipaddress.ip_network(subnet["cidr"]):
                raise faults.conflict(
                    "RouterInterfaceInUseByFloatingIP",
                    f"Router interface for subnet {subnet['id']} on router is required by"
                    f" floating IP {fip}.",
                )


__all__ = ["add", "remove"]
