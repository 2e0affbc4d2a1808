"""ObjectService rules that need more than one request: tunnel-key allocation, cascading
deletes, links made at creation, merge-patch semantics."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.api.tx import COUNTER
from netloom.errors import AlreadyExists, InUse, InvalidInput, NotFound
from netloom.model.integrity import TUNNEL_KEY_MAX
from netloom.store.base import Put, Store

from .conftest import assert_integrity, build_topology, mac, ok, snapshot

pytestmark = pytest.mark.unit


def test_tunnel_keys_are_unique_across_many_ports(service: ObjectService, store: Store) -> None:
    bridge, _ = service.create("bridge", {})
    ports = [
        service.create("port", {"device_id": bridge["id"], "type": "bridge"})[0] for _ in range(300)
    ]
    keys = {p["tunnel_key"] for p in ports}
    assert len(keys) == 300 and all(1 <= k <= TUNNEL_KEY_MAX for k in keys)
    # freed keys are reusable but never collide with live ones
    for p in ports[::3]:
        service.delete("port", p["id"])
    more = [
        service.create("port", {"device_id": bridge["id"], "type": "bridge"})[0] for _ in range(150)
    ]
    live = [p["tunnel_key"] for p, _ in service.list("port")]
    assert len(live) == 350 and len(set(live)) == 350
    assert {p["tunnel_key"] for p in more}.isdisjoint(
        {p["tunnel_key"] for p in ports if p not in ports[::3]}
    )
    assert_integrity(store)


def test_tunnel_key_search_wraps_around_and_skips_used_keys(
    service: ObjectService, store: Store
) -> None:
    bridge, _ = service.create("bridge", {})
    first, _ = service.create("port", {"device_id": bridge["id"], "type": "bridge"})
    assert first["tunnel_key"] == 1
    version = store.get(COUNTER, "tunnel_key")
    assert version is not None
    store.commit(
        [Put(COUNTER, "tunnel_key", {"next": TUNNEL_KEY_MAX}, expect_version=version.version)]
    )
    top, _ = service.create("port", {"device_id": bridge["id"], "type": "bridge"})
    wrapped, _ = service.create("port", {"device_id": bridge["id"], "type": "bridge"})
    assert top["tunnel_key"] == TUNNEL_KEY_MAX
    assert wrapped["tunnel_key"] == 2  # 1 is taken
    assert_integrity(store)


def test_cascade_delete_of_a_router(client: Any, service: ObjectService, store: Store) -> None:
    t = build_topology(client)
    assert client.delete(f"/api/v1/routers/{t['router']}").status_code == 409
    response = client.delete(f"/api/v1/routers/{t['router']}", params={"cascade": "true"})
    assert response.status_code == 204, response.text
    # its ports and routes are gone, the bridge ports it was linked to are unlinked
    assert service.list("route") == []
    assert [p["id"] for p, _ in service.list("port", {"type": "router"})] == []
    for i in (1, 2):
        bport, _ = service.get("port", t[f"bport{i}"])
        assert bport["peer_id"] is None
    assert_integrity(store)


def test_cascade_delete_of_a_bridge_and_a_chain(
    client: Any, service: ObjectService, store: Store
) -> None:
    t = build_topology(client)
    # a chain that others jump to cannot go, even with cascade
    bad = client.delete(f"/api/v1/chains/{t['chain_sg']}", params={"cascade": "true"})
    assert bad.status_code == 409 and "rule:" in bad.json()["message"]
    # the ports of bridge 2 are the filter's users; release them, then the chain cascades
    ok(client.patch(f"/api/v1/ports/{t['vm1']}", json={"inbound_filter_id": None}))
    ok(client.patch(f"/api/v1/ports/{t['vm2']}", json={"inbound_filter_id": None}))
    assert (
        client.delete(f"/api/v1/chains/{t['chain_in']}", params={"cascade": "true"}).status_code
        == 204
    )
    assert service.list("rule", {"chain_id": t["chain_in"]}) == []
    # bridge 1 with its DHCP subnet, its VM port (bound) and its linked port
    response = client.delete(f"/api/v1/bridges/{t['bridge1']}", params={"cascade": "true"})
    assert response.status_code == 204, response.text
    assert service.list("dhcp_subnet", {"bridge_id": t["bridge1"]}) == []
    assert service.list("port", {"device_id": t["bridge1"]}) == []
    assert service.get("port", t["rport1"])[0]["peer_id"] is None
    assert_integrity(store)
    # the freed MAC and interface can be used again
    port, _ = service.create(
        "port",
        {
            "device_id": t["bridge2"],
            "type": "bridge",
            "mac": mac(0x101),
            "host_id": t["host"],
            "interface_name": "tap-vm1",
        },
    )
    assert port["host_id"] == t["host"]
    assert_integrity(store)


def test_cascade_refused_keeps_everything(client: Any, store: Store) -> None:
    t = build_topology(client)
    ok(
        client.post(
            "/api/v1/rules",
            json={"chain_id": t["chain_sg"], "action": "drop", "in_port_ids": [t["vm1"]]},
        ),
        201,
    )
    before = snapshot(store)
    response = client.delete(f"/api/v1/bridges/{t['bridge1']}", params={"cascade": "true"})
    assert response.status_code == 409 and response.json()["code"] == "in_use"
    assert snapshot(store) == before


def test_link_at_creation_is_symmetric(service: ObjectService, store: Store) -> None:
    router, _ = service.create("router", {})
    bridge, _ = service.create("bridge", {})
    rport, _ = service.create(
        "port",
        {"device_id": router["id"], "type": "router", "mac": mac(1), "address": "10.0.0.1/24"},
    )
    bport, _ = service.create(
        "port", {"device_id": bridge["id"], "type": "bridge", "peer_id": rport["id"]}
    )
    assert service.get("port", rport["id"])[0]["peer_id"] == bport["id"]
    with pytest.raises(InvalidInput):
        service.link_ports(bport["id"], bport["id"])
    service.unlink_port(rport["id"])
    assert service.get("port", bport["id"])[0]["peer_id"] is None
    assert_integrity(store)


def test_merge_patch_null_resets_and_nested_merge(service: ObjectService) -> None:
    chain, _ = service.create("chain", {})
    rule, _ = service.create(
        "rule",
        {
            "chain_id": chain["id"],
            "action": "accept",
            "tp_dst": {"start": 80, "end": 90},
            "nw_proto": 6,
        },
    )
    rule, version = service.update("rule", rule["id"], {"tp_dst": {"end": 443}, "nw_proto": None})
    assert rule["tp_dst"] == {"start": 80, "end": 443} and rule["nw_proto"] is None
    assert version == 2
    same, v = service.update("rule", rule["id"], {})
    assert v == 2 and same == rule  # nothing changed: nothing written
    with pytest.raises(InvalidInput) as info:
        service.update("rule", rule["id"], {"chain_id": None})
    assert info.value.field == "chain_id"


def test_service_errors(service: ObjectService) -> None:
    with pytest.raises(InvalidInput):
        service.create("_refs", {})
    with pytest.raises(NotFound):
        service.set_host_alive("00000000-0000-0000-0000-000000000000", True)
    with pytest.raises(NotFound):
        service.delete("tenant", "00000000-0000-0000-0000-000000000000")
    tenant, _ = service.create("tenant", {})
    with pytest.raises(AlreadyExists):
        service.create("tenant", {"id": tenant["id"]})
    service.create("bridge", {"tenant_id": tenant["id"]})
    with pytest.raises(InUse):
        service.delete("tenant", tenant["id"], cascade=True)  # bridges are not its children
