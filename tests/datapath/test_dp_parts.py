"""The BPF datapath's parts without a kernel: nl_config encoding, the ABI check, flow and mask
bookkeeping, exec slots, tunnel keys; against fake maps (``fakebpf``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netloom.datapath.base import UpcallLimit
from netloom.datapath.bpf import abi
from netloom.datapath.bpf.attach import Plumbing
from netloom.datapath.bpf.config import Config, ConfigMap
from netloom.datapath.bpf.flows import FlowTable
from netloom.datapath.bpf.loader import check_abi
from netloom.datapath.bpf.ports import PortTable
from netloom.datapath.bpf.upcalls import ExecSlots
from netloom.errors import DatapathError, InvalidInput, NotFound
from netloom.flows.model import Flow, FlowKey, Output, SetTpDst

from .dpvectors import m
from .fakebpf import FakeLoader, FakeMap

pytestmark = pytest.mark.unit


def config_of(cm: FakeMap) -> tuple[int, ...]:
    return abi.CONFIG.unpack(cm.data[bytes(4)])


def test_config_is_written_with_this_abi_and_trace() -> None:
    fm = FakeMap()
    ConfigMap(fm).start(trace=True)
    ct = (21_600_000, 10_000, 60_000, 0)
    assert config_of(fm) == (abi.ABI_VERSION, 0, 0, 1, 0, 0, 0, 0, 0, 0, *ct)


def test_config_tunnel_and_upcall_limit_fields() -> None:
    fm = FakeMap()
    cm = ConfigMap(fm)
    cm.start(trace=False)
    cm.set_tunnel(
        tunnel_ifindex=7,
        local_ip=0xC0000201,
        udp_port=4789,
        tunnel_mtu=1450,
        underlay_ifindex=3,
        underlay_prefixlen=24,
    )
    cm.set_upcall_limit(UpcallLimit(rate=1000, burst=5))
    want = Config(7, 0xC0000201, False, 3, 4789, 0xFFFFFF00, 1_000_000, 5, 1450)
    assert Config.unpack(fm.data[bytes(4)]) == want == cm.config
    cm.set_upcall_limit(None)
    assert (cm.config.upcall_cost_ns, cm.config.upcall_burst) == (0, 0)
    assert config_of(fm)[7:9] == (0, 0)


def test_config_restart_adopts_the_tunnel_and_sets_trace_anew() -> None:
    fm = FakeMap()
    first = ConfigMap(fm)
    first.start(trace=True)
    first.set_tunnel(tunnel_ifindex=7, local_ip=1, udp_port=4789, tunnel_mtu=1450)
    second = ConfigMap(fm)
    second.start(trace=False)
    assert second.config == Config(7, 1, False, 0, 4789, 0, 0, 0, 1450)


def test_abi_check_refuses_other_versions_only() -> None:
    fm = FakeMap()
    check_abi(fm, Path("/x"))  # never configured
    ConfigMap(fm).start(trace=False)
    check_abi(fm, Path("/x"))
    fm.data[bytes(4)] = abi.CONFIG.pack(abi.ABI_VERSION - 1, *[0] * 13)
    with pytest.raises(DatapathError, match="use ABI"):
        check_abi(fm, Path("/x"))


def flow(in_port: int, tp_dst: int, mask: FlowKey, idle: float = 0) -> Flow:
    """A flow whose key is already under its mask (what a dump gives back)."""
    key = FlowKey(in_port=in_port, tp_dst=tp_dst).masked(mask)
    return Flow(key, mask, (Output(9),), idle_timeout_s=idle)


def mask_array(fl: FakeLoader) -> list[tuple[int, FlowKey]]:
    """The valid prefix of nl_masks, as the program searches it."""
    out = []
    for i in range(abi.MAX_MASKS):
        v = fl.maps["nl_masks"].data[i.to_bytes(4, "little")]
        mid, valid = abi.MASK.unpack_from(v)
        if not valid:
            break
        out.append((mid, abi.unpack_key(v[abi.MASK.size :])))
    return out


def table() -> tuple[FakeLoader, FlowTable]:
    fl = FakeLoader()
    return fl, FlowTable(fl.map("nl_flows"), fl.map("nl_masks"))


PORT_ONLY, PORT_AND_DST = m(in_port=1), m(in_port=1, tp_dst=1)


def test_masks_follow_their_flows_most_specific_first() -> None:
    fl, ft = table()
    a, b, c = flow(1, 0, PORT_ONLY), flow(1, 80, PORT_AND_DST), flow(1, 443, PORT_AND_DST)
    ft.install([a, b, c])
    assert ft.count() == 3
    assert [k for _mid, k in mask_array(fl)] == [PORT_AND_DST, PORT_ONLY]
    assert ft.delete([(b.key, b.mask)]) == 1
    assert len(mask_array(fl)) == 2  # c still uses the mask
    assert ft.delete([(c.key, c.mask), (c.key, c.mask)]) == 1  # the second is gone already
    assert [k for _mid, k in mask_array(fl)] == [PORT_ONLY]
    assert ft.delete([(b.key, PORT_AND_DST)]) == 0  # an unknown mask deletes nothing
    assert {f for f, _st in ft.dump()} == {a}


def test_bad_flow_changes_nothing() -> None:
    fl, ft = table()
    with pytest.raises(InvalidInput):
        ft.install([flow(1, 0, PORT_ONLY), flow(1, 81, PORT_AND_DST, idle=-1)])
    assert ft.count() == 0 and not fl.maps["nl_masks"].data


def test_modify_keeps_creation_and_counters() -> None:
    fl, ft = table()
    f = flow(1, 0, PORT_ONLY)
    ft.install([f])
    [(k, v)] = fl.maps["nl_flows"].data.items()
    tail = list(abi.FLOW_TAIL.unpack_from(v, abi.ACTION.size * abi.MAX_ACTIONS))
    tail[4:6] = [3, 180]  # the program counted 3 packets
    fl.maps["nl_flows"].data[k] = v[: abi.ACTION.size * abi.MAX_ACTIONS] + abi.FLOW_TAIL.pack(*tail)
    g = Flow(f.key, f.mask, (SetTpDst(8080), Output(2)), idle_timeout_s=5)
    ft.modify([g])
    [(got, stats)] = ft.dump()
    assert got == g and (stats.packets, stats.bytes) == (3, 180)
    with pytest.raises(NotFound):
        ft.modify([flow(2, 0, PORT_ONLY)])


def test_expire_drops_idle_flows_and_their_masks() -> None:
    fl, ft = table()
    idle, forever = flow(1, 80, PORT_AND_DST, idle=5), flow(1, 0, PORT_ONLY)
    ft.install([idle, forever])
    created = abi.FLOW_TAIL.unpack_from(
        next(iter(fl.maps["nl_flows"].data.values())), abi.ACTION.size * abi.MAX_ACTIONS
    )[1]
    assert ft.expire(created / 1e9 + 1) == []
    assert ft.expire(created / 1e9 + 6) == [idle]
    assert [k for _mid, k in mask_array(fl)] == [PORT_ONLY]


def test_adopt_recovers_masks_and_their_use() -> None:
    fl, ft = table()
    a, b, c = flow(1, 0, PORT_ONLY), flow(2, 0, PORT_ONLY), flow(1, 80, PORT_AND_DST)
    ft.install([a, b, c])
    ft.delete([(c.key, c.mask)])
    again = FlowTable(fl.map("nl_flows"), fl.map("nl_masks"))
    again.adopt()
    assert sorted(f.key.in_port for f, _st in again.dump()) == [1, 2]
    again.delete([(a.key, a.mask)])
    assert len(mask_array(fl)) == 1  # b still uses it: the use count came back as 2
    again.delete([(b.key, b.mask)])
    assert mask_array(fl) == []


def test_exec_slots_are_shared_by_content_and_recycled_lru() -> None:
    fl = FakeLoader()
    slots = ExecSlots(fl)
    values = [i.to_bytes(abi.EXEC_SIZE, "little") for i in range(abi.EXEC_SLOTS + 1)]
    assert [slots.slot(v) for v in values[:-1]] == list(range(abi.EXEC_SLOTS))
    assert slots.slot(values[0]) == 0  # reused, and now the most recent
    assert slots.slot(values[-1]) == 1  # evicts values[1], the least recently used
    assert fl.maps["nl_exec"].data[(1).to_bytes(4, "little")] == values[-1]


def test_tunnel_keys_are_checked_before_the_map() -> None:
    fl = FakeLoader()
    ports = PortTable(fl.map("nl_ports"), fl.map("nl_vni"), Plumbing(None, fl.pin_dir))
    with pytest.raises(InvalidInput):
        ports.bind_tunnel_key(1 << 24, 1)
    with pytest.raises(NotFound):
        ports.bind_tunnel_key(100, 1)
    assert not fl.maps["nl_vni"].data
