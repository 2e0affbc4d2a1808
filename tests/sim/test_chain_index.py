"""The chain index decides as the rule-by-rule walk does, and its flows are sound.

Random chains (a main chain on a VM port's outbound filter and a chain it may jump to) and
random packets: for each packet the indexed walk (the default) must give the verdict, the
deciding rule and the state changes of the rule-by-rule walk (``explain``, which tests every
rule in turn), and every packet equal to it on the fields its flow reads must get the same
verdict and deciding rule.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netloom.model.addressing import group_addresses_id
from netloom.model.records import Chain, IPAddrGroup, NatTarget, PortGroup, PortRange, Rule
from netloom.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    Arp,
    Frame,
    Icmp,
    IPv4,
    Tcp,
    Udp,
    ip_to_int,
    mac_to_int,
)
from netloom.sim import MemoryTopology, Result, SimConfig, SimState, Verdict, simulate
from netloom.sim.result import (
    F_ETH_TYPE,
    F_IP_DST,
    F_IP_PROTO,
    F_IP_SRC,
    F_TP_DST,
    F_TP_SRC,
)

from .conftest import NOW, Lab, dhcp_subnet, eth

pytestmark = pytest.mark.unit

VMS = {"a": "10.0.0.1", "a2": "10.0.0.2", "b": "10.0.0.3"}
MACS = {"a": "02:00:00:00:00:01", "a2": "02:00:00:00:00:02", "b": "02:00:00:00:00:03"}
ADDRS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.2.3", "192.0.2.7", "192.0.2.99", "0.0.0.0"]
NETS = ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/24", "10.0.0.1/32", "192.0.2.0/24"]
PORTS = [20, 21, 22, 25, 67, 68, 80, 443, 1000, 5201, 65535]
GROUP = "7c1e2a8e-0000-4000-8000-000000000001"  # a port group: a is its member
ADDR_GROUP = "7c1e2a8e-0000-4000-8000-000000000002"
MAIN = "7c1e2a8e-0000-4000-8000-000000000003"
SUB = "7c1e2a8e-0000-4000-8000-000000000004"

# (eth_type, ip_src, ip_dst, proto, tp_src, tp_dst), as the flow key holds them
Fields = tuple[int, int, int, int, int, int]
_FIELD_BITS = (F_ETH_TYPE, F_IP_SRC, F_IP_DST, F_IP_PROTO, F_TP_SRC, F_TP_DST)


def _cond(draw: st.DrawFn, r: dict[str, Any], lab: Lab) -> None:
    """One random condition, sometimes inverted, added to rule ``r``."""
    inv = draw(st.integers(0, 2)) == 0
    kind = draw(st.sampled_from(["in", "out", "pg", "eth", "proto", "src", "dst", "grp", "tp"]))
    ports = lab.ports
    if kind == "in":
        ids = draw(st.lists(st.sampled_from(["a", "a2", "b"]), min_size=1, max_size=2))
        r.update(in_port_ids=sorted({ports[v].id for v in ids}), inv_in_ports=inv)
    elif kind == "out":
        r.update(out_port_ids=[ports[draw(st.sampled_from(["a", "b"]))].id], inv_out_ports=inv)
    elif kind == "pg":
        r.update(in_port_group_id=GROUP, inv_in_port_group=inv)
    elif kind == "eth":
        r.update(ethertype=draw(st.sampled_from([ETH_TYPE_IPV4, ETH_TYPE_ARP])), inv_ethertype=inv)
    elif kind == "proto":
        r.update(nw_proto=draw(st.sampled_from([6, 17, 1, 47])), inv_nw_proto=inv)
    elif kind in ("src", "dst"):
        r.update({f"nw_{kind}": draw(st.sampled_from(NETS)), f"inv_nw_{kind}": inv})
    elif kind == "grp":
        if draw(st.booleans()):
            r.update(ip_addr_group_src_id=ADDR_GROUP, inv_ip_addr_group_src=inv)
        else:
            r.update(remote_group_dst_id=GROUP, inv_remote_group_dst=inv)
    else:
        lo = draw(st.sampled_from(PORTS))
        hi = draw(st.sampled_from([lo, lo, lo + 5, 65535]))
        side = draw(st.sampled_from(["tp_dst", "tp_dst", "tp_src"]))
        r.update({side: PortRange(start=lo, end=min(hi, 65535)), f"inv_{side}": inv})


@st.composite
def _rule(draw: st.DrawFn, lab: Lab, chain: str, position: int) -> Rule:
    r: dict[str, Any] = {"chain_id": chain, "position": position}
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 2, 3, 3, 4]))):
        _cond(draw, r, lab)
    actions = ["accept", "drop", "reject", "continue", "return", "reverse-dnat", "dnat"]
    action = draw(
        st.sampled_from([*actions, "accept", "drop"] + (["jump"] if chain == MAIN else []))
    )
    r["action"] = action
    if action == "jump":
        r["jump_chain_id"] = SUB
    if action == "dnat":
        r.update(
            static=True, nat_targets=[NatTarget(address_from="10.9.9.9", address_to="10.9.9.9")]
        )
    ct = draw(st.integers(0, 5))
    if ct == 0:
        r["match_return_flow"] = True
    elif ct == 1:
        r["match_forward_flow"] = True
    r["inv_all"] = draw(st.integers(0, 9)) == 0
    return Rule(**r)


def _lab() -> Lab:
    lab = Lab()
    br = lab.bridge("br")
    for name, ip in VMS.items():
        groups = [GROUP] if name == "a" else []
        lab.vm(br, name, MACS[name], ip, port_security_enabled=False, port_group_ids=groups)
    lab.add(PortGroup(id=GROUP, name="g"))
    lab.add(IPAddrGroup(id=group_addresses_id(GROUP), port_group_id=GROUP, addresses=[VMS["a"]]))
    lab.add(IPAddrGroup(id=ADDR_GROUP, addresses=["10.0.0.2", "10.1.0.0/16", "192.0.2.0/28"]))
    lab.add(Chain(id=MAIN, name="main"))
    lab.add(Chain(id=SUB, name="sub"))
    lab.add(dhcp_subnet(br, cidr="10.0.0.0/24"))  # its server tests DHCP's protocol and ports
    return lab


LAB = _lab()


def _frame(vm: str, f: Fields) -> Frame | None:
    etype, src, dst, proto, sport, dport = f
    e = eth(MACS[vm], MACS["b"], etype)
    if etype == ETH_TYPE_ARP:
        if proto not in (1, 2):
            return None
        return Frame(e, arp=Arp(proto, mac_to_int(MACS[vm]), src, 0, dst))
    ip = IPv4(src, dst, proto)
    if proto == 6:
        return Frame(e, ip=ip, l4=Tcp(sport, dport))
    if proto == 17:
        return Frame(e, ip=ip, l4=Udp(sport, dport), payload=b"x")
    if proto == 1:
        if sport > 255 or dport > 255:
            return None
        return Frame(e, ip=ip, l4=Icmp(sport, dport, 7 << 16), payload=b"ping")
    return Frame(e, ip=ip, payload=b"gre") if sport == dport == 0 else None


_packet = st.tuples(
    st.sampled_from(["a", "a2"]),
    st.sampled_from([ETH_TYPE_IPV4] * 3 + [ETH_TYPE_ARP]),
    st.sampled_from(ADDRS).map(ip_to_int),
    st.sampled_from(ADDRS).map(ip_to_int),
    st.sampled_from([6, 6, 17, 1, 47]),
    st.sampled_from(PORTS),
    st.sampled_from(PORTS),
)


def _fields(p: tuple[str, int, int, int, int, int, int]) -> Fields:
    _vm, etype, src, dst, proto, sport, dport = p
    if etype == ETH_TYPE_ARP:
        return (etype, src, dst, 1 + proto % 2, 0, 0)
    if proto == 1:
        return (etype, src, dst, proto, sport % 2 * 8, 0)  # echo reply / request
    if proto == 47:
        return (etype, src, dst, proto, 0, 0)
    return (etype, src, dst, proto, sport, dport)


def _random_field(rng: random.Random, i: int, f: list[int]) -> int:
    if i == 0:
        return rng.choice([ETH_TYPE_IPV4, ETH_TYPE_ARP])
    if i in (1, 2):
        return ip_to_int(rng.choice(ADDRS))
    if i == 3:
        return rng.choice([1, 2]) if f[0] == ETH_TYPE_ARP else rng.choice([6, 17, 1, 47])
    return rng.choice([*PORTS, 0, 8, 67, 68, rng.randrange(1, 65536)])


def _neighbours(rng: random.Random, f: Fields, read: int, n: int) -> list[Fields]:
    """Packets equal to ``f`` on the fields ``read`` marks, the others drawn at random."""
    out: list[Fields] = []
    for _ in range(n):
        g = list(f)
        for i, bit in enumerate(_FIELD_BITS):
            if not read & bit:
                g[i] = _random_field(rng, i, g)
        out.append((g[0], g[1], g[2], g[3], g[4], g[5]))
    return out


def _decision(r: Result) -> tuple[object, ...]:
    return r.verdict, _rule_id(r), r.outputs


def _rule_id(r: Result) -> str | None:
    """The id of the rule whose decision stands."""
    rule = r.trace.decided_by()
    return rule.id if rule is not None else None


def _established(state: SimState, zone: str, f: Fields) -> None:
    etype, src, dst, proto, sport, dport = f
    if etype == ETH_TYPE_IPV4:
        if proto in (1, 47):
            sport = dport = 0
        state.conntrack[("ct", zone, proto, dst, dport, src, sport)] = NOW + 100


LINEAR = SimConfig(explain=True)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_index_decides_as_the_linear_walk_and_its_flows_are_sound(data: st.DataObject) -> None:
    n_main = data.draw(st.integers(0, 40))
    rules = [data.draw(_rule(LAB, MAIN, i)) for i in range(n_main)]
    rules += [data.draw(_rule(LAB, SUB, i)) for i in range(data.draw(st.integers(0, 8)))]
    b = LAB.ports["b"].model_copy(update={"outbound_filter_id": MAIN})
    view = MemoryTopology([LAB.host, *LAB.records, b, *rules])
    packets = data.draw(st.lists(_packet, min_size=1, max_size=8))
    state = SimState()
    for p in data.draw(st.lists(_packet, max_size=4)):
        _established(state, b.device_id, _fields(p))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for p in packets:
        vm, f = p[0], _fields(p)
        frame = _frame(vm, f)
        assert frame is not None
        in_port = LAB.ports[vm].id
        got = simulate(frame, in_port, view, state, NOW)
        want = simulate(frame, in_port, view, state, NOW, LINEAR)
        assert _decision(got) == _decision(want), (f, got.trace.decisions())
        assert got.changes == want.changes
        assert got.actions == want.actions
        if not got.cacheable:
            continue
        for g in _neighbours(rng, f, got.read, 4):
            other = _frame(vm, g)
            if other is None:
                continue
            again = simulate(other, in_port, view, state, NOW)
            assert _decision(again) == _decision(got), (f, g, hex(got.read))


def _prefix_chain(lab: Lab, n: int, last: dict[str, Any]) -> MemoryTopology:
    """b's outbound chain: ``n`` rules "accept from 172.16.x.y/32", then ``last``."""
    rules = [
        Rule(chain_id=MAIN, position=i, action="accept", nw_src=f"172.16.{i >> 8}.{i & 255}/32")
        for i in range(n)
    ]
    rules.append(Rule(chain_id=MAIN, position=n, **last))
    b = lab.ports["b"].model_copy(update={"outbound_filter_id": MAIN})
    return MemoryTopology([lab.host, *lab.records, b, *rules])


def _tcp_from(vm: str, dport: int) -> Frame:
    e = eth(MACS[vm], MACS["b"])
    ip = IPv4(ip_to_int(VMS[vm]), ip_to_int(VMS["b"]), 6)
    return Frame(e, ip=ip, l4=Tcp(40000, dport))


def test_a_chain_that_tests_no_port_reads_no_port() -> None:
    view = _prefix_chain(LAB, 300, {"action": "drop"})
    r = simulate(_tcp_from("a", 22), LAB.ports["a"].id, view, SimState(), NOW)
    assert r.verdict is Verdict.DROP and _rule_id(r) is not None
    assert r.read & (F_TP_SRC | F_TP_DST) == 0
    assert r.read & F_IP_SRC


def test_rules_after_the_decision_are_not_looked_up() -> None:
    """A port rule after the deciding one adds no port to the flow."""
    rules = [
        Rule(chain_id=MAIN, position=0, action="accept", nw_src="10.0.0.0/24"),
        *(
            Rule(chain_id=MAIN, position=1 + i, action="drop", nw_proto=6,
                 tp_dst=PortRange(start=1000 + i, end=1000 + i))
            for i in range(200)
        ),
    ]  # fmt: skip
    b = LAB.ports["b"].model_copy(update={"outbound_filter_id": MAIN})
    view = MemoryTopology([LAB.host, *LAB.records, b, *rules])
    r = simulate(_tcp_from("a", 1005), LAB.ports["a"].id, view, SimState(), NOW)
    assert _rule_id(r) == rules[0].id
    assert r.read & (F_TP_SRC | F_TP_DST) == 0  # the protocol: the bridge's DHCP server
    view.put(Rule(chain_id=MAIN, position=0, action="accept", nw_src="10.9.0.0/24", id=rules[0].id))
    r = simulate(_tcp_from("a", 1005), LAB.ports["a"].id, view, SimState(), NOW)
    assert _rule_id(r) == rules[6].id
    assert r.read & F_TP_DST


def test_explain_names_the_failed_condition_of_every_rule() -> None:
    view = _prefix_chain(LAB, 3, {"action": "drop"})
    cfg = replace(SimConfig(), explain=True)
    r = simulate(_tcp_from("a", 22), LAB.ports["a"].id, view, SimState(), NOW, cfg)
    misses = [s for s in r.trace.steps if s.kind == "rule" and s.decision == "no-match"]
    assert [s.detail for s in misses] == ["nw_src differs (packet: 10.0.0.1)"] * 3


def test_nested_port_ranges_decide_as_the_linear_walk() -> None:
    """Ranges nested 300 deep: past the memory budget the widest are tested one by one."""
    rules = [
        Rule(chain_id=MAIN, position=i, action="drop" if i % 3 else "accept", nw_proto=6,
             tp_dst=PortRange(start=100 * i, end=65535 - 100 * i), inv_all=i % 7 == 6)
        for i in range(300)
    ]  # fmt: skip
    b = LAB.ports["b"].model_copy(update={"outbound_filter_id": MAIN})
    view = MemoryTopology([LAB.host, *LAB.records, b, *rules])
    for port in (0, 99, 100, 5000, 29999, 32767, 32768, 40000, 65435, 65535):
        frame = _tcp_from("a", port)
        got = simulate(frame, LAB.ports["a"].id, view, SimState(), NOW)
        want = simulate(frame, LAB.ports["a"].id, view, SimState(), NOW, LINEAR)
        assert _decision(got) == _decision(want), port
