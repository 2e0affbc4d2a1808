"""The applier against an in-memory API: order, links once per pair, bindings, rollback."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.errors import InvalidInput, NotFound
from netloom.plan import Applier, PlanClient, parse_documents

from .fake import FakeClient

pytestmark = pytest.mark.unit

PLAN: list[dict[str, Any]] = [
    {"kind": "port", "name": "rp", "device_id": "@r", "peer_id": "@bp", "mac": "02:00:00:00:00:01"},
    {"kind": "port", "name": "bp", "device_id": "@b", "peer_id": "@rp"},
    {"kind": "port", "name": "vm", "device_id": "@b", "host_id": "@h", "interface_name": "tap0"},
    {"kind": "dhcp-subnet", "ref": "d", "bridge_id": "@b", "cidr": "10.0.0.0/24"},
    {"kind": "router", "name": "r", "tenant_id": "@t"},
    {"kind": "bridge", "name": "b", "tenant_id": "@t"},
    {"kind": "host", "name": "h"},
    {"kind": "tenant", "name": "t"},
]


def test_fake_is_a_plan_client() -> None:
    client: PlanClient = FakeClient()  # mypy checks the protocol
    assert client.list("hosts") == []


def test_applies_in_order_then_links_once_and_binds() -> None:
    api = FakeClient()
    applier = Applier(api, parse_documents(PLAN))
    seen: list[str] = []
    created = applier.run(seen.append)
    creates = [c[1] for c in api.calls if c[0] == "create"]
    assert creates.index("tenants") < creates.index("routers") < creates.index("ports")
    assert creates.index("bridges") < creates.index("dhcp_subnets")
    assert [c[0] for c in api.calls].count("link") == 1
    assert [c[0] for c in api.calls].count("bind") == 0  # "vm" (no peer) is created bound
    assert len(seen) == applier.steps() == 8 + 1
    ports = api.objects["ports"]
    rp, bp, vm = (ports[applier.ids[n]] for n in ("rp", "bp", "vm"))
    assert rp["peer_id"] == bp["id"] and bp["peer_id"] == rp["id"]
    assert rp["type"] == "router" and bp["type"] == "bridge"  # inferred from the device
    assert vm["host_id"] == applier.ids["h"] and vm["interface_name"] == "tap0"
    assert rp["device_id"] == applier.ids["r"]
    # the records returned are the API's final ones (after link and bind)
    final = {d.handle: doc for d, doc in created}
    assert final["rp"]["peer_id"] == bp["id"] and final["vm"]["host_id"] == applier.ids["h"]


def test_existing_objects_are_referred_to_by_name() -> None:
    api = FakeClient()
    Applier(api, parse_documents([{"kind": "tenant", "name": "t"}])).run()
    applier = Applier(api, parse_documents([{"kind": "bridge", "name": "b", "tenant_id": "t"}]))
    applier.run()
    bridge = api.objects["bridges"][applier.ids["b"]]
    assert bridge["tenant_id"] == next(iter(api.objects["tenants"]))


def test_failure_rolls_back_everything_newest_first() -> None:
    api = FakeClient(fail_on="dhcp_subnets")
    applier = Applier(api, parse_documents(PLAN))
    with pytest.raises(InvalidInput) as err:
        applier.run()
    assert err.value.message.startswith("document #4 (dhcp_subnet d): refused by the fake API")
    assert err.value.message.endswith("(nothing kept)") and err.value.field == "cidr"
    assert api.count() == 0
    deleted = [c[1] for c in api.calls if c[0] == "delete"]
    assert deleted == list(reversed([c[1] for c in api.calls if c[0] == "create"][:-1]))


def test_failure_after_a_link_unlinks_before_deleting() -> None:
    api = FakeClient(fail_bind=True)
    plan = [
        {**d, "host_id": "@h", "interface_name": "tap1"} if d.get("name") == "bp" else d
        for d in PLAN
    ]
    with pytest.raises(NotFound) as err:
        Applier(api, parse_documents(plan)).run()
    assert err.value.message.startswith("document #2 (port bp): no interface tap1")
    assert api.count() == 0
    kinds = [c[0] for c in api.calls]
    assert kinds.index("link") < kinds.index("bind") < kinds.index("unlink")
    i = kinds.index("unlink")  # a linked port is unlinked, then deleted
    assert api.calls[i + 1] == ("delete", "ports", api.calls[i][1])


def test_workers_create_each_level_concurrently_with_the_same_result() -> None:
    one, many = FakeClient(), FakeClient()
    a = Applier(one, parse_documents(PLAN))
    b = Applier(many, parse_documents(PLAN), workers=4)
    a.run()
    b.run()
    assert [d.kind.name for d, _ in sorted(a.created, key=lambda c: c[0].index)] == [
        d.kind.name for d, _ in sorted(b.created, key=lambda c: c[0].index)
    ]
    assert [[d.kind.name for d in level] for level in b.levels] == [
        ["host", "tenant"],
        ["router", "bridge"],
        ["port", "port", "port", "dhcp_subnet"],
    ]
    assert [what for what, _ in b.level_seconds][-1] == "links and bindings"
    ports = many.objects["ports"]
    assert ports[b.ids["rp"]]["peer_id"] == b.ids["bp"]


def test_a_lost_compare_and_set_race_is_retried() -> None:
    api = FakeClient(conflicts=2)
    applier = Applier(api, parse_documents([{"kind": "tenant", "name": "t"}]))
    applier.run()
    assert applier.conflicts_retried == 2 and api.count() == 1
