"""The in-memory topology view's child collections: sorted, the same object while unchanged,
a new one after any change of a member (the simulation's compile cache keys on identity)."""

from __future__ import annotations

import pytest

from netloom.model.records import Chain, Route, Router, Rule
from netloom.model.types import new_id
from netloom.sim.topology import MemoryTopology

pytestmark = pytest.mark.unit


def _route(router: str, n: int) -> Route:
    dst = f"10.{n >> 8}.{n & 255}.0/24"
    return Route(id=new_id(), router_id=router, dst=dst, type="blackhole")


def test_children_sorted_and_kept_while_unchanged() -> None:
    r = new_id()
    topo = MemoryTopology([Router(id=r, name="r")])
    routes = [_route(r, n) for n in range(500)]
    for rt in routes:
        topo.put(rt)
    got = topo.routes(r)
    assert got is not None and [x.id for x in got] == sorted(x.id for x in routes)
    assert topo.routes(r) is got  # unchanged: the same tuple
    topo.put(Router(id=new_id(), name="other"))
    assert topo.routes(r) is got  # another object changed
    moved = routes[7].model_copy(update={"dst": "10.99.0.0/16"})
    topo.put(moved)
    again = topo.routes(r)
    assert again is not got and len(again or ()) == 500
    assert moved in (again or ())
    topo.delete("route", routes[3].id)
    after = topo.routes(r)
    assert after is not again and routes[3].id not in {x.id for x in after or ()}
    assert topo.routes(r) is after


def test_rules_in_position_order_and_a_copy_unless_told() -> None:
    chain = new_id()
    topo = MemoryTopology([Chain(id=chain, name="c")])
    rules = [Rule(id=new_id(), chain_id=chain, position=p, action="accept") for p in (3, 1, 2)]
    for rule in rules:
        topo.put(rule)
    assert [x.position for x in topo.rules(chain) or ()] == [1, 2, 3]
    assert topo.get("rule", rules[0].id) is not rules[0]  # a copy by default
    mine = Rule(id=new_id(), chain_id=chain, position=0, action="drop")
    topo.put(mine, copy=False)
    assert topo.get("rule", mine.id) is mine
    assert (topo.rules(chain) or ())[0] is mine
