"""Neutron subnets, translated to native DHCP subnets of the network's bridge (same id): the
gateway, DNS servers, host routes (DHCP option 121, RFC 3442) and ``enable_dhcp``.

IPv6 subnets are stored and answered, and their addresses allocated to ports, but they make no
native record: the dataplane forwards IPv4 only (the extension list says so)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netloom.api.neutron import attrs, docs, faults, ipam
from netloom.api.neutron.attrs import MISSING, Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx, referrers
from netloom.model.types import new_id

RESOURCE = "subnet"
MAX_DNS = 5  # neutron's max_dns_nameservers
MAX_ROUTES = 20  # neutron's max_subnet_host_routes

_POOL = attrs.dict_of({"start": attrs.to_ip, "end": attrs.to_ip}, required=("start", "end"))
_ROUTE = attrs.dict_of(
    {"destination": attrs.to_cidr, "nexthop": attrs.to_ip}, required=("destination", "nexthop")
)

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "network_id": Attr(put=False, default=MISSING, convert=attrs.to_uuid),
    "ip_version": Attr(put=False, default=MISSING, convert=attrs.one_of(4, 6)),
    "cidr": Attr(put=False, default=MISSING, convert=attrs.to_cidr),
    "gateway_ip": Attr(default="auto", convert=attrs.to_ip_or_none),
    "allocation_pools": Attr(default=None, convert=attrs.list_of(_POOL)),
    "dns_nameservers": Attr(default=[], convert=attrs.list_of(attrs.to_ip)),
    "host_routes": Attr(default=[], convert=attrs.list_of(_ROUTE)),
    "enable_dhcp": Attr(default=True, convert=attrs.to_bool),
    "ipv6_ra_mode": Attr(put=False, default=None, convert=attrs.optional(attrs.string())),
    "ipv6_address_mode": Attr(put=False, default=None, convert=attrs.optional(attrs.string())),
    "subnetpool_id": Attr(put=False, default=None, convert=attrs.optional(attrs.to_uuid)),
    "service_types": Attr(post=False, put=False),
    "segment_id": Attr(post=False, put=False),
}


def _check_lists(doc: Doc) -> None:
    version = doc["ip_version"]
    dns = doc["dns_nameservers"]
    if len(set(dns)) != len(dns):
        raise faults.bad_request(f"Duplicate nameserver in {dns}.")
    if len(dns) > MAX_DNS:
        raise faults.bad_request(
            f"Unable to complete operation for {doc['id']}. The number of DNS nameservers"
            f" exceeds the limit {MAX_DNS}.",
            "DNSNameServersExhausted",
        )
    routes = doc["host_routes"]
    if len({(r["destination"], r["nexthop"]) for r in routes}) != len(routes):
        raise faults.bad_request(f"Duplicate hostroute in {routes}.")
    if len(routes) > MAX_ROUTES:
        raise faults.bad_request(
            f"Unable to complete operation for {doc['id']}. The number of host routes exceeds"
            f" the limit {MAX_ROUTES}.",
            "HostRoutesExhausted",
        )
    for value in [*dns, *(r["nexthop"] for r in routes)]:
        if ipaddress.ip_address(value).version != version:
            raise faults.invalid_input(f"{value} is not an IPv{version} address")


def _check_new(doc: Doc, network: Doc, tx: Tx) -> None:
    net = ipaddress.ip_network(doc["cidr"])
    if net.version != doc["ip_version"]:
        raise faults.invalid_input(
            f"cidr {doc['cidr']} does not match ip_version {doc['ip_version']}"
        )
    if doc["subnetpool_id"] is not None:
        raise faults.invalid_input("subnet pools are not supported; give a cidr")
    if doc["ip_version"] == 4 and (doc["ipv6_ra_mode"] or doc["ipv6_address_mode"]):
        raise faults.invalid_input("ipv6_ra_mode and ipv6_address_mode are for IPv6 subnets")
    if net.num_addresses < (4 if net.version == 4 else 2):
        raise faults.invalid_input(f"cidr {doc['cidr']} has no room for hosts")
    for other_id in network["subnets"]:
        other = tx.get(docs.kind(RESOURCE), other_id)
        if other is not None and net.overlaps(ipaddress.ip_network(other["cidr"])):
            raise faults.invalid_input(
                f"Requested subnet with cidr: {doc['cidr']} for network: {network['id']}"
                " overlaps with another subnet"
            )


def _dhcp(doc: Doc) -> Doc:
    """The native DHCP subnet of an IPv4 subnet."""
    return {
        "id": doc["id"],
        "bridge_id": doc["network_id"],
        "cidr": doc["cidr"],
        "gateway": doc["gateway_ip"],
        "dns_servers": doc["dns_nameservers"],
        "enabled": doc["enable_dhcp"],
        "opt121_routes": [
            {"dst": r["destination"], "gateway": r["nexthop"]} for r in doc["host_routes"]
        ],
    }


def _fill(doc: Doc) -> None:
    if doc["gateway_ip"] == "auto":
        doc["gateway_ip"] = ipam.default_gateway(doc["cidr"])
    ipam.check_gateway(doc["cidr"], doc["gateway_ip"])
    if doc["allocation_pools"] is None:
        doc["allocation_pools"] = ipam.default_pools(doc["cidr"], doc["gateway_ip"])
    ipam.check_pools(doc["cidr"], doc["allocation_pools"], doc["gateway_ip"])
    _check_lists(doc)


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    base = {
        "id": given.pop("id", None) or new_id(),
        **given,
        "tenant_id": project,
        "project_id": project,
        "service_types": [],
        "segment_id": None,
    }
    _fill(base)

    def plan(tx: Tx) -> Doc:
        sid = base["id"]
        if tx.get(docs.kind(RESOURCE), sid) is not None:
            raise faults.conflict("SubnetExists", f"Subnet {sid} already exists.")
        network = docs.get(tx, "network", base["network_id"], caller)
        _check_new(base, network, tx)
        doc = docs.stamp(dict(base), None)
        if doc["ip_version"] == 4:
            service.stage_create(tx, "dhcp_subnet", _dhcp(doc))
            docs.own(tx, "dhcp_subnet", sid, RESOURCE, sid)
        docs.put(
            tx, "network", docs.stamp({**network, "subnets": [*network["subnets"], sid]}, network)
        )
        docs.put(tx, RESOURCE, doc)
        return doc

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    def change(tx: Tx, old: Doc) -> Doc:
        doc = {**old, **given}
        if "gateway_ip" in given and "allocation_pools" not in given:
            doc["allocation_pools"] = old["allocation_pools"]
        ipam.check_gateway(doc["cidr"], doc["gateway_ip"])
        ipam.check_pools(doc["cidr"], doc["allocation_pools"], doc["gateway_ip"])
        _check_lists(doc)
        return doc

    def apply(tx: Tx, doc: Doc, old: Doc) -> None:
        if doc["ip_version"] == 4:
            want = _dhcp(doc)
            service.stage_update(
                tx, "dhcp_subnet", id, {k: v for k, v in want.items() if k != "id"}
            )

    return docs.update_plan(service, RESOURCE, (caller, id, if_match), change, apply)


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        for port_id in referrers(tx, "bridge", old["network_id"], "port", "device_id"):
            port = tx.get(docs.kind("port"), port_id) or {"fixed_ips": []}
            if any(ip["subnet_id"] == id for ip in port["fixed_ips"]):
                raise faults.conflict(
                    "SubnetInUse",
                    f"Unable to complete operation on subnet {id}: One or more ports have an"
                    " IP allocation from this subnet.",
                )
        if old["ip_version"] == 4:
            service.stage_delete(tx, "dhcp_subnet", id)
            docs.disown(tx, "dhcp_subnet", id)
        network = tx.get(docs.kind("network"), old["network_id"])
        if network is not None:
            left = [s for s in network["subnets"] if s != id]
            docs.put(tx, "network", docs.stamp({**network, "subnets": left}, network))

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


__all__ = ["ATTRS", "RESOURCE", "create", "delete", "update"]
