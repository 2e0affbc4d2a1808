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


def test_learned_routes_and_snat_blocks(store: Store) -> None:
    """An agent's report becomes routes of the uplink's router and its difference is written;
    concurrent SNAT leases never share a block; a dead host's routes and blocks go."""
    import threading

    from netloom.api import snat
    from netloom.api.reports import ClusterReports
    from netloom.model.bgp import LearnedRoute

    svc = ObjectService(store)
    router, _ = svc.create("router", {})
    host, _ = svc.create("host", {"name": "gw"})
    uplink, _ = svc.create(
        "port",
        {"device_id": router["id"], "type": "router", "address": "198.19.1.2/24",
         "host_id": host["id"], "interface_name": "up1"},
    )  # fmt: skip
    peer, _ = svc.create(
        "bgp_peer", {"router_id": router["id"], "address": "198.19.1.1", "asn": 1, "local_as": 2}
    )
    reports = ClusterReports(svc)

    def learned() -> set[str]:
        return {r["dst"] for r, _ in svc.list("route", {"learned_from": peer["id"]})}

    routes = [
        LearnedRoute(f"10.{i // 256}.{i % 256}.0/24", "198.19.1.1", peer["id"]) for i in range(300)
    ]
    assert reports.learned_routes(host["id"], uplink["id"], routes) == 300
    assert reports.learned_routes(host["id"], uplink["id"], routes[:100]) == 200
    assert learned() == {f"10.0.{i}.0/24" for i in range(100)}
    got: list[tuple[int, int]] = []

    def lease(h: str) -> None:
        for _ in range(5):
            got.append(snat.lease(ObjectService(store), h, router["id"], "203.0.113.7"))

    threads = [threading.Thread(target=lease, args=(h,)) for h in (host["id"], "other")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 10
    reports.hosts_down({host["id"]}, {uplink["id"]})
    assert learned() == set()
    assert snat.release(svc, {"other"}) == 5
