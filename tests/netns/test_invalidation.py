"""Topology and state changes on the real system change already-installed kernel flows within
1 s, and remove exactly the flows that depended on what changed.

One lab for the module (2 hosts, 7 VMs, real BPF agents); each test puts back what it changed.

    h1: a 10.0.1.10, b 10.0.1.11 (net1); x 10.0.1.20, y 10.0.1.21 (net1, port security off,
        no MAC/IP on their ports: the bridge learns where x's MAC is)
    h2: c 10.0.2.10 (net2, to-VM chain "c_in": accept everything), e 10.0.2.11 (net2),
        d 10.0.1.12 (net1)

"Exactly the affected flows" is checked on the kernel flow tables of both hosts (dumped from
the pins before and after): the flows removed are the expected set, every other flow is still
there (same map key), and the agent's invalidation counter moved by that many.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from netloom.flows.model import Output
from waiting import wait_until

from .conftest import (
    EchoServer,
    Ident,
    NetLab,
    VmSpec,
    can_connect,
    echoes,
    idents,
    netlab,
    ping_ok,
    tcp_connect,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

MOVING_MAC = "02:00:5e:00:53:99"  # the MAC x owns first and y takes over (not on any port)
MOVING_IP = "10.0.1.20"
INVALIDATED = "netloom_agent_flows_invalidated_total"
LIMIT_S = 1.0

# A module-wide record of the figures, printed at the end (pytest -s) for the report.
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    learn: dict[str, object] = {"mac": None, "fixed_ips": [], "port_security_enabled": False}
    vms = {
        "a": VmSpec(1, 1, 10),
        "b": VmSpec(1, 1, 11),
        "x": VmSpec(1, 1, 20, dict(learn), mac=MOVING_MAC),
        "y": VmSpec(1, 1, 21, dict(learn)),
        "c": VmSpec(2, 2, 10, {"outbound_filter_id": "c_in"}),
        "e": VmSpec(2, 2, 11),
        "d": VmSpec(2, 1, 12),
    }
    with netlab(2, vms, chains={"c_in": [{"action": "accept"}]}) as built:
        yield built
    for k, v in FIGURES.items():
        print(f"figure: {k} = {v}")


def _warm(lab: NetLab, pairs: list[tuple[str, str]]) -> None:
    for src, dst in pairs:
        assert ping_ok(lab.ns(src), lab.ip(dst), 1.0), f"{src} cannot ping {dst}"


def _dumps(lab: NetLab) -> dict[int, set[Ident]]:
    return {h: idents(lab.flows(h)) for h in (1, 2)}


def _invalidated(lab: NetLab) -> dict[int, float]:
    return {h: lab.metrics(h).get(INVALIDATED, -1.0) for h in (1, 2)}


def _check_exact(
    lab: NetLab,
    before: dict[int, set[Ident]],
    expected: dict[int, set[Ident]],
    counters: dict[int, float],
) -> None:
    """The flows gone from each host are exactly ``expected``; the rest are all still there;
    each agent counted exactly that many invalidations. Checked once every agent has applied
    the change (a topology change: its store revision; a MAC move is handled in the upcall of
    the frame that moved it, which the caller saw answered), so nothing more can go."""
    lab.wait_applied()
    after = _dumps(lab)
    now = _invalidated(lab)
    for h in (1, 2):
        assert expected[h] <= before[h]
        assert before[h] - after[h] == expected[h], f"h{h}: wrong flows removed"
        assert now[h] - counters[h] == len(expected[h]), f"h{h}: invalidation counter"


def _gone(lab: NetLab, expected: dict[int, set[Ident]]) -> bool:
    return all(not (expected[h] & idents(lab.flows(h))) for h in (1, 2))


def test_route_removal_stops_routed_flows_within_1s_and_only_them(lab: NetLab) -> None:
    _warm(lab, [("a", "c"), ("a", "e"), ("a", "b"), ("a", "d"), ("d", "c"), ("c", "e")])
    before, counters = _dumps(lab), _invalidated(lab)
    f1, f2 = lab.flows(1), lab.flows(2)
    # routed to net2 through route2: a->c, a->e on h1; d->c on h2
    expected = {
        1: lab.to_vm(f1, "c") | lab.to_vm(f1, "e"),
        2: lab.to_vm(f2, "c") & lab.from_vm(f2, "d"),
    }
    assert len(expected[1]) == 2 and len(expected[2]) == 1, expected
    survivor = next(f for f in f1 if f.ident in lab.to_vm(f1, "b"))
    t0 = time.monotonic()
    lab.api.delete("routes", lab.ids["route2"])
    wait_until(lambda: _gone(lab, expected), LIMIT_S, "routed flows to be removed")
    took = time.monotonic() - t0
    FIGURES["route removal: flows gone (ms)"] = f"{took * 1000:.0f}"
    _check_exact(lab, before, expected, counters)
    # simulated again, they take router port rp2's connected route (route2 was a copy of it)
    assert ping_ok(lab.ns("a"), lab.ip("c")), "a no longer reaches c by the connected route"
    FIGURES["route removal: removed/kept"] = (
        f"h1 {len(expected[1])}/{len(before[1]) - len(expected[1])}, "
        f"h2 {len(expected[2])}/{len(before[2]) - len(expected[2])}"
    )
    # the same-bridge flow survived and still forwards, in the kernel, without an upcall
    assert ping_ok(lab.ns("a"), lab.ip("b"))
    again = next(f for f in lab.flows(1) if f.ident == survivor.ident)
    assert again.packets > survivor.packets
    lab.ids["route2"] = lab.add_route(2)
    wait_until(lambda: ping_ok(lab.ns("a"), lab.ip("c")), 3, "a to reach c again")


def test_sg_rule_drops_new_and_established_tcp_within_1s(lab: NetLab) -> None:
    c_ip = lab.ip("c")
    s5201 = EchoServer(lab.ns("c"), c_ip, 5201)
    s5202 = EchoServer(lab.ns("c"), c_ip, 5202)
    rule = None
    try:
        established = tcp_connect(lab.ns("a"), c_ip, 5201)
        assert established is not None and echoes(established)
        assert can_connect(lab.ns("a"), c_ip, 5202)
        _warm(lab, [("a", "c"), ("a", "b"), ("a", "d"), ("d", "c"), ("c", "a")])
        before, counters = _dumps(lab), _invalidated(lab)
        f1, f2 = lab.flows(1), lab.flows(2)
        # every flow that went through c's to-VM chain: to c from h1 (a), to c on h2 (d)
        expected = {1: lab.to_vm(f1, "c"), 2: lab.to_vm(f2, "c")}
        assert expected[1] and expected[2], expected
        t0 = time.monotonic()
        rule = lab.api.create(
            "rules",
            {
                "chain_id": lab.ids["c_in"],
                "position": 5,
                "action": "drop",
                "nw_proto": 6,
                "tp_dst": {"start": 5201, "end": 5201},
            },
        )["id"]
        wait_until(lambda: _gone(lab, expected), LIMIT_S, "the chain's flows to be removed")
        took = time.monotonic() - t0
        FIGURES["SG rule added: flows gone (ms)"] = f"{took * 1000:.0f}"
        _check_exact(lab, before, expected, counters)
        assert not echoes(established, 0.5), "the established connection still passes"
        assert tcp_connect(lab.ns("a"), c_ip, 5201, 0.5) is None, "new tcp/5201 accepted"
        FIGURES["SG rule added: removed/kept"] = (
            f"h1 {len(expected[1])}/{len(before[1]) - len(expected[1])}, "
            f"h2 {len(expected[2])}/{len(before[2]) - len(expected[2])}"
        )
        # only tcp/5201 is refused: ping and tcp/5202 still pass (re-simulated)
        assert ping_ok(lab.ns("a"), c_ip)
        assert can_connect(lab.ns("a"), c_ip, 5202)
        established.close()
        lab.api.delete("rules", rule)
        rule = None
        wait_until(lambda: can_connect(lab.ns("a"), c_ip, 5201, 0.5), 3, "tcp/5201 allowed again")
    finally:
        if rule is not None:
            lab.api.delete("rules", rule)
        s5201.close()
        s5202.close()


def test_port_unbind_stops_traffic_to_it_within_1s(lab: NetLab) -> None:
    e_ip = lab.ip("e")
    _warm(lab, [("a", "e"), ("c", "e"), ("e", "c"), ("a", "b"), ("a", "c"), ("d", "c")])
    before, counters = _dumps(lab), _invalidated(lab)
    f1, f2 = lab.flows(1), lab.flows(2)
    # a->e (h1, tunnelled to e's port); c->e, e->c and e->a (h2, to/from e's port)
    expected = {
        1: lab.delivering_to(f1, 1, "e"),
        2: lab.delivering_to(f2, 2, "e") | lab.from_vm(f2, "e"),
    }
    assert len(expected[1]) >= 1 and len(expected[2]) >= 3, expected
    t0 = time.monotonic()
    lab.api.unbind_port(lab.ids["e"])
    wait_until(lambda: _gone(lab, expected), LIMIT_S, "e's flows to be removed")
    took = time.monotonic() - t0
    FIGURES["port unbind: flows gone (ms)"] = f"{took * 1000:.0f}"
    _check_exact(lab, before, expected, counters)
    assert not ping_ok(lab.ns("a"), e_ip) and not ping_ok(lab.ns("c"), e_ip)
    FIGURES["port unbind: removed/kept"] = (
        f"h1 {len(expected[1])}/{len(before[1]) - len(expected[1])}, "
        f"h2 {len(expected[2])}/{len(before[2]) - len(expected[2])}"
    )
    assert ping_ok(lab.ns("a"), lab.ip("b")) and ping_ok(lab.ns("a"), lab.ip("c"))
    lab.bind("e")
    wait_until(lambda: ping_ok(lab.ns("a"), e_ip), 3, "e reachable again after rebinding")


def test_mac_move_is_learned_and_stale_flows_invalidated(lab: NetLab) -> None:
    """x owns MOVING_MAC/MOVING_IP; then x goes away and y takes both over (a VM migrating to
    another port of the bridge). The bridge learns the MAC on y's port from y's first frame,
    the flows that sent the MAC to x's port are removed, and a's traffic reaches y."""
    a, y = lab.ns("a"), lab.vm("y")
    assert ping_ok(a, MOVING_IP, 1.0)  # ARP flooded, x answers: the MAC is learned on x
    _warm(lab, [("a", "b"), ("a", "c")])
    f1 = lab.flows(1)
    to_mac = [f for f in f1 if f.ident in lab.to_vm(f1, "x")]
    x_if, y_if = lab.ifindex("x"), lab.ifindex("y")
    assert [f.actions for f in to_mac] == [(Output(x_if),)]
    before, counters = _dumps(lab), _invalidated(lab)
    # flows that read where the MAC is: a's flow to it, x's flows from it
    expected = {1: lab.to_vm(f1, "x") | lab.from_vm(f1, "x"), 2: set()}
    lab.exec("x", ["ip", "link", "set", "eth0", "down"], check=True)
    t0 = time.monotonic()
    lab.exec("y", ["ip", "link", "set", "eth0", "address", MOVING_MAC], check=True)
    lab.exec("y", ["ip", "addr", "add", f"{MOVING_IP}/24", "dev", "eth0"], check=True)
    assert ping_ok(y.netns, lab.ip("a"), 1.0)  # y's first frames from the MAC
    wait_until(lambda: _gone(lab, expected), LIMIT_S, "the stale flows to be removed")
    FIGURES["MAC move: stale flows gone after y's first frame (ms)"] = (
        f"{(time.monotonic() - t0) * 1000:.0f}"
    )
    _check_exact(lab, before, expected, counters)
    FIGURES["MAC move: removed/kept"] = f"h1 {len(expected[1])}/{len(before[1]) - len(expected[1])}"
    assert ping_ok(a, MOVING_IP, 1.0), "a does not reach the MAC on its new port"
    f1 = lab.flows(1)
    assert [f.actions for f in f1 if f.ident in lab.to_vm(f1, "x")] == [(Output(y_if),)]
