"""What security groups become natively, the way the bundled plan ``stateful-sg.yaml`` writes
them by hand (MidoNet's translation):

* a group is a stateful port group (same id: its members' fixed IPs make the address group a
  ``remote_group_id`` matches) and two chains, ``ingress`` and ``egress``, holding one
  ``accept`` rule per Neutron rule (same id; IPv6 rules make none: the dataplane is IPv4);
* a port with port security has two chains of its own: its inbound filter (what the VM sends)
  accepts return traffic and ARP, jumps to each group's egress chain and drops the rest; its
  outbound filter (what reaches the VM) accepts return traffic, ARP and DHCP replies (RFC 2131:
  server port 67 to client port 68), jumps to each group's ingress chain and drops the rest
  (security groups filter IP; ARP is held by anti-spoofing only, as in Neutron).
"""

from __future__ import annotations

import uuid
from typing import Any

from netloom.api.neutron import chains, docs
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.model.values import IP_PROTOCOLS

_NS = uuid.UUID("3c0d6a4e-52b1-4f7e-8a9d-0e1f2a3b4c5d")
IPV4 = 0x0800
ARP = 0x0806
L4_PORTS = (6, 17, 33, 132, 136)  # tcp, udp, dccp, sctp, udplite: port_range is ports
ICMP = 1


def chain_id(owner_id: str, which: str) -> str:
    """A group's ``ingress``/``egress`` chain, a port's ``in``/``out`` filter."""
    return str(uuid.uuid5(_NS, f"{owner_id}/{which}"))


def protocol_number(protocol: Any) -> int | None:
    if protocol in (None, "any"):
        return None
    if isinstance(protocol, int) or str(protocol).isdigit():
        return int(protocol)
    return IP_PROTOCOLS[str(protocol)]


def rule(doc: Doc) -> Doc | None:
    """The native rule of a Neutron rule (None: IPv6, stored only)."""
    if doc["ethertype"] != "IPv4":
        return None
    ingress = doc["direction"] == "ingress"
    out: Doc = {
        "id": doc["id"],
        "chain_id": chain_id(doc["security_group_id"], doc["direction"]),
        "action": "accept",
        "ethertype": IPV4,
    }
    proto = protocol_number(doc["protocol"])
    if proto is not None:
        out["nw_proto"] = proto
    lo, hi = doc["port_range_min"], doc["port_range_max"]
    if proto in L4_PORTS and lo is not None:
        out["tp_dst"] = {"start": lo, "end": hi if hi is not None else lo}
    elif proto == ICMP:  # port_range_min is the ICMP type, port_range_max its code
        if lo is not None:
            out["tp_src"] = {"start": lo, "end": lo}
        if hi is not None:
            out["tp_dst"] = {"start": hi, "end": hi}
    if doc["remote_ip_prefix"]:
        out["nw_src" if ingress else "nw_dst"] = doc["remote_ip_prefix"]
    if doc["remote_group_id"]:
        key = "remote_group_src_id" if ingress else "remote_group_dst_id"
        out[key] = doc["remote_group_id"]
    return out


def create_group(service: ObjectService, tx: Tx, sg: Doc, tenant_id: str) -> None:
    sid = sg["id"]
    service.stage_create(
        tx, "port_group", {"id": sid, "tenant_id": tenant_id, "stateful": sg["stateful"]}
    )
    docs.own(tx, "port_group", sid, "security_group", sid)
    for which in ("ingress", "egress"):
        cid = chain_id(sid, which)
        service.stage_create(tx, "chain", {"id": cid, "tenant_id": tenant_id})
        docs.own(tx, "chain", cid, "security_group", sid)


def delete_group(service: ObjectService, tx: Tx, sid: str) -> None:
    for which in ("ingress", "egress"):
        cid = chain_id(sid, which)
        service.stage_delete(tx, "chain", cid, cascade=True)
        docs.disown(tx, "chain", cid)
    service.stage_delete(tx, "port_group", sid)
    docs.disown(tx, "port_group", sid)


def add_rule(service: ObjectService, tx: Tx, doc: Doc) -> None:
    native = rule(doc)
    if native is not None:
        service.stage_create(tx, "rule", native)
        docs.own(tx, "rule", doc["id"], "security_group_rule", doc["id"])


def remove_rule(service: ObjectService, tx: Tx, doc: Doc) -> None:
    if tx.get("rule", doc["id"]) is not None:
        service.stage_delete(tx, "rule", doc["id"])
        docs.disown(tx, "rule", doc["id"])


def _port_rules(port_id: str, which: str, groups: list[str]) -> list[Doc]:
    rules: list[Doc] = [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "ethertype": ARP},  # groups filter IP only (anti-spoofing: before)
    ]
    if which == "out":
        dhcp = {"nw_proto": 17, "tp_src": {"start": 67, "end": 67}}
        rules.append({"action": "accept", **dhcp, "tp_dst": {"start": 68, "end": 68}})
    group_chain = "ingress" if which == "out" else "egress"
    rules += [{"action": "jump", "jump_chain_id": chain_id(g, group_chain)} for g in groups]
    rules.append({"action": "drop"})
    return chains.numbered(chain_id(port_id, which), rules)


def port_filters(
    service: ObjectService, tx: Tx, port_id: str, groups: list[str] | None
) -> dict[str, str | None]:
    """Make, rewrite or remove a port's two filter chains (``groups`` None: no port
    security, no filters); the native port's filter fields. The chains belong to no tenant
    (they are the port's, which has its network's): a tenant's reverse references would
    otherwise make every port creation of a project write one document, and serialise."""
    fields: dict[str, str | None] = {}
    for which, field in (("in", "inbound_filter_id"), ("out", "outbound_filter_id")):
        cid = chain_id(port_id, which)
        exists = tx.get("chain", cid) is not None
        if groups is None:
            fields[field] = None
            continue
        if not exists:
            service.stage_create(tx, "chain", {"id": cid})
            docs.own(tx, "chain", cid, "port", port_id)
        chains.sync_rules(service, tx, cid, _port_rules(port_id, which, groups), ("port", port_id))
        fields[field] = cid
    return fields


def drop_port_filters(service: ObjectService, tx: Tx, port_id: str) -> None:
    """After the port's own deletion or update to no filters (same commit)."""
    for which in ("in", "out"):
        cid = chain_id(port_id, which)
        if tx.get("chain", cid) is not None:
            service.stage_delete(tx, "chain", cid, cascade=True)
            docs.disown(tx, "chain", cid)


__all__ = [
    "chain_id",
    "create_group",
    "delete_group",
    "drop_port_filters",
    "port_filters",
    "protocol_number",
    "remove_rule",
    "rule",
]
