"""A router's ports, the way MidoNet translated them: a Neutron port on the network (device
owner ``network:router_interface`` or ``network:router_gateway``) is a native bridge port,
linked to a native router port (same MAC, the port's address on the subnet's prefix) whose
connected and local routes the native service makes. The router's state that Neutron does not
show (its interfaces, its gateway port, its floating IPs) is ``_neutron_router_state/<id>``."""

from __future__ import annotations

import ipaddress
import uuid

from netloom.api.neutron import docs, faults, ports
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.model.types import new_id

STATE = "_neutron_router_state"
INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
_NS = uuid.UUID("2b7c9e1d-3f4a-4b5c-8d6e-7f8091a2b3c4")


def state(tx: Tx, router_id: str) -> Doc:
    return tx.get(STATE, router_id) or {"interfaces": {}, "gw_port": None, "fips": {}}


def save_state(tx: Tx, router_id: str, value: Doc) -> None:
    tx.put(STATE, router_id, value)


def native_id(port_id: str) -> str:
    """The native router port linked to Neutron port ``port_id``."""
    return str(uuid.uuid5(_NS, f"{port_id}/router"))


def subnet_doc(tx: Tx, subnet_id: str) -> Doc:
    doc = tx.get(docs.kind("subnet"), subnet_id)
    if doc is None:
        raise faults.not_found("subnet", subnet_id)
    return doc


def link(service: ObjectService, tx: Tx, router_id: str, port: Doc, subnet: Doc) -> None:
    """The native router port of ``port`` (its first address on ``subnet``), linked to it."""
    ip = next(f["ip_address"] for f in port["fixed_ips"] if f["subnet_id"] == subnet["id"])
    prefix = ipaddress.ip_network(subnet["cidr"]).prefixlen
    rid = native_id(port["id"])
    service.stage_create(
        tx,
        "port",
        {
            "id": rid,
            "device_id": router_id,
            "type": "router",
            "mac": port["mac_address"],
            "address": f"{ip}/{prefix}",
            "peer_id": port["id"],
        },
    )
    docs.own(tx, "port", rid, "router", router_id)


def unlink(service: ObjectService, tx: Tx, port: Doc) -> None:
    """Remove the native router port of ``port`` (its routes go with it), then the port."""
    rid = native_id(port["id"])
    if tx.get("port", rid) is not None:
        service.stage_delete(tx, "port", rid, cascade=True)
        docs.disown(tx, "port", rid)
    ports.unstage(service, tx, port)


def new_port(service: ObjectService, tx: Tx, want: Doc, *, native: bool = True) -> Doc:
    """A Neutron port owned by the network itself (``want``: its network_id, device_owner,
    device_id, fixed_ips, tenant_id and optionally id); without port security."""
    project = want.get("tenant_id", "")
    base = {
        **ports.defaults(),
        "id": new_id(),
        "tenant_id": project,
        "project_id": project,
        "status": "ACTIVE",
        "port_security_enabled": False,
        "security_groups": [],
        **want,
    }
    return ports.stage(service, tx, base, docs.Caller(), native=native)


__all__ = [
    "GATEWAY",
    "INTERFACE",
    "STATE",
    "link",
    "native_id",
    "new_port",
    "save_state",
    "state",
    "subnet_doc",
    "unlink",
]
