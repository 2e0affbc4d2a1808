"""The service's ordering, routes, addresses and names on every backend (memory, SQLite,
ZooKeeper): the same writes give the same records, whatever stores them."""

from __future__ import annotations

import pytest

from netloom.api.service import ObjectService
from netloom.errors import AlreadyExists, Conflict, InvalidInput
from netloom.model.addressing import system_route_ids
from netloom.store.base import Store


def test_rule_positions_are_unique_and_ordered(store: Store) -> None:
    svc = ObjectService(store)
    chain, _ = svc.create("chain", {"name": "c"})
    cid = chain["id"]
    for name, pos in (("a", 0), ("b", 10), ("c", 11)):
        svc.create("rule", {"chain_id": cid, "name": name, "action": "accept", "position": pos})
    svc.create("rule", {"chain_id": cid, "name": "end", "action": "drop"})
    svc.create("rule", {"chain_id": cid, "name": "ins", "action": "drop", "position": 10})
    listed = [(r["name"], r["position"]) for r, _ in svc.list("rule", {"chain_id": cid})]
    assert listed == [("a", 0), ("ins", 10), ("b", 11), ("c", 12), ("end", 13)]


def test_router_port_routes_follow_the_port(store: Store) -> None:
    svc = ObjectService(store)
    router, _ = svc.create("router", {})
    port, _ = svc.create(
        "port", {"device_id": router["id"], "type": "router", "address": "10.0.1.1/24"}
    )
    connected, local = system_route_ids(port["id"])
    assert svc.get("route", connected)[0]["dst"] == "10.0.1.0/24"
    assert svc.get("route", local)[0]["dst"] == "10.0.1.1/32"
    with pytest.raises(Conflict):
        svc.delete("route", connected)
    svc.update("port", port["id"], {"address": "10.0.2.1/24"})
    assert svc.get("route", connected)[0]["dst"] == "10.0.2.0/24"
    svc.delete("port", port["id"])
    assert svc.list("route") == []


def test_fixed_ips_and_names_are_unique(store: Store) -> None:
    svc = ObjectService(store)
    bridge, _ = svc.create("bridge", {"name": "net/1"})
    svc.create("dhcp_subnet", {"bridge_id": bridge["id"], "cidr": "10.0.1.0/24"})
    port = {"device_id": bridge["id"], "type": "bridge", "fixed_ips": ["10.0.1.5"]}
    svc.create("port", port)
    with pytest.raises(AlreadyExists):
        svc.create("port", port)
    with pytest.raises(InvalidInput):
        svc.create("port", {**port, "fixed_ips": ["10.0.9.5"]})
    auto, _ = svc.create("port", {**port, "fixed_ips": ["auto"]})
    assert auto["fixed_ips"] == ["10.0.1.1"]
    for name in ("net/1", "..", "a b ü"):
        if name != "net/1":
            svc.create("bridge", {"name": name})
        with pytest.raises(AlreadyExists):
            svc.create("bridge", {"name": name})
