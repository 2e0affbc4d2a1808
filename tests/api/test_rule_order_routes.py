"""Rule order (appended by default, inserted with the later rules moved down, listed in
evaluation order) and the routes a router port makes (connected + local, system-owned), through
HTTP on the memory and SQLite backends; the simulation then routes without hand-made routes."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netloom.api.service import ObjectService
from netloom.model.addressing import place, system_route_ids
from netloom.model.kinds import KINDS
from netloom.model.records import Record
from netloom.sim import MemoryTopology, SimState, Verdict, trace_probe
from netloom.store.base import Store

from .conftest import assert_integrity, mac, ok, snapshot
from .interleave import ScheduledStore, check_conflicts, race, same_calls, winners

pytestmark = pytest.mark.unit

RULES = "/api/v1/rules"


def _chain(client: Any) -> str:
    return str(ok(client.post("/api/v1/chains", json={"name": "c"}), 201)["id"])


def _rule(client: Any, chain: str, **extra: Any) -> dict[str, Any]:
    return ok(client.post(RULES, json={"chain_id": chain, **extra}), 201)


def _listed(client: Any, chain: str) -> list[tuple[str, int]]:
    items = ok(client.get(RULES, params={"chain_id": chain}))["items"]
    return [(r["name"], r["position"]) for r in items]


def test_rules_are_appended_by_default_and_listed_in_evaluation_order(client: Any) -> None:
    chain = _chain(client)
    icmp = _rule(client, chain, name="icmp", action="accept", nw_proto=1)
    drop = _rule(client, chain, name="drop-all", action="drop")
    assert (icmp["position"], drop["position"]) == (0, 1)
    _rule(client, chain, name="late", action="accept")
    assert _listed(client, chain) == [("icmp", 0), ("drop-all", 1), ("late", 2)]


def test_catch_all_drop_created_after_an_accept_runs_after_it(
    client: Any, service: ObjectService, store: Store
) -> None:
    """The sequence that dropped ICMP when every rule defaulted to position 0."""
    t = _two_subnets(client, routes=False)
    chain = _chain(client)
    ok(client.patch(f"/api/v1/ports/{t['vm2']}", json={"outbound_filter_id": chain}))
    _rule(client, chain, action="accept", nw_proto=1)
    _rule(client, chain, action="drop")
    icmp = trace_probe(_view(store), SimState(), t["vm1"], "10.0.2.10", "icmp")
    tcp = trace_probe(_view(store), SimState(), t["vm1"], "10.0.2.10", "tcp")
    assert icmp.verdict == Verdict.FORWARD, icmp.trace.decisions()
    assert tcp.verdict == Verdict.DROP, tcp.trace.decisions()


def test_insert_at_a_taken_position_moves_the_run_down(client: Any, store: Store) -> None:
    chain = _chain(client)
    for name, pos in (("a", 0), ("b", 10), ("c", 11), ("d", 20)):
        _rule(client, chain, name=name, action="accept", position=pos)
    _rule(client, chain, name="new", action="drop", position=10)
    assert _listed(client, chain) == [
        ("a", 0),
        ("new", 10),
        ("b", 11),
        ("c", 12),
        ("d", 20),
    ]
    _rule(client, chain, name="first", action="drop", position=0)
    assert [n for n, _ in _listed(client, chain)] == ["first", "a", "new", "b", "c", "d"]
    assert_integrity(store)


def test_explicit_positions_keep_their_relative_order(client: Any) -> None:
    chain = _chain(client)
    for name, pos in (("z", 20), ("x", 0), ("y", 10)):
        _rule(client, chain, name=name, action="accept", position=pos)
    assert _listed(client, chain) == [("x", 0), ("y", 10), ("z", 20)]
    _rule(client, chain, name="end", action="drop")
    assert _listed(client, chain)[-1] == ("end", 21)


def test_moving_a_rule_renumbers_in_one_write_and_put_keeps_the_position(client: Any) -> None:
    chain = _chain(client)
    ids = [_rule(client, chain, name=n, action="accept")["id"] for n in "abc"]
    ok(client.patch(f"{RULES}/{ids[2]}", json={"position": 0}))
    assert _listed(client, chain) == [("c", 0), ("a", 1), ("b", 2)]
    ok(client.put(f"{RULES}/{ids[0]}", json={"chain_id": chain, "name": "a", "action": "drop"}))
    assert _listed(client, chain) == [("c", 0), ("a", 1), ("b", 2)]


def test_place_is_pure_and_deterministic() -> None:
    assert place({}, None) == (0, {})
    assert place({"a": 0, "b": 10}, None) == (11, {})
    assert place({"a": 0, "b": 1, "c": 5}, 0) == (0, {"a": 1, "b": 2})
    # two rules left at one position by an older store: both move, in id order
    assert place({"b": 3, "a": 3}, 3) == (3, {"a": 4, "b": 5})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=25))
def test_placing_keeps_positions_unique_and_order_stable(wants: list[int | None]) -> None:
    """Any sequence of appends and inserts: positions stay unique, the rules already there
    keep their relative order, and each new rule lands where it was asked."""
    chain: dict[str, int] = {}
    for n, want in enumerate(wants):
        before = sorted(chain, key=lambda r: chain[r])
        position, moves = place(chain, want)
        chain.update(moves)
        rid = f"r{n:03d}"
        chain[rid] = position
        assert len(set(chain.values())) == len(chain)
        assert sorted(before, key=lambda r: chain[r]) == before
        if want is not None:
            assert position == want
        else:
            assert position == max(chain.values())


def test_concurrent_appends_get_distinct_positions(store: Store) -> None:
    sched = ScheduledStore(store)
    svc = ObjectService(sched)
    for schedule in same_calls(6):
        chain, _ = svc.create("chain", {})
        lost = sched.lost
        calls = [partial(svc.create, "rule", {"chain_id": chain["id"], "action": "accept"})] * 6
        results = race(sched, schedule, *calls)
        assert winners(results) == list(range(6)), (str(schedule), results)
        check_conflicts(sched, lost, schedule, exact=False)
        positions = sorted(r["position"] for r, _ in svc.list("rule", {"chain_id": chain["id"]}))
        assert positions == [0, 1, 2, 3, 4, 5]
    assert_integrity(store)


# -- a router port's routes ----------------------------------------------------------------------


def _routes(client: Any, router: str) -> list[tuple[str, str, bool]]:
    items = ok(client.get("/api/v1/routes", params={"router_id": router}))["items"]
    return sorted((r["dst"], r["type"], r["system"]) for r in items)


def test_a_router_port_makes_its_connected_and_local_routes(client: Any, store: Store) -> None:
    router = ok(client.post("/api/v1/routers", json={}), 201)["id"]
    port = ok(
        client.post(
            "/api/v1/ports",
            json={"device_id": router, "type": "router", "address": "10.0.1.1/24"},
        ),
        201,
    )
    assert _routes(client, router) == [
        ("10.0.1.0/24", "normal", True),
        ("10.0.1.1/32", "local", True),
    ]
    connected, _ = system_route_ids(port["id"])
    assert ok(client.get(f"/api/v1/routes/{connected}"))["next_hop_port_id"] == port["id"]
    # readdressing the port moves them, in the same write
    ok(client.patch(f"/api/v1/ports/{port['id']}", json={"address": "10.0.7.1/16"}))
    assert _routes(client, router) == [
        ("10.0.0.0/16", "normal", True),
        ("10.0.7.1/32", "local", True),
    ]
    assert_integrity(store)
    assert client.delete(f"/api/v1/ports/{port['id']}").status_code == 204
    assert _routes(client, router) == []
    assert_integrity(store)


def test_system_routes_refuse_manual_changes(client: Any, store: Store) -> None:
    router = ok(client.post("/api/v1/routers", json={}), 201)["id"]
    port = ok(
        client.post(
            "/api/v1/ports",
            json={"device_id": router, "type": "router", "address": "10.0.1.1/24"},
        ),
        201,
    )
    connected, local = system_route_ids(port["id"])
    before = snapshot(store)
    refused = client.delete(f"/api/v1/routes/{connected}")
    assert refused.status_code == 409, refused.text
    assert "router port" in refused.json()["message"]
    assert client.patch(f"/api/v1/routes/{local}", json={"weight": 5}).status_code == 409
    made = client.post(
        "/api/v1/routes",
        json={"router_id": router, "dst": "10.9.0.0/16", "next_hop_port_id": port["id"]}
        | {"system": True},
    )
    assert made.status_code == 400 and made.json()["field"] == "system"
    assert snapshot(store) == before
    # the router goes with everything it has
    assert client.delete(f"/api/v1/routers/{router}", params={"cascade": "true"}).status_code == 204
    assert ok(client.get("/api/v1/routes"))["items"] == []
    assert_integrity(store)


def test_a_hand_made_copy_of_a_connected_route_is_harmless(client: Any, store: Store) -> None:
    t = _two_subnets(client, routes=True)
    result = trace_probe(_view(store), SimState(), t["vm1"], "10.0.2.10", "icmp")
    assert result.verdict == Verdict.FORWARD
    assert "ecmp" not in " ".join(s.detail for s in result.trace.steps)
    # deleting the copy leaves the connected route in charge
    assert client.delete(f"/api/v1/routes/{t['route2']}").status_code == 204
    result = trace_probe(_view(store), SimState(), t["vm1"], "10.0.2.10", "icmp")
    assert result.verdict == Verdict.FORWARD
    assert_integrity(store)


def test_trace_routes_between_subnets_without_hand_made_routes(client: Any, store: Store) -> None:
    t = _two_subnets(client, routes=False)
    result = trace_probe(_view(store), SimState(), t["vm1"], "10.0.2.10", "icmp")
    assert result.verdict == Verdict.FORWARD, result.trace.decisions()
    assert "router:route" in result.trace.decisions()
    unknown = trace_probe(_view(store), SimState(), t["vm1"], "10.0.9.10", "icmp")
    assert "router:no-route" in unknown.trace.decisions()


def _view(store: Store) -> MemoryTopology:
    records: list[Record] = []
    for kind in KINDS.values():
        records += [kind.record.model_validate(it.data) for it in store.list(kind.name)]
    return MemoryTopology(records)


def _two_subnets(client: Any, routes: bool) -> dict[str, str]:
    """A router between two bridges, a bound VM port on each; ``routes``: the per-subnet
    routes operators used to add by hand, too."""

    def post(coll: str, body: dict[str, Any]) -> str:
        return str(ok(client.post(f"/api/v1/{coll}", json=body), 201)["id"])

    t = {"host": post("hosts", {"name": "h1"}), "router": post("routers", {})}
    for i in (1, 2):
        bridge = post("bridges", {"name": f"net{i}"})
        rport = post(
            "ports", {"device_id": t["router"], "type": "router", "address": f"10.0.{i}.1/24"}
        )
        up = post("ports", {"device_id": bridge, "type": "bridge"})
        ok(client.post(f"/api/v1/ports/{rport}/link", json={"peer_id": up}))
        vm = {"device_id": bridge, "type": "bridge", "mac": mac(i), "fixed_ips": [f"10.0.{i}.10"]}
        t[f"vm{i}"] = post("ports", vm)
        bind = {"host_id": t["host"], "interface_name": f"tap{i}"}
        ok(client.post(f"/api/v1/ports/{t[f'vm{i}']}/binding", json=bind))
        if routes:
            route = {"router_id": t["router"], "dst": f"10.0.{i}.0/24", "next_hop_port_id": rport}
            t[f"route{i}"] = post("routes", route)
    return t
