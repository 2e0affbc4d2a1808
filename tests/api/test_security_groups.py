"""Port groups keep an IP address group of their members' fixed IPs, written in the commit that
changes a member; IP address groups hold addresses and prefixes. Through HTTP on the memory
and SQLite backends."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.store.base import Store

from .conftest import assert_integrity, ok, snapshot

pytestmark = pytest.mark.unit


def _post(client: Any, coll: str, body: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post(f"/api/v1/{coll}", json=body), 201)


def _addresses(client: Any, gid: str) -> list[str]:
    return list(ok(client.get(f"/api/v1/ip_addr_groups/{gid}"))["addresses"])


def _refused(client: Any, method: str, path: str, body: Any, status: int, field: str) -> None:
    answer = client.request(method, f"/api/v1/{path}", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.text


def _two_bridges(client: Any) -> tuple[str, str, str]:
    tenant = _post(client, "tenants", {"name": "sg-t"})["id"]
    bridges = []
    for i in (1, 2):
        b = _post(client, "bridges", {"tenant_id": tenant, "name": f"sg-net{i}"})["id"]
        _post(client, "dhcp_subnets", {"bridge_id": b, "cidr": f"10.0.{i}.0/24"})
        bridges.append(b)
    return tenant, bridges[0], bridges[1]


def test_port_group_address_group_follows_members(
    client: Any, store: Store, service: ObjectService
) -> None:
    tenant, net1, net2 = _two_bridges(client)
    pg = _post(client, "port_groups", {"tenant_id": tenant, "name": "admin"})
    gid = pg["ip_addr_group_id"]
    group = ok(client.get(f"/api/v1/ip_addr_groups/{gid}"))
    assert group["port_group_id"] == pg["id"] and group["tenant_id"] == tenant
    assert group["addresses"] == []
    listed = service.list("ip_addr_group", {"port_group_id": pg["id"]})
    assert [g["id"] for g, _ in listed] == [gid]

    port = {"type": "bridge", "port_group_ids": [pg["id"]]}
    a = _post(client, "ports", {**port, "device_id": net1, "fixed_ips": ["10.0.1.20"]})
    c = _post(client, "ports", {**port, "device_id": net2, "fixed_ips": ["10.0.2.9"]})
    assert _addresses(client, gid) == ["10.0.1.20", "10.0.2.9"]

    # readdressing a member rewrites the group in the same commit
    before = store.revision()
    ok(client.patch(f"/api/v1/ports/{a['id']}", json={"fixed_ips": ["10.0.1.30", "10.0.1.31"]}))
    assert store.revision() == before + 1
    assert _addresses(client, gid) == ["10.0.1.30", "10.0.1.31", "10.0.2.9"]

    # joining and leaving
    b = _post(client, "ports", {"device_id": net1, "type": "bridge", "fixed_ips": ["10.0.1.40"]})
    before = store.revision()
    ok(client.patch(f"/api/v1/ports/{b['id']}", json={"port_group_ids": [pg["id"]]}))
    assert store.revision() == before + 1
    assert "10.0.1.40" in _addresses(client, gid)
    ok(client.patch(f"/api/v1/ports/{c['id']}", json={"port_group_ids": []}))
    assert _addresses(client, gid) == ["10.0.1.30", "10.0.1.31", "10.0.1.40"]
    assert client.delete(f"/api/v1/ports/{b['id']}").status_code == 204
    assert _addresses(client, gid) == ["10.0.1.30", "10.0.1.31"]
    assert_integrity(store)


def test_an_address_two_members_hold_stays_until_both_leave(client: Any, store: Store) -> None:
    tenant, net1, net2 = _two_bridges(client)
    pg = _post(client, "port_groups", {"tenant_id": tenant})
    gid = pg["ip_addr_group_id"]
    body = {"type": "bridge", "port_group_ids": [pg["id"]]}
    _post(client, "dhcp_subnets", {"bridge_id": net2, "cidr": "10.0.1.0/24"})
    p1 = _post(client, "ports", {**body, "device_id": net1, "fixed_ips": ["10.0.1.5"]})
    p2 = _post(client, "ports", {**body, "device_id": net2, "fixed_ips": ["10.0.1.5"]})
    assert _addresses(client, gid) == ["10.0.1.5"]
    assert client.delete(f"/api/v1/ports/{p1['id']}").status_code == 204
    assert _addresses(client, gid) == ["10.0.1.5"]
    assert client.delete(f"/api/v1/ports/{p2['id']}").status_code == 204
    assert _addresses(client, gid) == []
    assert_integrity(store)


def test_the_system_owns_the_derived_group(client: Any, store: Store) -> None:
    tenant, net1, _ = _two_bridges(client)
    pg = _post(client, "port_groups", {"tenant_id": tenant, "name": "web"})
    gid = pg["ip_addr_group_id"]
    before = snapshot(store)
    _refused(client, "PATCH", f"ip_addr_groups/{gid}", {"addresses": ["1.2.3.4"]}, 409, "addresses")
    _refused(client, "DELETE", f"ip_addr_groups/{gid}", None, 409, "id")
    _refused(client, "PATCH", f"port_groups/{pg['id']}", {"ip_addr_group_id": gid[::-1]}, 400,
             "ip_addr_group_id")  # fmt: skip
    _refused(client, "POST", "ip_addr_groups", {"port_group_id": pg["id"]}, 400, "port_group_id")
    _refused(client, "POST", "port_groups", {"ip_addr_group_id": gid}, 400, "ip_addr_group_id")
    assert snapshot(store) == before
    # a PUT without the system's field keeps it
    put = ok(client.put(f"/api/v1/port_groups/{pg['id']}", json={"tenant_id": tenant}))
    assert put["ip_addr_group_id"] == gid
    # sharing the port group shares its addresses
    ok(client.patch(f"/api/v1/port_groups/{pg['id']}", json={"shared": True}))
    assert ok(client.get(f"/api/v1/ip_addr_groups/{gid}"))["shared"] is True
    # a rule using the addresses keeps the group; the members keep the port group
    chain = _post(client, "chains", {"tenant_id": tenant})["id"]
    rule = _post(
        client, "rules", {"chain_id": chain, "action": "accept", "ip_addr_group_src_id": gid}
    )
    remote = _post(
        client, "rules", {"chain_id": chain, "action": "drop", "remote_group_dst_id": pg["id"]}
    )
    port = _post(client, "ports", {"device_id": net1, "type": "bridge", "fixed_ips": ["auto"]})
    ok(client.patch(f"/api/v1/ports/{port['id']}", json={"port_group_ids": [pg["id"]]}))
    assert client.delete(f"/api/v1/port_groups/{pg['id']}").status_code == 409
    assert client.delete(f"/api/v1/rules/{rule['id']}").status_code == 204
    assert client.delete(f"/api/v1/port_groups/{pg['id']}").status_code == 409
    assert client.delete(f"/api/v1/rules/{remote['id']}").status_code == 204
    assert client.delete(f"/api/v1/port_groups/{pg['id']}").status_code == 409
    ok(client.patch(f"/api/v1/ports/{port['id']}", json={"port_group_ids": []}))
    assert client.delete(f"/api/v1/port_groups/{pg['id']}").status_code == 204
    assert client.get(f"/api/v1/ip_addr_groups/{gid}").status_code == 404
    assert [it.id for it in store.list("_group_members")] == []
    assert_integrity(store)


def test_ip_addr_groups_hold_prefixes(client: Any, store: Store) -> None:
    body = {"addresses": ["10.0.0.0/24", "10.0.1.5", "10.0.2.7/32", "0.0.0.0/0"]}
    group = _post(client, "ip_addr_groups", body)
    assert group["addresses"] == ["10.0.0.0/24", "10.0.1.5", "10.0.2.7", "0.0.0.0/0"]
    before = snapshot(store)
    _refused(client, "POST", "ip_addr_groups", {"addresses": ["10.0.0.1/24"]}, 400, "addresses.0")
    _refused(client, "POST", "ip_addr_groups", {"addresses": ["10.0.0.0/33"]}, 400, "addresses.0")
    _refused(client, "POST", "ip_addr_groups", {"addresses": ["1.2.3", "x"]}, 400, "addresses.0")
    twice = {"addresses": ["10.0.0.5", "10.0.0.5/32"]}
    _refused(client, "POST", "ip_addr_groups", twice, 400, "addresses")
    path = f"ip_addr_groups/{group['id']}"
    _refused(client, "PATCH", path, {"addresses": ["10.0.0.0", "10.9.0.0/8"]}, 400, "addresses.1")
    assert snapshot(store) == before


def test_a_cascading_delete_takes_the_members_out(client: Any, store: Store) -> None:
    tenant, net1, net2 = _two_bridges(client)
    pg = _post(client, "port_groups", {"tenant_id": tenant})
    body = {"type": "bridge", "port_group_ids": [pg["id"]]}
    _post(client, "ports", {**body, "device_id": net1, "fixed_ips": ["10.0.1.5"]})
    _post(client, "ports", {**body, "device_id": net2, "fixed_ips": ["10.0.2.5"]})
    assert client.delete(f"/api/v1/bridges/{net1}", params={"cascade": "true"}).status_code == 204
    assert _addresses(client, pg["ip_addr_group_id"]) == ["10.0.2.5"]
    assert_integrity(store)


def test_remote_group_of_another_tenant_is_refused(client: Any, store: Store) -> None:
    mine = _post(client, "tenants", {"name": "rg-a"})["id"]
    theirs = _post(client, "tenants", {"name": "rg-b"})["id"]
    chain = _post(client, "chains", {"tenant_id": mine})["id"]
    pg = _post(client, "port_groups", {"tenant_id": theirs})["id"]
    body = {"chain_id": chain, "action": "accept", "remote_group_src_id": pg}
    _refused(client, "POST", "rules", body, 400, "remote_group_src_id")
    ok(client.patch(f"/api/v1/port_groups/{pg}", json={"shared": True}))
    _post(client, "rules", body)
    assert_integrity(store)
