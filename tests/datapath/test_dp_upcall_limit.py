"""Per-port upcall budget enforced by the datapath itself (a port scan must not fill the
agent's queue): the memory reference with an explicit clock, the kernel program through
BPF_PROG_TEST_RUN."""

from __future__ import annotations

import time

import pytest

from netloom.datapath.base import DatapathCounters, Fate, PortKind, UpcallLimit
from netloom.datapath.memory import MemoryDatapath
from netloom.errors import InvalidInput

from .conftest import Lab, have_bpf, in_ns
from .dpvectors import frame


def _scan(n: int) -> list[bytes]:
    """``n`` UDP probes to distinct ports: each is a new flow, so each misses."""
    return [frame(proto=17, sport=40000, dport=1 + i) for i in range(n)]


@pytest.mark.unit
def test_limit_is_validated() -> None:
    for rate, burst in ((0, 1), (10, 0), (2e6, 1), (10, 2_000_000)):
        with pytest.raises(InvalidInput):
            UpcallLimit(rate, burst)


@pytest.mark.unit
def test_memory_budget_per_port_refills_with_time() -> None:
    dp = MemoryDatapath()
    a, b = dp.add_port("a", PortKind.VM), dp.add_port("b", PortKind.VM)
    dp.set_upcall_limit(UpcallLimit(rate=10, burst=3))
    fates = [dp.receive(p, a, now=1.0)[0].fate for p in _scan(10)]
    assert fates == [Fate.UPCALL] * 3 + [Fate.DROP] * 7
    # another port is not affected by the scanner's budget
    assert dp.receive(_scan(1)[0], b, now=1.0)[0].fate is Fate.UPCALL
    # 0.25 s later 2.5 tokens are back (10/s), never more than the burst
    assert [dp.receive(p, a, now=1.25)[0].fate for p in _scan(3)] == [Fate.UPCALL] * 2 + [Fate.DROP]
    assert [dp.receive(p, a, now=60.0)[0].fate for p in _scan(4)] == [Fate.UPCALL] * 3 + [Fate.DROP]
    assert dp.counters() == DatapathCounters(upcalls_throttled=9)
    assert len(dp.poll_upcalls(max_count=100)) == 3 + 1 + 2 + 3
    dp.set_upcall_limit(None)
    assert all(dp.receive(p, a, now=60.0)[0].fate is Fate.UPCALL for p in _scan(50))


@pytest.mark.bpf
@pytest.mark.netns
def test_kernel_budget_per_port() -> None:
    if not have_bpf():
        pytest.skip("needs root and clang")
    from netloom.datapath.bpf import BpfDatapath

    lab = Lab()
    try:
        ns = lab.ns("tb")
        # no IPv6 autoconfiguration chatter (router solicitations, MLD) on the veths: a
        # packet of its own reaching vma would take a token or be counted as throttled
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        lab.veth(ns, "vma", ns, "vmap")
        lab.veth(ns, "vmb", ns, "vmbp")
        dp = BpfDatapath(lab.host_name("tb"), netns=ns)
        try:
            a, b = dp.add_port("vma", PortKind.VM), dp.add_port("vmb", PortKind.VM)
            dp.set_upcall_limit(UpcallLimit(rate=1, burst=5))
            t0 = time.monotonic()
            for p in _scan(40):
                dp.test_run(p, a)
            elapsed = time.monotonic() - t0
            got = dp.poll_upcalls(timeout=0.2, max_count=1000)
            admitted = 5 + int(elapsed) + 1  # the burst, the refill, one of slack for races
            assert 5 <= len(got) <= admitted, (len(got), elapsed)
            assert dp.counters().upcalls_throttled == 40 - len(got)
            assert {u.in_port for u in got} == {a}
            # the other port still gets its first packet to the agent
            dp.test_run(_scan(1)[0], b)
            assert [u.in_port for u in dp.poll_upcalls(timeout=0.2)] == [b]
            # lifted: every miss reaches the agent again
            dp.set_upcall_limit(None)
            for p in _scan(20):
                dp.test_run(p, a)
            assert len(dp.poll_upcalls(timeout=0.2, max_count=1000)) == 20
            assert dp.counters().upcalls_lost == 0
        finally:
            dp.destroy()
    finally:
        lab.cleanup()
