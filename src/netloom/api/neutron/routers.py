"""Neutron routers, translated to native routers (same id) with NAT chains as filters
(:mod:`.router_nat`), a gateway port on an external network (``external_gateway_info``) and
interfaces on subnets (``add_router_interface``, :mod:`.router_ifaces`)."""

from __future__ import annotations

from typing import Any

from netloom.api.neutron import attrs, docs, faults, router_nat, router_ports
from netloom.api.neutron.attrs import Attr
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx
from netloom.model.types import new_id

RESOURCE = "router"

_FIXED = attrs.dict_of({"subnet_id": attrs.to_uuid, "ip_address": attrs.to_ip})
_GATEWAY = attrs.optional(
    attrs.dict_of(
        {
            "network_id": attrs.to_uuid,
            "enable_snat": attrs.to_bool,
            "external_fixed_ips": attrs.list_of(_FIXED),
        },
        required=("network_id",),
    )
)
_ROUTE = attrs.dict_of(
    {"destination": attrs.to_cidr, "nexthop": attrs.to_ip}, required=("destination", "nexthop")
)

ATTRS: dict[str, Attr] = {
    **attrs.OWNED,
    **attrs.STANDARD,
    "admin_state_up": Attr(default=True, convert=attrs.to_bool),
    "status": Attr(post=False, put=False),
    "external_gateway_info": Attr(default=None, convert=_GATEWAY),
    "routes": Attr(post=False, default=[], convert=attrs.list_of(_ROUTE, unique=True)),
}


def _set_gateway(service: ObjectService, tx: Tx, router: Doc, old: Doc | None) -> None:
    """Make the gateway port ``external_gateway_info`` asks for (removing the old one)."""
    rid = router["id"]
    st = router_ports.state(tx, rid)
    want = router["external_gateway_info"]
    before = (old or {}).get("external_gateway_info")
    same_net = want and before and want["network_id"] == before["network_id"]
    same_ips = want and "external_fixed_ips" not in (want or {})
    if st["gw_port"] and (not want or not same_net or not same_ips):
        gw = tx.get(docs.kind("port"), st["gw_port"])
        if gw is not None:
            router_nat.clear(service, tx, rid)
            router_ports.unlink(service, tx, gw)
        st = {**router_ports.state(tx, rid), "gw_port": None}
        router_ports.save_state(tx, rid, st)
    if not want:
        return
    if st["gw_port"] is None:
        network = docs.get(tx, "network", want["network_id"], docs.Caller())
        if not network["router:external"]:
            raise faults.bad_request(
                f"Bad router request: Network {network['id']} is not a valid external network.",
                "BadRequest",
            )
        fixed = want.get("external_fixed_ips")
        if fixed is None:
            v4 = [s for s in network["subnets"] if _v4(tx, s)]
            fixed = [{"subnet_id": v4[0]}] if v4 else []
        want_port = {
            "network_id": network["id"],
            "device_owner": router_ports.GATEWAY,
            "device_id": rid,
            "fixed_ips": fixed,
        }
        gw = router_ports.new_port(service, tx, want_port)
        if not gw["fixed_ips"]:
            raise faults.bad_request(
                f"Bad router request: No IPv4 subnet on external network {network['id']}.",
                "BadRequest",
            )
        subnet = router_ports.subnet_doc(tx, gw["fixed_ips"][0]["subnet_id"])
        router_ports.link(service, tx, rid, gw, subnet)
        router_ports.save_state(tx, rid, {**router_ports.state(tx, rid), "gw_port": gw["id"]})
        st = router_ports.state(tx, rid)
    gw = tx.get(docs.kind("port"), st["gw_port"])
    assert gw is not None
    router["external_gateway_info"] = {
        "network_id": gw["network_id"],
        "enable_snat": want.get("enable_snat", True),
        "external_fixed_ips": gw["fixed_ips"],
    }


def _v4(tx: Tx, subnet_id: str) -> bool:
    subnet = tx.get(docs.kind("subnet"), subnet_id)
    return subnet is not None and subnet["ip_version"] == 4


def sync(service: ObjectService, tx: Tx, router: Doc) -> None:
    """Rewrite the router's NAT chains and routes from its state (same commit)."""
    native = tx.get("router", router["id"])
    assert native is not None
    fields = router_nat.sync(service, tx, router, native["tenant_id"])
    patch = {**fields, "admin_state_up": router["admin_state_up"]}
    service.stage_update(tx, "router", router["id"], patch)
    router_nat.sync_routes(service, tx, router)


def create(service: ObjectService, caller: docs.Caller, body: Any) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=True)
    project = attrs.check_project(given, caller)
    base = {
        "id": given.pop("id", None) or new_id(),
        **given,
        "tenant_id": project,
        "project_id": project,
        "status": "ACTIVE",
        "routes": [],
    }

    def plan(tx: Tx) -> Doc:
        rid = base["id"]
        if tx.get(docs.kind(RESOURCE), rid) is not None:
            raise faults.conflict("RouterExists", f"Router {rid} already exists.")
        tid = docs.ensure_tenant(service, tx, project)
        doc = docs.stamp(dict(base), None)
        service.stage_create(tx, "router", {"id": rid, "tenant_id": tid})
        docs.own(tx, "router", rid, RESOURCE, rid)
        router_ports.save_state(tx, rid, router_ports.state(tx, rid))
        _set_gateway(service, tx, doc, None)
        sync(service, tx, doc)
        docs.put(tx, RESOURCE, doc)
        return doc

    return service.transact(plan)


def update(
    service: ObjectService, caller: docs.Caller, id: str, body: Any, if_match: str | None
) -> Doc:
    given = attrs.parse(RESOURCE, body, ATTRS, create=False)

    def change(tx: Tx, old: Doc) -> Doc:
        doc = {**old, **given}
        if "external_gateway_info" in given:
            _set_gateway(service, tx, doc, old)
        sync(service, tx, doc)
        return doc

    return docs.update_plan(service, RESOURCE, (caller, id, if_match), change)


def delete(service: ObjectService, caller: docs.Caller, id: str, if_match: str | None) -> None:
    def remove(tx: Tx, old: Doc) -> None:
        st = router_ports.state(tx, id)
        if st["interfaces"]:
            raise faults.conflict(
                "RouterInUse",
                f"Router {id} still has ports",
            )
        if st["fips"]:
            raise faults.conflict("RouterInUse", f"Router {id} still has floating IPs associated")
        router_nat.clear(service, tx, id)
        if st["gw_port"]:
            gw = tx.get(docs.kind("port"), st["gw_port"])
            if gw is not None:
                router_ports.unlink(service, tx, gw)
        for route_id in st.get("routes", []):
            docs.disown(tx, "route", route_id)
        service.stage_delete(tx, "router", id, cascade=True)
        docs.disown(tx, "router", id)
        router_nat.drop(service, tx, id)
        tx.delete(router_ports.STATE, id)

    docs.delete_plan(service, RESOURCE, (caller, id, if_match), remove)


__all__ = ["ATTRS", "RESOURCE", "create", "delete", "sync", "update"]
