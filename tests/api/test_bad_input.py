"""Table-driven bad input: each case must get its 4xx, the JSON error shape with the right code
and field, and leave the store exactly as it was (revision and every document)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from netloom.store.memory import MemoryStore

from .conftest import assert_integrity, build_topology, mac, snapshot

pytestmark = pytest.mark.unit

Topo = dict[str, str]


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    json: Any = None
    content: bytes | Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Topo], Req]
    status: int
    code: str
    field: str | None


def post(coll: str, body: Any) -> Req:
    return Req("POST", f"/api/v1/{coll}", json=body)


def vm_port(t: Topo, **extra: Any) -> dict[str, Any]:
    return {"device_id": t["bridge1"], "type": "bridge", **extra}


def chunks(total: int) -> Iterator[bytes]:
    """A body sent chunked, without Content-Length: the limit must hold on the bytes read."""
    yield b'{"name": "'
    for _ in range(total // 65536):
        yield b"x" * 65536
    yield b'"}'


MB = 1 << 20

CASES = [
    Case(
        "malformed CIDR",
        lambda t: post("dhcp_subnets", {"bridge_id": t["bridge1"], "cidr": "10.0.9.1/24"}),
        400,
        "invalid_input",
        "cidr",
    ),
    Case(
        "malformed MAC",
        lambda t: post("ports", vm_port(t, mac="02:zz:00:00:00:01")),
        400,
        "invalid_input",
        "mac",
    ),
    Case(
        "multicast MAC",
        lambda t: post("ports", vm_port(t, mac="01:00:5e:00:00:01")),
        400,
        "invalid_input",
        "mac",
    ),
    Case(
        "malformed nested address",
        lambda t: post("tunnel_zones", {"members": [{"host_id": t["host"], "ip": "192.0.2.300"}]}),
        400,
        "invalid_input",
        "members.0.ip",
    ),
    Case(
        "unknown field",
        lambda t: post("tenants", {"name": "x", "colour": "red"}),
        400,
        "invalid_input",
        "colour",
    ),
    Case(
        "wrong type",
        lambda t: post("bridges", {"name": "x", "admin_state_up": "maybe"}),
        400,
        "invalid_input",
        "admin_state_up",
    ),
    Case(
        "wrong type (number for string)",
        lambda t: post("tenants", {"name": 42}),
        400,
        "invalid_input",
        "name",
    ),
    Case(
        "missing required field",
        lambda t: post("routes", {"dst": "10.9.0.0/16"}),
        400,
        "invalid_input",
        "router_id",
    ),
    Case(
        "gateway outside its subnet",
        lambda t: post(
            "dhcp_subnets",
            {"bridge_id": t["bridge1"], "cidr": "10.0.9.0/24", "gateway": "10.0.8.1"},
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "dangling reference",
        lambda t: post("bridges", {"tenant_id": str(uuid.uuid4())}),
        400,
        "invalid_input",
        "tenant_id",
    ),
    Case(
        "dangling reference in a list",
        lambda t: post(
            "rules",
            {"chain_id": t["chain_sg"], "action": "drop", "in_port_ids": [str(uuid.uuid4())]},
        ),
        400,
        "invalid_input",
        "in_port_ids",
    ),
    Case(
        "router port on a bridge",
        lambda t: post(
            "ports",
            {
                "device_id": t["bridge1"],
                "type": "router",
                "mac": mac(0x300),
                "address": "10.0.1.2/24",
            },
        ),
        400,
        "invalid_input",
        "device_id",
    ),
    Case(
        "duplicate MAC",
        lambda t: post("ports", vm_port(t, mac=mac(0x101))),
        409,
        "already_exists",
        "mac",
    ),
    Case(
        "duplicate MAC through update",
        lambda t: Req("PATCH", f"/api/v1/ports/{t['vm2']}", json={"mac": mac(0x101)}),
        409,
        "already_exists",
        "mac",
    ),
    Case(
        "duplicate id", lambda t: post("tenants", {"id": t["tenant"]}), 409, "already_exists", "id"
    ),
    Case(
        "deleting a referenced object",
        lambda t: Req("DELETE", f"/api/v1/tenants/{t['tenant']}"),
        409,
        "in_use",
        None,
    ),
    Case(
        "deleting a bridge with ports, no cascade",
        lambda t: Req("DELETE", f"/api/v1/bridges/{t['bridge1']}"),
        409,
        "in_use",
        None,
    ),
    Case(
        "cascade blocked by an outside reference",
        lambda t: Req("DELETE", f"/api/v1/port_groups/{t['pgroup']}", params={"cascade": "true"}),
        409,
        "in_use",
        None,
    ),
    Case(
        "deleting a linked port",
        lambda t: Req("DELETE", f"/api/v1/ports/{t['bport1']}"),
        409,
        "in_use",
        None,
    ),
    Case(
        "oversized body",
        lambda t: Req(
            "POST",
            "/api/v1/tenants",
            content=json.dumps({"name": "x" * MB}).encode(),
            headers={"Content-Type": "application/json"},
        ),
        413,
        "payload_too_large",
        None,
    ),
    Case(
        "oversized chunked body",
        lambda t: Req(
            "POST",
            "/api/v1/tenants",
            content=chunks(2 * MB),
            headers={"Content-Type": "application/json"},
        ),
        413,
        "payload_too_large",
        None,
    ),
    Case(
        "malformed JSON",
        lambda t: Req(
            "POST",
            "/api/v1/tenants",
            content=b'{"name": "x",',
            headers={"Content-Type": "application/json"},
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "NaN is not JSON",
        lambda t: Req(
            "POST",
            "/api/v1/ports",
            content=b'{"vlan_id": NaN}',
            headers={"Content-Type": "application/json"},
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "duplicate member",
        lambda t: Req(
            "POST",
            "/api/v1/tenants",
            content=b'{"name": "a", "name": "b"}',
            headers={"Content-Type": "application/json"},
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "body is not an object",
        lambda t: post("tenants", [{"name": "x"}]),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "empty body",
        lambda t: Req(
            "POST", "/api/v1/tenants", content=b"", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "not JSON media type",
        lambda t: Req(
            "POST",
            "/api/v1/tenants",
            content=b"name=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    Case(
        "read-only tunnel_key on create",
        lambda t: post("ports", vm_port(t, tunnel_key=7)),
        400,
        "invalid_input",
        "tunnel_key",
    ),
    Case(
        "read-only tunnel_key on update",
        lambda t: Req("PATCH", f"/api/v1/ports/{t['vm1']}", json={"tunnel_key": 99}),
        400,
        "invalid_input",
        "tunnel_key",
    ),
    Case(
        "read-only host alive",
        lambda t: post("hosts", {"name": "h", "alive": True}),
        400,
        "invalid_input",
        "alive",
    ),
    Case(
        "immutable device_id",
        lambda t: Req("PATCH", f"/api/v1/ports/{t['vm1']}", json={"device_id": t["bridge2"]}),
        400,
        "invalid_input",
        "device_id",
    ),
    Case(
        "changing the id",
        lambda t: Req("PATCH", f"/api/v1/tenants/{t['tenant']}", json={"id": str(uuid.uuid4())}),
        400,
        "invalid_input",
        "id",
    ),
    Case(
        "bad link bridge<->bridge",
        lambda t: Req("POST", f"/api/v1/ports/{t['spare1']}/link", json={"peer_id": t["spare2"]}),
        400,
        "invalid_input",
        "peer_id",
    ),
    Case(
        "link to an already linked port",
        lambda t: Req("POST", f"/api/v1/ports/{t['r2port']}/link", json={"peer_id": t["bport2"]}),
        409,
        "conflict",
        "peer_id",
    ),
    Case(
        "link two ports of one device",
        lambda t: Req("POST", f"/api/v1/ports/{t['r2port']}/link", json={"peer_id": t["r2port_b"]}),
        400,
        "invalid_input",
        "peer_id",
    ),
    Case(
        "link to a bound port",
        lambda t: Req("POST", f"/api/v1/ports/{t['r2port']}/link", json={"peer_id": t["vm1"]}),
        400,
        "invalid_input",
        "peer_id",
    ),
    Case(
        "bind a linked port",
        lambda t: Req(
            "POST",
            f"/api/v1/ports/{t['bport1']}/binding",
            json={"host_id": t["host"], "interface_name": "tap-x"},
        ),
        400,
        "invalid_input",
        None,
    ),
    Case(
        "bind to an unknown host",
        lambda t: Req(
            "POST",
            f"/api/v1/ports/{t['spare1']}/binding",
            json={"host_id": str(uuid.uuid4()), "interface_name": "tap-x"},
        ),
        400,
        "invalid_input",
        "host_id",
    ),
    Case(
        "duplicate binding",
        lambda t: Req(
            "POST",
            f"/api/v1/ports/{t['spare1']}/binding",
            json={"host_id": t["host"], "interface_name": "tap-vm1"},
        ),
        409,
        "already_exists",
        "interface_name",
    ),
    Case(
        "binding body with an unknown field",
        lambda t: Req(
            "POST",
            f"/api/v1/ports/{t['spare1']}/binding",
            json={"host_id": t["host"], "interface_name": "tap-x", "vlan": 3},
        ),
        400,
        "invalid_input",
        "vlan",
    ),
    Case(
        "jump cycle",
        lambda t: post(
            "rules", {"chain_id": t["chain_sg"], "action": "jump", "jump_chain_id": t["chain_in"]}
        ),
        400,
        "invalid_input",
        "jump_chain_id",
    ),
    Case(
        "route next hop on another router",
        lambda t: post(
            "routes",
            {"router_id": t["router"], "dst": "10.9.0.0/16", "next_hop_port_id": t["r2port"]},
        ),
        400,
        "invalid_input",
        "next_hop_port_id",
    ),
    Case(
        "If-Match mismatch",
        lambda t: Req(
            "PATCH",
            f"/api/v1/tenants/{t['tenant']}",
            json={"name": "y"},
            headers={"If-Match": '"99"'},
        ),
        412,
        "precondition_failed",
        "If-Match",
    ),
    Case(
        "If-Match that is no version of ours",
        lambda t: Req(
            "DELETE",
            f"/api/v1/chains/{t['chain_sg']}",
            params={"cascade": "true"},
            headers={"If-Match": '"abc"'},
        ),
        412,
        "precondition_failed",
        "If-Match",
    ),
    Case(
        "body version mismatch",
        lambda t: Req("PATCH", f"/api/v1/tenants/{t['tenant']}", json={"name": "y", "version": 5}),
        409,
        "version_conflict",
        "version",
    ),
    Case(
        "body version of the wrong type",
        lambda t: Req(
            "PATCH", f"/api/v1/tenants/{t['tenant']}", json={"name": "y", "version": "1"}
        ),
        400,
        "invalid_input",
        "version",
    ),
    Case(
        "unknown filter",
        lambda t: Req("GET", "/api/v1/ports", params={"colour": "red"}),
        400,
        "invalid_input",
        "colour",
    ),
    Case(
        "malformed filter value",
        lambda t: Req("GET", "/api/v1/ports", params={"tunnel_key": "many"}),
        400,
        "invalid_input",
        "tunnel_key",
    ),
    Case(
        "null membership filter",
        lambda t: Req("GET", "/api/v1/ports", params={"port_group_ids": "null"}),
        400,
        "invalid_input",
        "port_group_ids",
    ),
    Case(
        "malformed membership filter",
        lambda t: Req("GET", "/api/v1/ports", params={"port_group_ids": "not-a-uuid"}),
        400,
        "invalid_input",
        "port_group_ids",
    ),
    Case(
        "bad cascade flag",
        lambda t: Req("DELETE", f"/api/v1/bridges/{t['bridge1']}", params={"cascade": "perhaps"}),
        400,
        "invalid_input",
        "cascade",
    ),
    Case(
        "no such object",
        lambda t: Req("GET", f"/api/v1/routers/{uuid.uuid4()}"),
        404,
        "not_found",
        "id",
    ),
    Case(
        "update of a missing object",
        lambda t: Req("PATCH", f"/api/v1/routers/{uuid.uuid4()}", json={"name": "x"}),
        404,
        "not_found",
        "id",
    ),
    Case(
        "an id that is no UUID",
        lambda t: Req("DELETE", "/api/v1/tenants/..%2F_refs", params={"cascade": "true"}),
        404,
        "not_found",
        None,
    ),
    Case(
        "a non-canonical id",
        lambda t: Req("PATCH", f"/api/v1/tenants/{t['tenant'].upper()}", json={"name": "x"}),
        404,
        "not_found",
        "id",
    ),
    Case("no such collection", lambda t: Req("GET", "/api/v1/widgets"), 404, "not_found", None),
    Case(
        "method not allowed",
        lambda t: Req("PUT", "/api/v1/ports", json={}),
        405,
        "method_not_allowed",
        None,
    ),
]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Any, MemoryStore, Topo]]:
    """One topology shared by every case: each case must leave it untouched anyway (and the
    check of the snapshot after every case proves it did)."""
    import warnings

    from netloom.api.app import create_app
    from netloom.api.service import ObjectService

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    store = MemoryStore()
    with TestClient(create_app(ObjectService(store))) as client:
        yield client, store, build_topology(client, spares=True)


def test_there_are_many_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    world: tuple[Any, MemoryStore, Topo], case: Case
) -> None:
    client, store, topo = world
    req = case.make(topo)
    before = snapshot(store)
    response = client.request(
        req.method,
        req.url,
        json=req.json,
        content=req.content,
        headers=req.headers,
        params=req.params,
    )
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "field"}
    assert body["code"] == case.code, body
    assert body["field"] == case.field, body
    assert isinstance(body["message"], str) and len(body["message"]) > 5
    assert snapshot(store) == before
    assert_integrity(store)
