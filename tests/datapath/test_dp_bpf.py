"""BPF datapath behaviour beyond the vectors: full table, expiry, packet-out, adoption."""

from __future__ import annotations

import socket
import time

import pytest

from netloom.datapath.base import PortKind, UpcallReason
from netloom.errors import InvalidInput
from netloom.flows.model import Flow, FlowKey, Output, SetTpDst

from .conftest import Lab, have_bpf, in_ns
from .dpvectors import frame, m

pytestmark = [pytest.mark.bpf, pytest.mark.skipif(not have_bpf(), reason="needs root, clang")]


def test_full_table_evicts_never_fails(lab: Lab) -> None:
    from netloom.datapath.bpf import BpfDatapath

    ns = lab.ns("h")
    lab.veth(ns, "p1", ns, "p1x")
    dp = BpfDatapath(lab.host_name("h"), netns=ns, max_entries={"nl_flows": 128})
    try:
        p1 = dp.add_port("p1", PortKind.VM)
        flows = [
            Flow(FlowKey(in_port=p1, tp_dst=i), m(in_port=1, tp_dst=1), (Output(p1),))
            for i in range(1, 1001)
        ]
        for i in range(0, 1000, 100):
            dp.install(flows[i : i + 100])
        n = dp.flow_count()
        assert 0 < n <= 128
        assert {f.key.tp_dst for f, _ in dp.dump()} & {1000}  # the newest survived
        assert dp.delete([(f.key, f.mask) for f in flows]) == n  # batch delete, mixed
        assert dp.flow_count() == 0
    finally:
        dp.destroy()


def test_table_sized_from_config_and_a_pin_keeps_its_size(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from netloom.datapath.bpf import BpfDatapath
    from netloom.datapath.bpf.loader import FLOWS

    ns = lab.ns("h")
    dp = BpfDatapath(lab.host_name("h"), netns=ns, max_entries={FLOWS: 4096})
    try:
        info = dp.map_info(FLOWS)
        assert info.max_entries == 4096 and info.memlock > 4096 * (info.key_size + info.value_size)
        dp.close()
        with caplog.at_level(logging.WARNING):
            dp = BpfDatapath(lab.host_name("h"), netns=ns, max_entries={FLOWS: 8192})
        assert dp.map_info(FLOWS).max_entries == 4096  # adopted, as pinned
        assert "pinned with 4096 entries" in caplog.text
    finally:
        dp.destroy()


def test_expiry_and_mask_cleanup(lab: Lab) -> None:
    from netloom.datapath.bpf import BpfDatapath

    ns = lab.ns("h")
    lab.veth(ns, "p1", ns, "p1x")
    dp = BpfDatapath(lab.host_name("h"), netns=ns, trace=True)
    try:
        p1 = dp.add_port("p1", PortKind.VM)
        short = Flow(FlowKey(in_port=p1), m(in_port=1), (Output(p1),), idle_timeout_s=5)
        hard = Flow(
            FlowKey(tp_dst=80), m(tp_dst=1), (Output(p1),), idle_timeout_s=0, hard_timeout_s=60
        )
        dp.install([short, hard])
        now = time.monotonic()
        assert dp.expire(now) == []
        assert dp.expire(now + 6) == [short]
        assert dp.expire(now + 61) == [hard]
        assert dp.flow_count() == 0
        # the masks went with their flows: a packet now misses
        assert dp.run_outcome(frame(), p1)[0].reason == UpcallReason.MISS
    finally:
        dp.destroy()


def test_packet_out_and_bad_input(lab: Lab) -> None:
    from netloom.datapath.bpf import BpfDatapath

    with pytest.raises(InvalidInput):
        BpfDatapath("../etc")
    h, vm = lab.ns("h"), lab.ns("vm")
    lab.veth(h, "p1", vm, "eth0")
    in_ns(vm, "ip", "addr", "add", "10.1.0.2/24", "dev", "eth0")
    in_ns(vm, "ethtool", "-K", "eth0", "rx", "off")
    dp = BpfDatapath(lab.host_name("h"), netns=h)
    try:
        p1 = dp.add_port("p1", PortKind.VM)
        from netloom.netns import entered

        with entered(vm):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 5353))
        s.settimeout(2)
        link = in_ns(vm, "ip", "-o", "link", "show", "eth0").stdout.split()
        vm_mac = int(link[link.index("link/ether") + 1].replace(":", ""), 16)
        pkt = frame(proto=17, dst_mac=vm_mac, sport=1, dport=53, payload=b"out!")
        dp.execute(pkt, [SetTpDst(5353), Output(p1)])
        assert s.recv(100) == b"out!"
        with pytest.raises(InvalidInput):
            dp.install([Flow(FlowKey(), FlowKey(), (Output(p1),) * 9)])
        with pytest.raises(InvalidInput):
            dp.bind_tunnel_key(1 << 24, p1)
        assert dp.flow_count() == 0
    finally:
        dp.destroy()


def test_pins_of_an_older_datapath_are_refused_and_left_alone(lab: Lab) -> None:
    """Pins without this code's entry points (an agent of an older netloom) are not adopted
    and not overwritten: the error says what to remove, and everything pinned stays."""
    from netloom.datapath.bpf import BpfDatapath
    from netloom.datapath.bpf.loader import PORT_PROG
    from netloom.errors import DatapathError

    ns = lab.ns("h")
    host = lab.host_name("h")
    dp = BpfDatapath(host, netns=ns)
    try:
        (dp.pin_dir / PORT_PROG).unlink()  # what an ABI 2 datapath pinned: no nl_port_ingress
        before = sorted(p.name for p in dp.pin_dir.iterdir())
        with pytest.raises(DatapathError, match=r"older datapath's .*nl_port_ingress"):
            BpfDatapath(host, netns=ns)
        assert sorted(p.name for p in dp.pin_dir.iterdir()) == before
    finally:
        dp.destroy()
