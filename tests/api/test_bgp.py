"""BGP peers and networks over REST: validation (each bad input a 4xx naming the field, nothing
stored), the write-only password, the peer's status, learned routes owned by their session."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from netloom.api.service import ObjectService
from netloom.api.tx import BGP_STATUS
from netloom.model import addressing
from netloom.model.kinds import SECRET_MASK
from netloom.store.base import Put, Store

from .conftest import assert_integrity, ok, snapshot

pytestmark = pytest.mark.unit

Topo = dict[str, str]


def _post(client: TestClient, coll: str, body: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post(f"/api/v1/{coll}", json=body), 201)


@pytest.fixture
def gw(client: TestClient) -> Topo:
    """A provider router with one uplink (198.19.1.2/24, bound to a gateway host), an interior
    port (10.0.0.1/24, not bound) and a peer at 198.19.1.1."""
    t: Topo = {}
    t["host"] = _post(client, "hosts", {"name": "gw-1"})["id"]
    t["router"] = _post(client, "routers", {"name": "provider"})["id"]
    t["uplink"] = _post(
        client,
        "ports",
        {
            "device_id": t["router"],
            "type": "router",
            "address": "198.19.1.2/24",
            "host_id": t["host"],
            "interface_name": "uplink1",
        },
    )["id"]
    t["inner"] = _post(
        client, "ports", {"device_id": t["router"], "type": "router", "address": "10.0.0.1/24"}
    )["id"]
    t["peer"] = _post(
        client,
        "bgp_peers",
        {"router_id": t["router"], "address": "198.19.1.1", "asn": 64512, "local_as": 64513},
    )["id"]
    t["net"] = _post(
        client, "bgp_networks", {"router_id": t["router"], "prefix": "203.0.113.0/24"}
    )["id"]
    return t


def _peer(t: Topo, **extra: Any) -> dict[str, Any]:
    return {"router_id": t["router"], "address": "198.19.1.9", "asn": 64512, "local_as": 1, **extra}


BAD_PEERS: list[tuple[str, dict[str, Any], str | None]] = [
    ("as 0", {"asn": 0}, "asn"),
    ("as above 32 bits", {"asn": 4294967296}, "asn"),
    ("local as 0", {"local_as": 0}, "local_as"),
    ("hold time 2", {"hold_time": 2, "keepalive": 0}, "hold_time"),
    ("keepalive over a third of hold", {"hold_time": 9, "keepalive": 4}, None),
    ("keepalive out of range", {"keepalive": 30000}, "keepalive"),
    ("off every uplink", {"address": "198.19.2.1"}, "address"),
    ("on an interior port's subnet", {"address": "10.0.0.7"}, "address"),
    ("the uplink's own address", {"address": "198.19.1.2"}, "address"),
    ("the subnet's broadcast", {"address": "198.19.1.255"}, "address"),
    ("duplicate peer", {"address": "198.19.1.1"}, "address"),
    ("learned_from on input", {"learned_from": "x"}, "learned_from"),
    ("password is the mask", {"password": SECRET_MASK}, "password"),
    ("empty password", {"password": ""}, "password"),
]


@pytest.mark.parametrize("case", BAD_PEERS, ids=[c[0] for c in BAD_PEERS])
def test_bad_peer_is_4xx_and_stores_nothing(
    client: TestClient, store: Store, gw: Topo, case: tuple[str, dict[str, Any], str | None]
) -> None:
    name, extra, field = case
    before = snapshot(store)
    r = client.post("/api/v1/bgp_peers", json=_peer(gw, **extra))
    assert 400 <= r.status_code < 500, (name, r.text)
    body = r.json()
    assert body["message"]
    if field is not None:
        assert body["field"] == field, body
    assert snapshot(store) == before


BAD_NETWORKS: list[tuple[str, dict[str, Any], str]] = [
    ("host bits set", {"prefix": "203.0.113.1/24"}, "prefix"),
    ("not a prefix", {"prefix": "bogus"}, "prefix"),
    ("duplicate", {"prefix": "203.0.113.0/24"}, "prefix"),
    ("no router", {"router_id": "00000000-0000-0000-0000-000000000000"}, "router_id"),
]


@pytest.mark.parametrize("case", BAD_NETWORKS, ids=[c[0] for c in BAD_NETWORKS])
def test_bad_network_is_4xx_and_stores_nothing(
    client: TestClient, store: Store, gw: Topo, case: tuple[str, dict[str, Any], str]
) -> None:
    name, extra, field = case
    before = snapshot(store)
    body = {"router_id": gw["router"], "prefix": "198.18.0.0/15", **extra}
    r = client.post("/api/v1/bgp_networks", json=body)
    assert 400 <= r.status_code < 500, (name, r.text)
    assert r.json()["field"] == field
    assert snapshot(store) == before


def test_same_peer_address_on_two_routers_and_a_network_per_router(
    client: TestClient, gw: Topo
) -> None:
    other = _post(client, "routers", {"name": "other"})["id"]
    _post(
        client,
        "ports",
        {
            "device_id": other,
            "type": "router",
            "address": "198.19.1.3/24",
            "host_id": gw["host"],
            "interface_name": "uplink2",
        },
    )
    _post(client, "bgp_peers", {**_peer(gw), "router_id": other, "address": "198.19.1.1"})
    _post(client, "bgp_networks", {"router_id": other, "prefix": "203.0.113.0/24"})


def test_password_is_write_only(client: TestClient, store: Store, gw: Topo) -> None:
    made = _post(client, "bgp_peers", _peer(gw, password="s3cret"))
    assert made["password"] == SECRET_MASK
    got = ok(client.get(f"/api/v1/bgp_peers/{made['id']}"))
    assert got["password"] == SECRET_MASK
    listed = ok(client.get("/api/v1/bgp_peers", params={"router_id": gw["router"]}))["items"]
    assert "s3cret" not in str(listed)
    stored = store.get("bgp_peer", made["id"])
    assert stored is not None and stored.data["password"] == "s3cret"  # agents need it
    # GET-modify-PUT keeps it; PATCH null removes it
    put = {k: v for k, v in got.items() if k != "version"} | {"hold_time": 30, "keepalive": 10}
    ok(client.put(f"/api/v1/bgp_peers/{made['id']}", json=put))
    stored = store.get("bgp_peer", made["id"])
    assert stored is not None and stored.data["password"] == "s3cret"
    assert stored.data["hold_time"] == 30
    gone = ok(client.patch(f"/api/v1/bgp_peers/{made['id']}", json={"password": None}))
    assert gone["password"] is None
    plain = ok(client.get(f"/api/v1/bgp_peers/{gw['peer']}"))
    assert plain["password"] is None


def test_status_is_read_only_and_down_until_reported(
    client: TestClient, store: Store, gw: Topo
) -> None:
    got = ok(client.get(f"/api/v1/bgp_peers/{gw['peer']}"))
    assert got["status"]["state"] == "down" and got["status"]["routes"] == 0
    store.commit([Put(BGP_STATUS, gw["peer"], {"state": "established", "since": 1.0, "routes": 3})])
    got = ok(client.get(f"/api/v1/bgp_peers/{gw['peer']}"))
    assert got["status"]["state"] == "established" and got["status"]["routes"] == 3
    # a GET answer PUT back unchanged is accepted (status ignored on input)
    body = {k: v for k, v in got.items() if k != "version"}
    ok(client.put(f"/api/v1/bgp_peers/{gw['peer']}", json=body))


def _learn(service: ObjectService, t: Topo, dst: str) -> str:
    """A learned route written the way the cluster writes an agent's report."""
    from netloom.model.bgp import LearnedRoute

    doc = addressing.learned_route(
        t["router"], t["uplink"], "198.19.1.1", LearnedRoute(dst, "198.19.1.1", t["peer"])
    )

    def plan(tx: Any) -> None:
        service.save(tx, "route", doc["id"], None, doc)

    service.run(plan)
    return str(doc["id"])


def test_learned_routes_go_with_their_peer_and_not_alone(
    client: TestClient, service: ObjectService, store: Store, gw: Topo
) -> None:
    rid = _learn(service, gw, "0.0.0.0/0")
    _learn(service, gw, "198.18.0.0/15")
    assert client.delete(f"/api/v1/routes/{rid}").status_code == 409
    assert client.patch(f"/api/v1/routes/{rid}", json={"weight": 5}).status_code == 409
    store.commit([Put(BGP_STATUS, gw["peer"], {"state": "established"})])
    assert client.delete(f"/api/v1/bgp_peers/{gw['peer']}").status_code == 204
    assert store.get("route", rid) is None
    assert store.get(BGP_STATUS, gw["peer"]) is None
    assert_integrity(store)


def test_learned_routes_go_with_their_uplink(
    client: TestClient, service: ObjectService, store: Store, gw: Topo
) -> None:
    rid = _learn(service, gw, "0.0.0.0/0")
    r = client.delete(f"/api/v1/ports/{gw['uplink']}")
    assert r.status_code == 204, r.text
    assert store.get("route", rid) is None
    assert_integrity(store)


def test_router_cascade_takes_peers_networks_and_learned_routes(
    client: TestClient, service: ObjectService, store: Store, gw: Topo
) -> None:
    _learn(service, gw, "0.0.0.0/0")
    r = client.delete(f"/api/v1/routers/{gw['router']}", params={"cascade": "true"})
    assert r.status_code == 204, r.text
    assert store.list("bgp_peer") == [] and store.list("bgp_network") == []
    assert store.list("route") == []
    assert_integrity(store)
