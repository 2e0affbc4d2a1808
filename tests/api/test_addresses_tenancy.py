"""Addresses checked and allocated (fixed IPs inside the bridge's subnets and unique on it,
generated MACs, ``"auto"`` fixed IPs), tenancy of references (``shared`` targets, immutable
``tenant_id``) and unique names, through HTTP on the memory and SQLite backends. Every refused
write leaves the store unchanged."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.store.base import Store

from .conftest import assert_integrity, mac, ok, snapshot
from .interleave import ScheduledStore, check_conflicts, race, same_calls, winners

pytestmark = pytest.mark.unit


def _post(client: Any, coll: str, body: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post(f"/api/v1/{coll}", json=body), 201)


def _refused(
    client: Any, store: Store, method: str, path: str, body: Any, status: int, field: str
) -> str:
    """Send a write that must fail with ``status`` naming ``field``; the store is unchanged."""
    before = snapshot(store)
    answer = client.request(method, f"/api/v1/{path}", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.text
    assert snapshot(store) == before
    return str(answer.json()["message"])


def _bridge(client: Any, cidr: str | None = "10.0.1.0/24", **extra: Any) -> str:
    bridge = str(_post(client, "bridges", extra)["id"])
    if cidr is not None:
        gw = cidr.replace(".0/", ".1/").split("/")[0]
        _post(client, "dhcp_subnets", {"bridge_id": bridge, "cidr": cidr, "gateway": gw})
    return bridge


# -- addresses -----------------------------------------------------------------------------------


def test_fixed_ip_outside_the_bridge_subnets_is_refused(client: Any, store: Store) -> None:
    bridge = _bridge(client)
    port = {"device_id": bridge, "type": "bridge", "fixed_ips": ["10.0.9.30"]}
    msg = _refused(client, store, "POST", "ports", port, 400, "fixed_ips")
    assert "10.0.9.30" in msg and "10.0.1.0/24" in msg
    inside = _post(client, "ports", {**port, "fixed_ips": ["10.0.1.30"]})
    _refused(client, store, "PATCH", f"ports/{inside['id']}", port, 400, "fixed_ips")


def test_duplicate_fixed_ip_on_one_bridge_is_refused(client: Any, store: Store) -> None:
    bridge, other = _bridge(client), _bridge(client)
    port = {"device_id": bridge, "type": "bridge", "fixed_ips": ["10.0.1.30"]}
    first = _post(client, "ports", port)
    msg = _refused(client, store, "POST", "ports", port, 409, "fixed_ips")
    assert first["id"] in msg
    _post(client, "ports", {**port, "device_id": other})  # another bridge: another network
    twice = {**port, "device_id": other, "fixed_ips": ["10.0.1.31", "10.0.1.31"]}
    _refused(client, store, "POST", "ports", twice, 400, "fixed_ips")
    # the address is free again once its port lets go of it
    ok(client.patch(f"/api/v1/ports/{first['id']}", json={"fixed_ips": []}))
    _post(client, "ports", port)
    assert_integrity(store)


def test_a_bridge_without_subnet_takes_any_fixed_ip(client: Any, store: Store) -> None:
    bridge = _bridge(client, cidr=None)
    _post(client, "ports", {"device_id": bridge, "type": "bridge", "fixed_ips": ["192.0.2.7"]})
    again = {"device_id": bridge, "type": "bridge", "fixed_ips": ["192.0.2.7"]}
    _refused(client, store, "POST", "ports", again, 409, "fixed_ips")  # still unique


def test_a_subnet_cannot_strand_its_ports_addresses(client: Any, store: Store) -> None:
    bridge = _bridge(client)
    _post(client, "ports", {"device_id": bridge, "type": "bridge", "fixed_ips": ["10.0.1.30"]})
    (subnet,) = ok(client.get("/api/v1/dhcp_subnets", params={"bridge_id": bridge}))["items"]
    change = {"cidr": "10.0.2.0/24", "gateway": "10.0.2.1"}
    _refused(client, store, "PATCH", f"dhcp_subnets/{subnet['id']}", change, 409, "cidr")


def test_ports_get_generated_macs(client: Any, store: Store) -> None:
    bridge = _bridge(client)
    router = _post(client, "routers", {})["id"]
    made = [
        _post(client, "ports", {"device_id": router, "type": "router", "address": "10.0.1.1/24"}),
        _post(client, "ports", {"device_id": bridge, "type": "bridge"}),
        _post(client, "ports", {"device_id": bridge, "type": "bridge"}),
    ]
    macs = [p["mac"] for p in made]
    assert len(set(macs)) == 3
    for m in macs:
        first = int(m[:2], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    # a PUT that leaves the MAC out keeps it
    body = {"device_id": bridge, "type": "bridge", "name": "vm"}
    assert ok(client.put(f"/api/v1/ports/{made[1]['id']}", json=body))["mac"] == macs[1]
    given = _post(client, "ports", {"device_id": bridge, "type": "bridge", "mac": mac(7)})
    assert given["mac"] == mac(7)
    assert_integrity(store)


def test_auto_fixed_ips_are_allocated_from_the_subnet(client: Any, store: Store) -> None:
    bridge = str(_post(client, "bridges", {})["id"])
    hosts = [{"mac": mac(1), "ip": "10.0.1.2"}]
    subnet = {"bridge_id": bridge, "cidr": "10.0.1.0/28", "gateway": "10.0.1.1", "hosts": hosts}
    _post(client, "dhcp_subnets", subnet)
    auto = {"device_id": bridge, "type": "bridge", "fixed_ips": ["auto"]}
    got = [_post(client, "ports", auto)["fixed_ips"] for _ in range(3)]
    # not the gateway, not an address the subnet reserves for a MAC
    assert got == [["10.0.1.3"], ["10.0.1.4"], ["10.0.1.5"]]
    two = _post(client, "ports", {**auto, "fixed_ips": ["auto", "10.0.1.6"]})["fixed_ips"]
    assert two == ["10.0.1.7", "10.0.1.6"]
    # PATCH allocates too
    port = _post(client, "ports", {**auto, "fixed_ips": []})
    patched = ok(client.patch(f"/api/v1/ports/{port['id']}", json={"fixed_ips": ["auto"]}))
    assert patched["fixed_ips"] == ["10.0.1.8"]
    small = str(_post(client, "bridges", {})["id"])
    _post(
        client, "dhcp_subnets", {"bridge_id": small, "cidr": "10.0.2.0/30", "gateway": "10.0.2.1"}
    )
    assert _post(client, "ports", {**auto, "device_id": small})["fixed_ips"] == ["10.0.2.2"]
    full = {**auto, "device_id": small}
    _refused(client, store, "POST", "ports", full, 409, "fixed_ips")  # the /30 is full
    nosubnet = {"device_id": _bridge(client, cidr=None), "type": "bridge", "fixed_ips": ["auto"]}
    _refused(client, store, "POST", "ports", nosubnet, 400, "fixed_ips")
    escape = {**auto, "device_id": "../../_unique"}  # never reaches a path-keyed backend
    _refused(client, store, "POST", "ports", escape, 400, "fixed_ips")
    assert_integrity(store)


# -- tenancy -------------------------------------------------------------------------------------


def _tenants(client: Any) -> tuple[str, str]:
    a = str(_post(client, "tenants", {"name": "a"})["id"])
    b = str(_post(client, "tenants", {"name": "b"})["id"])
    return a, b


def test_references_across_tenants_are_refused(client: Any, store: Store) -> None:
    a, b = _tenants(client)
    chain_a = _post(client, "chains", {"tenant_id": a, "name": "sg"})["id"]
    group_a = _post(client, "port_groups", {"tenant_id": a, "name": "web"})["id"]
    ipg_a = _post(client, "ip_addr_groups", {"tenant_id": a, "name": "admins"})["id"]
    port = {"device_id": _bridge(client, tenant_id=b), "type": "bridge"}
    chain_b = _post(client, "chains", {"tenant_id": b})["id"]
    for coll, body, field in (
        ("ports", {**port, "inbound_filter_id": chain_a}, "inbound_filter_id"),
        ("ports", {**port, "port_group_ids": [group_a]}, "port_group_ids"),
        ("bridges", {"tenant_id": b, "outbound_filter_id": chain_a}, "outbound_filter_id"),
        (
            "rules",
            {"chain_id": chain_b, "action": "accept", "ip_addr_group_src_id": ipg_a},
            "ip_addr_group_src_id",
        ),
        (
            "rules",
            {"chain_id": chain_b, "action": "jump", "jump_chain_id": chain_a},
            "jump_chain_id",
        ),
    ):
        msg = _refused(client, store, "POST", coll, body, 400, field)
        assert f"tenant {a}" in msg and f"tenant {b}" in msg
    # A's router port cannot link to a port on B's bridge, from either side
    router_a = _post(client, "routers", {"tenant_id": a})["id"]
    rport = _router_port(client, router_a, "10.0.1.1/24")
    bport = _post(client, "ports", port)["id"]
    _refused(client, store, "POST", f"ports/{rport}/link", {"peer_id": bport}, 400, "peer_id")
    _refused(client, store, "POST", f"ports/{bport}/link", {"peer_id": rport}, 400, "peer_id")
    # the same tenant, and objects of no tenant, are fine
    _post(client, "ports", {**port, "inbound_filter_id": _post(client, "chains", {})["id"]})
    other_b = _post(client, "chains", {"tenant_id": b})["id"]
    _post(client, "rules", {"chain_id": chain_b, "action": "jump", "jump_chain_id": other_b})
    assert_integrity(store)


def _router_port(client: Any, router: str, address: str) -> str:
    body = {"device_id": router, "type": "router", "address": address}
    return str(_post(client, "ports", body)["id"])


def test_shared_objects_can_be_referenced_by_other_tenants(client: Any, store: Store) -> None:
    a, b = _tenants(client)
    chain_a = _post(client, "chains", {"tenant_id": a, "shared": True})["id"]
    shared_net = _bridge(client, tenant_id=a, shared=True)
    router_b = _post(client, "routers", {"tenant_id": b})["id"]
    rport = _post(
        client, "ports", {"device_id": router_b, "type": "router", "address": "10.0.1.9/24"}
    )
    bport = _post(client, "ports", {"device_id": shared_net, "type": "bridge"})
    ok(client.post(f"/api/v1/ports/{rport['id']}/link", json={"peer_id": bport["id"]}))
    port_b = {"device_id": _bridge(client, tenant_id=b), "type": "bridge"}
    _post(client, "ports", {**port_b, "inbound_filter_id": chain_a})
    # and cannot be unshared while another tenant uses them
    _refused(client, store, "PATCH", f"chains/{chain_a}", {"shared": False}, 409, "shared")
    _refused(client, store, "PATCH", f"bridges/{shared_net}", {"shared": False}, 409, "shared")
    assert_integrity(store)


def test_tenant_id_is_immutable(client: Any, store: Store) -> None:
    a, b = _tenants(client)
    bridge = _post(client, "bridges", {"tenant_id": a, "name": "net"})
    path = f"bridges/{bridge['id']}"
    _refused(client, store, "PATCH", path, {"tenant_id": b}, 400, "tenant_id")
    _refused(client, store, "PATCH", path, {"tenant_id": None}, 400, "tenant_id")
    _refused(client, store, "PUT", path, {"tenant_id": b, "name": "net"}, 400, "tenant_id")
    kept = ok(client.put(f"/api/v1/{path}", json={"name": "net2"}))
    assert kept["tenant_id"] == a and kept["name"] == "net2"
    orphan = _post(client, "chains", {})
    _refused(client, store, "PATCH", f"chains/{orphan['id']}", {"tenant_id": a}, 400, "tenant_id")


# -- names ---------------------------------------------------------------------------------------


def test_names_are_unique_per_tenant_and_kind(client: Any, store: Store) -> None:
    a, b = _tenants(client)
    _post(client, "bridges", {"tenant_id": a, "name": "net"})
    msg = _refused(client, store, "POST", "bridges", {"tenant_id": a, "name": "net"}, 409, "name")
    assert "'net'" in msg
    _post(client, "bridges", {"tenant_id": b, "name": "net"})  # another tenant
    _post(client, "routers", {"tenant_id": a, "name": "net"})  # another kind
    _post(client, "bridges", {"name": "net"})  # no tenant
    _refused(client, store, "POST", "bridges", {"name": "net"}, 409, "name")
    _refused(client, store, "POST", "tenants", {"name": "a"}, 409, "name")
    # "" is no name: any number of them
    for _ in range(3):
        _post(client, "bridges", {"tenant_id": a, "name": ""})
        _post(client, "bridges", {"tenant_id": a})
    assert_integrity(store)


def test_renaming_frees_the_old_name(client: Any, store: Store) -> None:
    chain = _post(client, "chains", {"name": "old"})
    other = _post(client, "chains", {"name": "other"})
    _refused(client, store, "PATCH", f"chains/{other['id']}", {"name": "old"}, 409, "name")
    ok(client.patch(f"/api/v1/chains/{chain['id']}", json={"name": "new"}))
    ok(client.patch(f"/api/v1/chains/{other['id']}", json={"name": "old"}))
    assert client.delete(f"/api/v1/chains/{chain['id']}").status_code == 204
    _post(client, "chains", {"name": "new"})
    assert_integrity(store)


def test_rules_subnets_and_routes_have_names(client: Any, store: Store) -> None:
    chain = _post(client, "chains", {})["id"]
    _post(client, "rules", {"chain_id": chain, "action": "accept", "name": "allow-web"})
    dup = {"chain_id": chain, "action": "drop", "name": "allow-web"}
    _refused(client, store, "POST", "rules", dup, 409, "name")
    other = _post(client, "chains", {})["id"]
    _post(client, "rules", {**dup, "chain_id": other})  # names are per chain
    found = ok(client.get("/api/v1/rules", params={"name": "allow-web"}))["items"]
    assert len(found) == 2
    bridge = _post(client, "bridges", {})["id"]
    subnet = {"bridge_id": bridge, "cidr": "10.0.1.0/24", "name": "v4"}
    _post(client, "dhcp_subnets", subnet)
    _refused(client, store, "POST", "dhcp_subnets", {**subnet, "cidr": "10.0.2.0/24"}, 409, "name")
    router = _post(client, "routers", {})["id"]
    route = {"router_id": router, "dst": "0.0.0.0/0", "type": "blackhole", "name": "default"}
    _post(client, "routes", route)
    _refused(client, store, "POST", "routes", route, 409, "name")
    assert_integrity(store)


def test_names_with_path_characters_are_stored_safely(client: Any, store: Store) -> None:
    for name in ("a/b", "..", "net 1/24 ü", "%2F"):
        _post(client, "chains", {"name": name})
        _refused(client, store, "POST", "chains", {"name": name}, 409, "name")
    assert_integrity(store)


def test_racing_claims_of_one_name_or_address_let_one_win(store: Store) -> None:
    sched = ScheduledStore(store)
    svc = ObjectService(sched)
    for i, schedule in enumerate(same_calls(4)):
        bridge, _ = svc.create("bridge", {})
        net = f"10.0.{i + 1}"
        svc.create("dhcp_subnet", {"bridge_id": bridge["id"], "cidr": f"{net}.0/24"})
        lost = sched.lost
        named = race(sched, schedule, *[partial(svc.create, "chain", {"name": f"sg{i}"})] * 4)
        check_conflicts(sched, lost, schedule)
        port = {"device_id": bridge["id"], "type": "bridge", "fixed_ips": [f"{net}.9"]}
        lost = sched.lost
        addressed = race(sched, schedule, *[partial(svc.create, "port", port)] * 4)
        check_conflicts(sched, lost, schedule)
        auto = {**port, "fixed_ips": ["auto"]}
        lost = sched.lost
        autos = race(sched, schedule, *[partial(svc.create, "port", auto)] * 4)
        check_conflicts(sched, lost, schedule, exact=False)
        assert (winners(named), winners(addressed), winners(autos)) == ([0], [0], [0, 1, 2, 3])
        got = [r[0]["fixed_ips"][0] for r in autos]
        assert len(set(got)) == 4 and f"{net}.9" not in got, got
    assert_integrity(store)
