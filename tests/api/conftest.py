"""Fixtures of the API tests: a memory store, the service over it, an HTTP client, a builder of
a whole tenant topology over HTTP, and an independent checker of the store's integrity."""

from __future__ import annotations

import graphlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netloom.api.app import create_app
from netloom.api.service import ObjectService
from netloom.api.tx import INTERNAL_KINDS
from netloom.model import integrity
from netloom.model.kinds import KINDS
from netloom.store import open_store
from netloom.store.base import Store
from netloom.store.memory import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

Snapshot = tuple[int, dict[str, list[tuple[str, int, Any]]]]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every service/HTTP test runs on the reference backend and on SQLite: the service uses
    only the Store protocol, so both must give the same answers."""
    backend: Store = (
        MemoryStore()
        if request.param == "memory"
        else open_store(f"sqlite:{tmp_path / 'nsdb.sqlite'}")
    )
    yield backend
    backend.close()


@pytest.fixture
def service(store: Store) -> ObjectService:
    return ObjectService(store)


@pytest.fixture
def client(service: ObjectService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as c:
        yield c


def snapshot(store: Store) -> Snapshot:
    """Everything the store holds (records and internal index documents) and its revision."""
    kinds = [*KINDS, *INTERNAL_KINDS]
    return store.revision(), {
        k: sorted((it.id, it.version, it.data) for it in store.list(k)) for k in kinds
    }


def assert_integrity(store: Store) -> None:
    """Recompute, from the records alone, every invariant the service maintains and compare
    it with the store: no dangling reference, reverse-reference and unique-index documents
    exactly right, symmetric links, port types matching devices, no jump cycle."""
    records = {(k, it.id): it.data for k in KINDS for it in store.list(k)}
    want_refs: dict[str, dict[str, set[str]]] = {}
    want_unique: dict[str, str] = {}
    for (k, id), data in records.items():
        for tk, tid, field in integrity.references(k, data):
            assert (tk, tid) in records, f"dangling reference {k}/{id}.{field} -> {tk}/{tid}"
            want_refs.setdefault(f"{tk}:{tid}", {}).setdefault(f"{k}:{id}", set()).add(field)
        for key in integrity.unique_keys(k, data):
            assert key not in want_unique, f"{key} claimed twice"
            want_unique[key] = f"{k}:{id}"
    have_refs = {
        it.id: {r: set(f) for r, f in it.data["referrers"].items()} for it in store.list("_refs")
    }
    assert have_refs == want_refs
    assert {it.id: it.data["owner"] for it in store.list("_unique")} == want_unique
    edges: dict[str, set[str]] = {}
    for (k, id), data in records.items():
        if k == "port":
            assert (data["type"], data["device_id"]) in records
            if data["peer_id"]:
                assert records[("port", data["peer_id"])]["peer_id"] == id
        if k == "rule" and data["jump_chain_id"]:
            edges.setdefault(data["chain_id"], set()).add(data["jump_chain_id"])
    tuple(graphlib.TopologicalSorter(edges).static_order())  # raises CycleError on a loop


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def mac(n: int) -> str:
    return f"02:00:00:00:{n >> 8:02x}:{n & 0xFF:02x}"


def build_topology(client: TestClient, spares: bool = False) -> dict[str, str]:
    """A tenant's network over HTTP: a router between two bridges (DHCP on both), each bridge
    linked to a router port, a VM port on each bridge bound to a host, two chains (one jumping
    to the other), a port group, an IP address group, routes and a tunnel zone. Six ports.

    ``spares`` adds unlinked, unbound ports (and a second router) for the bad-input cases."""

    def post(coll: str, body: dict[str, Any]) -> dict[str, Any]:
        return ok(client.post(f"/api/v1/{coll}", json=body), 201)

    t: dict[str, str] = {}
    t["tenant"] = post("tenants", {"name": "acme"})["id"]
    t["host"] = post("hosts", {"name": "host-1"})["id"]
    post("tunnel_zones", {"name": "tz", "members": [{"host_id": t["host"], "ip": "192.0.2.1"}]})
    t["router"] = post("routers", {"tenant_id": t["tenant"], "name": "r1"})["id"]
    for i in (1, 2):
        t[f"bridge{i}"] = post("bridges", {"tenant_id": t["tenant"], "name": f"net{i}"})["id"]
        t[f"subnet{i}"] = post(
            "dhcp_subnets",
            {
                "bridge_id": t[f"bridge{i}"],
                "cidr": f"10.0.{i}.0/24",
                "gateway": f"10.0.{i}.1",
                "dns_servers": ["192.0.2.53"],
                "mtu": 1450,
                "hosts": [{"mac": mac(0x100 + i), "ip": f"10.0.{i}.10", "name": f"vm{i}"}],
            },
        )["id"]
        t[f"rport{i}"] = post(
            "ports",
            {
                "device_id": t["router"],
                "type": "router",
                "mac": mac(i),
                "address": f"10.0.{i}.1/24",
            },
        )["id"]
        t[f"bport{i}"] = post("ports", {"device_id": t[f"bridge{i}"], "type": "bridge"})["id"]
        ok(client.post(f"/api/v1/ports/{t[f'rport{i}']}/link", json={"peer_id": t[f"bport{i}"]}))
        t[f"vm{i}"] = post(
            "ports",
            {
                "device_id": t[f"bridge{i}"],
                "type": "bridge",
                "mac": mac(0x100 + i),
                "fixed_ips": [f"10.0.{i}.10"],
            },
        )["id"]
        ok(
            client.post(
                f"/api/v1/ports/{t[f'vm{i}']}/binding",
                json={"host_id": t["host"], "interface_name": f"tap-vm{i}"},
            )
        )
        t[f"route{i}"] = post(
            "routes",
            {"router_id": t["router"], "dst": f"10.0.{i}.0/24", "next_hop_port_id": t[f"rport{i}"]},
        )["id"]
    t["blackhole"] = post(
        "routes", {"router_id": t["router"], "dst": "0.0.0.0/0", "type": "blackhole"}
    )["id"]
    t["ipgroup"] = post(
        "ip_addr_groups",
        {"tenant_id": t["tenant"], "name": "admins", "addresses": ["198.51.100.7"]},
    )["id"]
    t["pgroup"] = post("port_groups", {"tenant_id": t["tenant"], "name": "web", "stateful": True})[
        "id"
    ]
    t["chain_in"] = post("chains", {"tenant_id": t["tenant"], "name": "in"})["id"]
    t["chain_sg"] = post("chains", {"tenant_id": t["tenant"], "name": "sg"})["id"]
    t["rule_jump"] = post(
        "rules", {"chain_id": t["chain_in"], "action": "jump", "jump_chain_id": t["chain_sg"]}
    )["id"]
    t["rule_ssh"] = post(
        "rules",
        {
            "chain_id": t["chain_sg"],
            "position": 1,
            "action": "accept",
            "nw_proto": 6,
            "tp_dst": {"start": 22, "end": 22},
            "ip_addr_group_src_id": t["ipgroup"],
            "in_port_group_id": t["pgroup"],
        },
    )["id"]
    t["rule_drop"] = post("rules", {"chain_id": t["chain_sg"], "position": 2, "action": "drop"})[
        "id"
    ]
    for i in (1, 2):
        ok(
            client.patch(
                f"/api/v1/ports/{t[f'vm{i}']}",
                json={"port_group_ids": [t["pgroup"]], "inbound_filter_id": t["chain_in"]},
            )
        )
    if spares:
        t["spare1"] = post("ports", {"device_id": t["bridge1"], "type": "bridge"})["id"]
        t["spare2"] = post("ports", {"device_id": t["bridge2"], "type": "bridge"})["id"]
        t["router2"] = post("routers", {"tenant_id": t["tenant"], "name": "r2"})["id"]
        t["r2port"] = post(
            "ports",
            {
                "device_id": t["router2"],
                "type": "router",
                "mac": mac(0x200),
                "address": "192.0.2.9/24",
            },
        )["id"]
        t["r2port_b"] = post(
            "ports",
            {
                "device_id": t["router2"],
                "type": "router",
                "mac": mac(0x201),
                "address": "198.51.100.9/24",
            },
        )["id"]
    return t
