"""A router's NAT and routes, rewritten from its Neutron state in the commit that changes it:

* its inbound filter: one static DNAT per floating IP (the floating IP to the fixed IP), then
  reverse SNAT of what is addressed to the gateway's address; its outbound filter: one static
  SNAT per floating IP, then (``enable_snat``) SNAT of everything else to the gateway's
  address, both only toward the gateway port (the shape of ``router-nat.yaml``: traffic
  between the tenant's own networks keeps its addresses);
* its routes: the default route by the gateway port to the external subnet's gateway, and the
  extra ``routes`` by the interface whose subnet holds their next hop."""

from __future__ import annotations

import ipaddress
import json
import uuid

from netloom.api.neutron import chains, docs, faults, router_ports
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx

_NS = uuid.UUID("6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d")
SNAT_PORTS = (1024, 65535)


def chain_id(router_id: str, which: str) -> str:
    return str(uuid.uuid5(_NS, f"{router_id}/{which}"))


def _static(action: str, match: str, ip: str, target: str) -> Doc:
    return {
        "action": action,
        match: f"{ip}/32",
        "nat_targets": [{"address_from": target, "address_to": target}],
        "static": True,
    }


def _gateway(tx: Tx, st: Doc) -> tuple[str, Doc] | None:
    """The gateway's Neutron port and its external subnet."""
    if not st["gw_port"]:
        return None
    port = tx.get(docs.kind("port"), st["gw_port"])
    if port is None or not port["fixed_ips"]:
        return None
    subnet = router_ports.subnet_doc(tx, port["fixed_ips"][0]["subnet_id"])
    return port["fixed_ips"][0]["ip_address"], subnet


def sync(service: ObjectService, tx: Tx, router: Doc, tenant_id: str) -> dict[str, str]:
    """Rewrite the router's NAT chains; the native router's filter fields."""
    rid = router["id"]
    st = router_ports.state(tx, rid)
    gateway = _gateway(tx, st)
    toward = {"out_port_ids": [router_ports.native_id(st["gw_port"])]} if gateway else {}
    inbound: list[Doc] = []
    outbound: list[Doc] = []
    for fip, fixed in sorted(st["fips"].values()):
        inbound.append(_static("dnat", "nw_dst", fip, fixed))
        outbound.append({**_static("snat", "nw_src", fixed, fip), **toward})
    # only a packet to the gateway's address can be a reply to a SNATed connection: nothing
    # else looks bindings up (a lookup reads the whole 5-tuple: an exact flow per connection)
    to_gateway = {"nw_dst": f"{gateway[0]}/32"} if gateway is not None else {}
    inbound.append({"action": "reverse-snat", **to_gateway})
    info = router["external_gateway_info"]
    if gateway is not None and info and info.get("enable_snat", True):
        lo, hi = SNAT_PORTS
        target = {"address_from": gateway[0], "address_to": gateway[0]}
        nat = [{**target, "port_from": lo, "port_to": hi}]
        outbound.append({"action": "snat", **toward, "nat_targets": nat})
    fields = {}
    for which, rules, field in (
        ("in", inbound, "inbound_filter_id"),
        ("out", outbound, "outbound_filter_id"),
    ):
        cid = chain_id(rid, which)
        chains.ensure(service, tx, cid, tenant_id, ("router", rid))
        chains.sync_rules(service, tx, cid, chains.numbered(cid, rules), ("router", rid))
        fields[field] = cid
    return fields


def _nexthop_port(tx: Tx, st: Doc, nexthop: str) -> str | None:
    candidates = list(st["interfaces"])
    if st["gw_port"]:
        candidates.append(st["gw_port"])
    for port_id in candidates:
        port = tx.get(docs.kind("port"), port_id)
        for fixed in (port or {}).get("fixed_ips", []):
            subnet = router_ports.subnet_doc(tx, fixed["subnet_id"])
            if ipaddress.ip_address(nexthop) in ipaddress.ip_network(subnet["cidr"]):
                return router_ports.native_id(port_id)
    return None


def wanted_routes(tx: Tx, router: Doc) -> list[Doc]:
    rid = router["id"]
    st = router_ports.state(tx, rid)
    out: list[Doc] = []
    gateway = _gateway(tx, st)
    if gateway is not None and gateway[1]["gateway_ip"] and gateway[1]["ip_version"] == 4:
        out.append(
            {
                "dst": "0.0.0.0/0",
                "next_hop_port_id": router_ports.native_id(st["gw_port"]),
                "next_hop_gateway": gateway[1]["gateway_ip"],
            }
        )
    for route in router["routes"]:
        port = _nexthop_port(tx, st, route["nexthop"])
        if port is None:
            raise faults.bad_request(
                f"Invalid format for routes: {route}, the nexthop {route['nexthop']} is not"
                " connected with router",
                "InvalidRoutes",
            )
        if ":" in route["destination"]:
            continue  # IPv6: stored, not forwarded
        out.append(
            {
                "dst": route["destination"],
                "next_hop_port_id": port,
                "next_hop_gateway": route["nexthop"],
            }
        )
    for route in out:
        route["router_id"] = rid
        route["id"] = str(uuid.uuid5(_NS, json.dumps(route, sort_keys=True)))
    return out


def sync_routes(service: ObjectService, tx: Tx, router: Doc) -> None:
    st = router_ports.state(tx, router["id"])
    wanted = wanted_routes(tx, router)
    have = set(st.get("routes", []))
    want_ids = {r["id"] for r in wanted}
    for route_id in sorted(have - want_ids):
        if tx.get("route", route_id) is not None:
            service.stage_delete(tx, "route", route_id)
        docs.disown(tx, "route", route_id)
    for route in wanted:
        if route["id"] not in have:
            service.stage_create(tx, "route", route)
            docs.own(tx, "route", route["id"], "router", router["id"])
    router_ports.save_state(tx, router["id"], {**st, "routes": sorted(want_ids)})


def clear(service: ObjectService, tx: Tx, router_id: str) -> None:
    """Leave only the reverse-NAT rules (before the gateway port goes: the SNAT rule names
    it); :func:`sync` writes the rest again."""
    for which, rules in (
        ("in", [{"action": "reverse-snat"}]),
        ("out", [{"action": "reverse-dnat"}]),
    ):
        cid = chain_id(router_id, which)
        if tx.get("chain", cid) is not None:
            chains.sync_rules(service, tx, cid, chains.numbered(cid, rules), ("router", router_id))


def drop(service: ObjectService, tx: Tx, router_id: str) -> None:
    for which in ("in", "out"):
        chains.drop(service, tx, chain_id(router_id, which))


__all__ = ["SNAT_PORTS", "chain_id", "clear", "drop", "sync", "sync_routes", "wanted_routes"]
