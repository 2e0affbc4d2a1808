"""MemoryDatapath semantics beyond the shared vectors: priority, expiry, eviction, errors."""

from __future__ import annotations

import pytest

from netloom.datapath import frames
from netloom.datapath.base import Datapath, Fate, PortKind, TunnelSettings, UpcallReason
from netloom.datapath.bpf import BpfDatapath
from netloom.datapath.memory import MemoryDatapath
from netloom.errors import InvalidInput, NotFound
from netloom.flows.model import Drop, Flow, FlowKey, Output, SetEthDst, Tunnel

from .dpvectors import MAC_VM2, frame, ip, m

pytestmark = pytest.mark.unit


def dp2() -> tuple[MemoryDatapath, int, int]:
    dp = MemoryDatapath(max_flows=4)
    return dp, dp.add_port("a", PortKind.VM), dp.add_port("b", PortKind.VM)


def _both_are_datapaths(mem: MemoryDatapath, bpf: BpfDatapath) -> tuple[Datapath, Datapath]:
    """Checked by mypy, never run: both datapaths implement the protocol."""
    return mem, bpf


def test_same_bits_first_seen_mask_wins() -> None:
    dp, a, b = dp2()
    by_dst = Flow(FlowKey(ip_dst=ip("10.1.0.2")), m(ip_dst=1), (Output(b),))
    by_src = Flow(FlowKey(ip_src=ip("10.1.0.1")), m(ip_src=1), (Drop(),))
    dp.install([by_dst, by_src])
    assert dp.receive(frame(), a, now=0)[0].fate == Fate.OUTPUT
    dp2_, a2, b2 = dp2()
    dp2_.install(
        [
            Flow(FlowKey(ip_src=ip("10.1.0.1")), m(ip_src=1), (Drop(),)),
            Flow(FlowKey(ip_dst=ip("10.1.0.2")), m(ip_dst=1), (Output(b2),)),
        ]
    )
    assert dp2_.receive(frame(), a2, now=0)[0].fate == Fate.DROP


def test_idle_and_hard_expiry_with_explicit_now() -> None:
    dp, a, b = dp2()
    idle = Flow(FlowKey(in_port=a), m(in_port=1), (Output(b),), idle_timeout_s=10)
    hard = Flow(FlowKey(in_port=b), m(in_port=1), (Output(a),), idle_timeout_s=0, hard_timeout_s=30)
    dp.install([idle, hard], now=100)
    dp.receive(frame(), a, now=105)
    assert dp.expire(now=114) == []
    assert dp.expire(now=115) == [idle]
    assert dp.expire(now=129) == []
    assert dp.expire(now=130) == [hard]
    assert dp.dump(now=130) == []


def test_full_table_evicts_least_recently_used() -> None:
    dp, a, b = dp2()
    flows = [
        Flow(FlowKey(in_port=a, tp_dst=p), m(in_port=1, tp_dst=1), (Output(b),))
        for p in range(1, 6)
    ]
    dp.install(flows[:4], now=0)
    dp.receive(frame(dport=1), a, now=1)  # flow 1 is now the most recently used
    dp.install([flows[4]], now=2)
    left = {f.key.tp_dst for f, _ in dp.dump(now=2)}
    assert left == {1, 3, 4, 5} and dp.evictions == 1


def test_eviction_order_matches_least_recently_used_under_churn() -> None:
    """Installs, hits (now and then with an earlier ``now``), deletes and replacements in a
    random mix: the datapath always evicts the flow of least (last use, install order), as a
    plain scan over a model of the table would."""
    import random

    rng = random.Random(7)
    dp = MemoryDatapath(max_flows=8)
    a, b = dp.add_port("a", PortKind.VM), dp.add_port("b", PortKind.VM)
    model: dict[int, tuple[float, int]] = {}  # tp_dst -> (last used, install order)
    seq, now = 0, 0.0
    for _ in range(3000):
        now += rng.choice((0.0, 1.0, 1.0, -3.0))
        port, op = rng.randint(1, 20), rng.random()
        if op < 0.5:
            if port not in model and len(model) >= 8:
                del model[min(model, key=lambda p: model[p])]
            seq += 1
            model[port] = (now, seq)
            flow = Flow(FlowKey(in_port=a, tp_dst=port), m(in_port=1, tp_dst=1), (Output(b),))
            dp.install([flow], now=now)
        elif op < 0.85:
            dp.receive(frame(dport=port), a, now=now)
            if port in model:
                model[port] = (now, model[port][1])
        else:
            dp.delete([(FlowKey(in_port=a, tp_dst=port), m(in_port=1, tp_dst=1))])
            model.pop(port, None)
        assert {f.key.tp_dst for f, _ in dp.dump(now=now)} == set(model)
    assert dp.evictions > 100


def test_stats_modify_keeps_them_and_delete() -> None:
    dp, a, b = dp2()
    f = Flow(FlowKey(in_port=a), m(in_port=1), (Output(b),))
    dp.install([f], now=0)
    pkt = frame()
    dp.receive(pkt, a, now=3)
    dp.modify([Flow(f.key, f.mask, (SetEthDst(MAC_VM2), Output(b)))])
    dp.receive(pkt, a, now=4)
    [(flow, st)] = dp.dump(now=5)
    assert (st.packets, st.bytes, st.last_used_s) == (2, 2 * len(pkt), 1.0)
    assert flow.actions[0] == SetEthDst(MAC_VM2)
    with pytest.raises(NotFound):
        dp.modify([Flow(FlowKey(in_port=b), m(in_port=1), ())])
    assert dp.delete([(f.key, f.mask)]) == 1
    assert dp.delete([(f.key, f.mask)]) == 0


def test_upcall_then_reinject_forwards() -> None:
    dp, a, b = dp2()
    pkt = frame()
    assert dp.receive(pkt, a, now=0)[0].reason == UpcallReason.MISS
    [up] = dp.poll_upcalls()
    assert (up.packet, up.in_port, up.reason) == (pkt, a, UpcallReason.MISS)
    dp.install([Flow(FlowKey(in_port=a), m(in_port=1), (Output(b),))])
    assert dp.reinject(up, now=1)[0].port == b


def test_tunnel_ingress_maps_vni_to_port_without_lookup() -> None:
    dp, _a, b = dp2()
    t = dp.set_tunnel(TunnelSettings(local_ip=ip("192.0.2.1")))
    dp.bind_tunnel_key(500, b)
    [o] = dp.receive(frame(), t, tun_key=500, now=0)
    assert (o.fate, o.port) == (Fate.OUTPUT, b)
    assert dp.receive(frame(), t, tun_key=501, now=0)[0].fate == Fate.UPCALL


def test_execute_packet_out() -> None:
    dp, _a, _b = dp2()
    assert dp.execute(frame(), [Tunnel(7, ip("192.0.2.9"))])[0].fate == Fate.DROP  # no tunnel
    dp.set_tunnel(TunnelSettings(local_ip=ip("192.0.2.1")))
    [o] = dp.execute(frame(), [Tunnel(7, ip("192.0.2.9"))])
    assert (o.fate, o.vni) == (Fate.TUNNEL, 7)
    assert dp.sent[-1] == o


def test_bad_input_changes_nothing() -> None:
    dp, a, b = dp2()
    good = Flow(FlowKey(in_port=a), m(in_port=1), (Output(b),))
    with pytest.raises(InvalidInput):
        dp.install([good, Flow(FlowKey(), FlowKey(), (Tunnel(1 << 24, 1),))])
    assert dp.dump(now=0) == []
    with pytest.raises(InvalidInput):
        dp.bind_tunnel_key(0, a)
    with pytest.raises(NotFound):
        dp.receive(frame(), 99)
    with pytest.raises(InvalidInput):
        frames.parse(b"\x00" * 10)
    with pytest.raises(InvalidInput):
        dp.add_port("c", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        dp.add_port("c", PortKind.VM, mtu=-1)
    assert len(dp.ports()) == 2


def test_complete_checksum_fixes_partial() -> None:
    good = frame()
    partial = bytearray(good)
    partial[14 + 20 + 16 : 14 + 20 + 18] = b"\x12\x34"  # a pseudo-header-only sum
    assert frames.complete_l4_checksum(bytes(partial)) == good
    udp0 = frame(proto=17, udp_zero_csum=True)
    assert frames.complete_l4_checksum(udp0) == udp0
