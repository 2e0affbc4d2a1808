"""A whole tenant topology created over HTTP, read back, and the API's meta documents."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.model.kinds import KINDS
from netloom.store.base import Store

from .conftest import assert_integrity, build_topology, ok

pytestmark = pytest.mark.unit


def test_full_topology_round_trips(client: Any, store: Store) -> None:
    t = build_topology(client)
    assert_integrity(store)

    ports = ok(client.get("/api/v1/ports"))["items"]
    assert len(ports) == 6
    keys = [p["tunnel_key"] for p in ports]
    assert len(set(keys)) == 6 and all(1 <= k < 1 << 20 for k in keys)

    # links are symmetric, bindings are recorded, filters and groups are set
    for i in (1, 2):
        rport = ok(client.get(f"/api/v1/ports/{t[f'rport{i}']}"))
        bport = ok(client.get(f"/api/v1/ports/{t[f'bport{i}']}"))
        assert rport["peer_id"] == bport["id"] and bport["peer_id"] == rport["id"]
        assert rport["address"] == f"10.0.{i}.1/24"
        vm = ok(client.get(f"/api/v1/ports/{t[f'vm{i}']}"))
        assert (vm["host_id"], vm["interface_name"]) == (t["host"], f"tap-vm{i}")
        assert vm["port_group_ids"] == [t["pgroup"]]
        assert vm["inbound_filter_id"] == t["chain_in"]
        assert vm["version"] == 3  # created, bound, patched

    on_bridge1 = ok(client.get("/api/v1/ports", params={"device_id": t["bridge1"]}))["items"]
    assert {p["id"] for p in on_bridge1} == {t["bport1"], t["vm1"]}
    bound = ok(client.get("/api/v1/ports", params={"host_id": t["host"]}))["items"]
    assert {p["id"] for p in bound} == {t["vm1"], t["vm2"]}
    by_mac = ok(client.get("/api/v1/ports", params={"mac": "02-00-00-00-01-01"}))["items"]
    assert [p["id"] for p in by_mac] == [t["vm1"]]  # the filter value is normalised too
    # a list field filters by membership: the ports of a port group
    in_group = ok(client.get("/api/v1/ports", params={"port_group_ids": t["pgroup"]}))["items"]
    assert {p["id"] for p in in_group} == {t["vm1"], t["vm2"]}
    nobody = ok(client.get("/api/v1/ports", params={"port_group_ids": t["tenant"]}))["items"]
    assert nobody == []

    routes = ok(client.get("/api/v1/routes", params={"router_id": t["router"]}))["items"]
    # the hand-made routes and, for each router port, its connected and local route
    assert sorted((r["dst"], r["system"]) for r in routes) == [
        ("0.0.0.0/0", False),
        ("10.0.1.0/24", False),
        ("10.0.1.0/24", True),
        ("10.0.1.1/32", True),
        ("10.0.2.0/24", False),
        ("10.0.2.0/24", True),
        ("10.0.2.1/32", True),
    ]
    rules = ok(client.get("/api/v1/rules", params={"chain_id": t["chain_sg"]}))["items"]
    assert {r["action"] for r in rules} == {"accept", "drop"}
    ssh = ok(client.get(f"/api/v1/rules/{t['rule_ssh']}"))
    assert ssh["tp_dst"] == {"start": 22, "end": 22}
    jump = ok(client.get(f"/api/v1/rules/{t['rule_jump']}"))
    assert jump["jump_chain_id"] == t["chain_sg"]
    subnet = ok(client.get(f"/api/v1/dhcp_subnets/{t['subnet1']}"))
    assert subnet["hosts"][0]["ip"] == "10.0.1.10" and subnet["mtu"] == 1450
    stateful = ok(client.get("/api/v1/port_groups", params={"stateful": "true"}))["items"]
    assert [g["id"] for g in stateful] == [t["pgroup"]]
    zones = ok(client.get("/api/v1/tunnel_zones"))["items"]
    assert zones[0]["members"] == [{"host_id": t["host"], "ip": "192.0.2.1"}]

    response = client.get(f"/api/v1/tenants/{t['tenant']}")
    assert response.headers["etag"] == '"1"' and response.json()["version"] == 1


def test_unlink_and_unbind_are_symmetric_and_release_indexes(client: Any, store: Store) -> None:
    t = build_topology(client)
    unlinked = ok(client.delete(f"/api/v1/ports/{t['bport1']}/link"))
    assert unlinked["peer_id"] is None
    assert ok(client.get(f"/api/v1/ports/{t['rport1']}"))["peer_id"] is None
    ok(client.delete(f"/api/v1/ports/{t['vm1']}/binding"))
    assert_integrity(store)
    # the interface name is free again, and the two ports can be linked the other way round
    ok(
        client.post(
            f"/api/v1/ports/{t['vm2']}/binding",
            json={"host_id": t["host"], "interface_name": "tap-vm2"},
        )
    )  # same binding: a no-op
    vm1 = ok(
        client.post(
            f"/api/v1/ports/{t['vm1']}/binding",
            json={"host_id": t["host"], "interface_name": "tap-vm1"},
        )
    )
    assert vm1["host_id"] == t["host"]
    ok(client.post(f"/api/v1/ports/{t['rport1']}/link", json={"peer_id": t["bport1"]}))
    assert ok(client.get(f"/api/v1/ports/{t['bport1']}"))["peer_id"] == t["rport1"]
    assert_integrity(store)


def test_put_replaces_and_keeps_system_fields(client: Any, store: Store) -> None:
    t = build_topology(client)
    port = ok(client.get(f"/api/v1/ports/{t['vm1']}"))
    body = {k: v for k, v in port.items() if k != "version"}
    body["name"] = "renamed"
    body.pop("tunnel_key")
    response = client.put(
        f"/api/v1/ports/{t['vm1']}", json=body, headers={"If-Match": response_etag(port)}
    )
    new = ok(response)
    assert new["name"] == "renamed" and new["tunnel_key"] == port["tunnel_key"]
    assert new["version"] == port["version"] + 1
    assert response.headers["etag"] == f'"{new["version"]}"'
    # a GET-modify-PUT round trip that carries the unchanged system field is accepted
    again = {**new, "name": "again"}
    again.pop("version")
    assert ok(client.put(f"/api/v1/ports/{t['vm1']}", json=again))["name"] == "again"
    assert_integrity(store)


def response_etag(doc: dict[str, Any]) -> str:
    return f'"{doc["version"]}"'


def test_host_alive_only_through_the_service(client: Any, service: Any) -> None:
    host = ok(client.post("/api/v1/hosts", json={"name": "h"}), 201)
    assert host["alive"] is False
    doc, version = service.set_host_alive(host["id"], True)
    assert doc["alive"] is True and version == 2
    assert service.set_host_alive(host["id"], True)[1] == 2  # unchanged: no write
    assert ok(client.get("/api/v1/hosts", params={"alive": "true"}))["items"][0]["id"] == host["id"]
    bad = client.patch(f"/api/v1/hosts/{host['id']}", json={"alive": False})
    assert bad.status_code == 400 and bad.json()["field"] == "alive"


def test_index_health_and_openapi(client: Any) -> None:
    index = ok(client.get("/api/v1"))
    assert {c["name"] for c in index["collections"]} == {k.collection for k in KINDS.values()}
    assert ok(client.get("/healthz"))["status"] == "ok"
    doc = ok(client.get("/api/v1/openapi.json"))
    schemas = doc["components"]["schemas"]
    for k in KINDS.values():
        name = k.record.__name__
        base = f"/api/v1/{k.collection}"
        create = doc["paths"][base]["post"]["requestBody"]["content"]["application/json"]
        assert create["schema"]["$ref"] == f"#/components/schemas/{name}Create"
        assert set(k.read_only).isdisjoint(schemas[f"{name}Create"]["properties"])
        assert set(schemas[name]["properties"]) >= set(k.record.model_fields)
        item = doc["paths"][f"{base}/{{id}}"]
        assert {"get", "put", "patch", "delete"} <= set(item)
        assert (
            item["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            == f"#/components/schemas/{name}Patch"
        )
        params = {p["name"] for p in doc["paths"][base]["get"].get("parameters", [])}
        assert params == {*k.filters, "limit", "marker", "sort_key", "sort_dir"}
    assert schemas["Port"]["properties"]["tunnel_key"]["readOnly"] is True
    assert "/api/v1/ports/{id}/binding" in doc["paths"]
    assert "/api/v1/ports/{id}/link" in doc["paths"]
    assert not any(
        "422" in op.get("responses", {}) for item in doc["paths"].values() for op in item.values()
    )
