"""Create-or-update against an in-memory API: a plan applied twice writes nothing the second
time, an edit is one update of the changed fields, links and bindings are not redone, a dry run
writes nothing and ``prune`` deletes only what the plan's tenants hold and the plan dropped."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.errors import InvalidInput
from netloom.model import integrity
from netloom.model.kinds import KINDS
from netloom.plan import Applier, parse_documents
from netloom.plan.reconcile import differences, identity

from .fake import FakeClient

pytestmark = pytest.mark.unit

PLAN: list[dict[str, Any]] = [
    {"kind": "tenant", "name": "t"},
    {"kind": "host", "name": "h"},
    {"kind": "router", "name": "r", "tenant_id": "@t"},
    {"kind": "bridge", "name": "b", "tenant_id": "@t"},
    {
        "kind": "port",
        "name": "rp",
        "device_id": "@r",
        "mac": "02:00:00:00:00:01",
        "address": "10.0.0.1/24",
        "peer_id": "@bp",
    },
    {"kind": "port", "name": "bp", "device_id": "@b"},
    {"kind": "port", "name": "vm", "device_id": "@b", "host_id": "@h", "interface_name": "tap0"},
    {"kind": "dhcp_subnet", "ref": "d", "bridge_id": "@b", "cidr": "10.0.0.0/24"},
    {"kind": "chain", "name": "c", "tenant_id": "@t"},
    {"kind": "rule", "ref": "r0", "chain_id": "@c", "action": "accept", "nw_proto": "icmp"},
    {"kind": "rule", "ref": "r1", "chain_id": "@c", "action": "drop", "tp_dst": 22},
]


def apply(api: FakeClient, plan: list[dict[str, Any]], **kw: Any) -> Applier:
    applier = Applier(api, parse_documents(plan), **kw)
    applier.run()
    return applier


def test_applied_twice_the_second_run_writes_nothing() -> None:
    api = FakeClient()
    first = apply(api, PLAN)
    assert {c.action for c in first.changes} == {"create", "link"}
    api.calls.clear()
    second = apply(api, PLAN)
    assert api.calls == []  # no create, update, link or bind
    assert {c.action for c in second.changes} == {"unchanged"}
    assert second.ids == first.ids and second.created == []


def test_an_edit_is_one_update_of_the_changed_field() -> None:
    api = FakeClient()
    apply(api, PLAN)
    api.calls.clear()
    edited = [{**d, "tp_dst": "2000-2010"} if d.get("ref") == "r1" else d for d in PLAN]
    applier = apply(api, edited)
    assert api.calls == [("update", "rules", applier.ids["r1"])]
    (change,) = [c for c in applier.changes if c.action != "unchanged"]
    assert change.changes == {"tp_dst": {"start": 2000, "end": 2010}}
    # a field left out goes back to its default
    dropped = [{k: v for k, v in d.items() if k != "nw_proto"} for d in edited]
    applier = apply(api, dropped)
    (change,) = [c for c in applier.changes if c.action != "unchanged"]
    assert change.changes == {"nw_proto": None} and change.id == applier.ids["r0"]


def test_links_and_bindings_follow_the_plan() -> None:
    api = FakeClient()
    first = apply(api, PLAN)
    api.calls.clear()
    moved = [{**d, "interface_name": "tap9"} if d.get("name") == "vm" else d for d in PLAN]
    applier = apply(api, moved)
    assert api.calls == [("bind", first.ids["vm"], first.ids["h"])]
    assert [c.action for c in applier.changes if c.action != "unchanged"] == ["bind"]


def test_dry_run_writes_nothing_and_validates_bodies() -> None:
    api = FakeClient()
    applier = apply(api, PLAN, dry_run=True)
    assert api.count() == 0 and all(c[0] not in ("create", "link") for c in api.calls)
    assert [c.action for c in applier.changes].count("create") == len(PLAN)
    assert all(c.id is None for c in applier.changes)
    bad = [*PLAN, {"kind": "dhcp_subnet", "bridge_id": "@b", "cidr": "10.0.1.1/24"}]
    with pytest.raises(InvalidInput) as err:
        apply(api, bad, dry_run=True)
    assert "host bits" in err.value.message and "dry run: nothing written" in err.value.message


def test_prune_deletes_what_the_plan_dropped_in_its_tenants_only() -> None:
    api = FakeClient()
    first = apply(api, PLAN)
    other = apply(
        api, [{"kind": "tenant", "name": "u"}, {"kind": "chain", "name": "x", "tenant_id": "@u"}]
    )
    api.calls.clear()
    kept = [d for d in PLAN if d.get("ref") != "r1" and d.get("name") != "vm"]
    dry = apply(api, kept, prune=True, dry_run=True)
    assert api.count() == len(PLAN) + 2
    planned = [(c.action, c.id) for c in dry.changes if c.action != "unchanged"]
    assert sorted(planned) == sorted([("delete", first.ids["r1"]), ("delete", first.ids["vm"])])
    apply(api, kept, prune=True)
    deleted = [c[2] for c in api.calls if c[0] == "delete"]
    assert deleted == [first.ids["r1"], first.ids["vm"]]  # rules before ports
    assert other.ids["x"] in api.objects["chains"]


def test_identity_of_nameless_objects() -> None:
    rule, route = KINDS["rule"], KINDS["route"]
    assert identity(rule, {"chain_id": "c"}, 3) == ("position", "3")
    assert identity(rule, {"chain_id": "c", "position": 7}, 3) == ("position", "7")
    assert identity(rule, {"name": "n", "position": 7}) == ("name", "n")
    assert identity(route, {"dst": "0.0.0.0/0", "next_hop_port_id": "p"}) == identity(
        route, {"dst": "0.0.0.0/0", "src": "0.0.0.0/0", "next_hop_port_id": "p", "type": "normal"}
    )
    assert identity(KINDS["bridge"], {"tenant_id": "t"}) is None


def test_differences_compare_normalised_values_and_keep_what_the_api_chose() -> None:
    port = KINDS["port"]
    held = integrity.validate(
        "port",
        {
            "id": "00000000-0000-4000-8000-000000000001",
            "device_id": "00000000-0000-4000-8000-000000000002",
            "type": "bridge",
            "mac": "02:00:00:00:00:0a",
            "fixed_ips": ["10.0.0.5"],
            "tunnel_key": 7,
        },
    ) | {"version": 3}
    same = {"device_id": held["device_id"], "type": "bridge", "fixed_ips": ["10.0.0.5"]}
    assert differences(port, same, held) == {}  # the generated MAC stays
    assert differences(port, {**same, "mac": "02-00-00-00-00-0A"}, held) == {}
    assert differences(port, {**same, "fixed_ips": ["auto"]}, held) == {}
    assert differences(port, {**same, "name": "p"}, held) == {"name": "p"}
