"""Neutron security group rules: checked as Neutron checks them (protocol by name or number,
port ranges, remote prefix or group, ethertype), stored in their group's document too, and
translated to one native rule (:func:`.sg_native.rule`)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netloom.api.neutron import attrs, docs, faults, sg_native
from netloom.api.neutron.attrs import MISSING, Attr
from netloom.api.neutron.security_groups import RESOURCE as GROUP
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.model.types import new_id
from netloom.model.values import IP_PROTOCOLS

RESOURCE = "security_group_rule"
ICMP_NAMES = ("icmp", "icmpv6", "ipv6-icmp")


def _protocol(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return str(value)
    if isinstance(value, str) and (value in IP_PROTOCOLS or value == "any"):
        return value
    if isinstance(value, str) and value.isdigit() and int(value) <= 255:
        return value
    raise attrs.Reason(f"protocol {value} is not supported; use a name or a number 0-255")


_PORT = attrs.optional(attrs.to_int(0, 65535))

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    "description": Attr(put=True, default="", convert=attrs.string()),
    "created_at": Attr(post=False, put=False),
    "updated_at": Attr(post=False, put=False),
    "revision_number": Attr(post=False, put=False),
    "security_group_id": Attr(put=False, default=MISSING, convert=attrs.to_uuid),
    "direction": Attr(put=False, default=MISSING, convert=attrs.one_of("ingress", "egress")),
    "ethertype": Attr(put=False, default="IPv4", convert=attrs.one_of("IPv4", "IPv6")),
    "protocol": Attr(put=False, default=None, convert=_protocol),
    "port_range_min": Attr(put=False, default=None, convert=_PORT),
    "port_range_max": Attr(put=False, default=None, convert=_PORT),
    "remote_ip_prefix": Attr(put=False, default=None, convert=attrs.optional(attrs.to_cidr)),
    "remote_group_id": Attr(put=False, default=None, convert=attrs.optional(attrs.to_uuid)),
    "remote_address_group_id": Attr(post=False, put=False),
    "normalized_cidr": Attr(post=False, put=False),
    "belongs_to_default_sg": Attr(post=False, put=False),
}
del ATTRS["name"]


def _check_ports(doc: Doc) -> None:
    lo, hi = doc["port_range_min"], doc["port_range_max"]
    if lo is None and hi is None:
        return
    proto = sg_native.protocol_number(doc["protocol"])
    if proto is None:
        raise faults.bad_request(
            "Must also specify protocol if port range is given.",
            "SecurityGroupProtocolRequiredWithPorts",
        )
    if doc["protocol"] in ICMP_NAMES or proto in (1, 58):
        if lo is None and hi is not None:
            raise faults.bad_request(
                f"ICMP code (port-range-max) {hi} is provided but ICMP type (port-range-min)"
                " is missing.",
                "SecurityGroupMissingIcmpType",
            )
        for value, what in ((lo, "type"), (hi, "code")):
            if value is not None and value > 255:
                raise faults.bad_request(
                    f"Invalid value for ICMP {what} (port-range-min): {value}",
                    "SecurityGroupInvalidIcmpValue",
                )
        return
    if proto not in sg_native.L4_PORTS:
        raise faults.bad_request(
            f"Port ranges are not allowed for protocol {doc['protocol']}",
            "SecurityGroupInvalidProtocolForPortRange",
        )
    if lo is None or hi is None or lo > hi or lo == 0:
        raise faults.bad_request(
            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            "SecurityGroupInvalidPortRange",
        )


def _check(doc: Doc) -> None:
    _check_ports(doc)
    if doc["remote_ip_prefix"] and doc["remote_group_id"]:
        raise faults.bad_request(
            "Only remote_ip_prefix or remote_group_id may be provided.",
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        )
    prefix = doc["remote_ip_prefix"]
    if prefix:
        version = ipaddress.ip_network(prefix).version
        if f"IPv{version}" != doc["ethertype"]:
            raise faults.bad_request(
                f"Conflicting value ethertype {doc['ethertype']} for CIDR {prefix}",
                "SecurityGroupRuleParameterConflict",
            )
    if doc["protocol"] in ("icmpv6", "ipv6-icmp") and doc["ethertype"] != "IPv6":
        raise faults.bad_request(
            f"Protocol {doc['protocol']} is for IPv6 rules", "SecurityGroupRuleInvalidProtocol"
        )


def _same(a: Doc, b: Doc) -> bool:
    keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max")
    more = ("remote_ip_prefix", "remote_group_id")
    return all(a[k] == b[k] for k in (*keys, *more))


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    base = {
        "id": given.pop("id", None) or new_id(),
        **given,
        "tenant_id": project,
        "project_id": project,
        "remote_address_group_id": None,
        "normalized_cidr": given["remote_ip_prefix"],
    }
    _check(base)

    def plan(tx: Tx) -> Doc:
        sg = docs.get(tx, GROUP, base["security_group_id"], caller)
        if base["remote_group_id"]:
            docs.get(tx, GROUP, base["remote_group_id"], caller)
        for other in sg["security_group_rules"]:
            if _same(other, base):
                raise faults.conflict(
                    "SecurityGroupRuleExists",
                    f"Security group rule already exists. Rule id is {other['id']}.",
                )
        doc = docs.stamp({**base, "belongs_to_default_sg": sg["name"] == "default"}, None)
        sg_native.add_rule(service, tx, doc)
        docs.put(tx, RESOURCE, doc)
        rules = [*sg["security_group_rules"], doc]
        docs.put(tx, GROUP, docs.stamp({**sg, "security_group_rules": rules}, sg))
        return doc

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    def apply(tx: Tx, doc: Doc, old: Doc) -> None:
        sg = tx.get(docs.kind(GROUP), old["security_group_id"])
        if sg is not None:
            rules = [doc if r["id"] == id else r for r in sg["security_group_rules"]]
            docs.put(tx, GROUP, {**sg, "security_group_rules": rules})

    return docs.update_plan(
        service, RESOURCE, (caller, id, if_match), lambda _tx, old: {**old, **given}, apply
    )


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        sg_native.remove_rule(service, tx, old)
        sg = tx.get(docs.kind(GROUP), old["security_group_id"])
        if sg is not None:
            rules = [r for r in sg["security_group_rules"] if r["id"] != id]
            docs.put(tx, GROUP, docs.stamp({**sg, "security_group_rules": rules}, sg))

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


__all__ = ["ATTRS", "RESOURCE", "create", "delete", "update"]
