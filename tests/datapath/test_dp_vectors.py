"""The shared flow test vectors against both datapaths (memory: directly; bpf: through
BPF_PROG_TEST_RUN in a throw-away namespace)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netloom.datapath.base import Fate, Outcome, PortKind, TunnelSettings
from netloom.datapath.bpf import BpfDatapath
from netloom.datapath.memory import MemoryDatapath

from .conftest import Lab, have_bpf, in_ns
from .dpvectors import PORTS, VECTORS, Vector, resolve
from .edgevectors import EDGE_VECTORS

ALL = [*VECTORS, *EDGE_VECTORS]

KINDS = {"vm": PortKind.VM}


def _memory_run(v: Vector) -> tuple[list[Outcome], list[Outcome]]:
    dp = MemoryDatapath()
    ports = {n: dp.add_port(n, KINDS[k], mtu=mtu) for n, k, mtu in PORTS}
    dp.set_tunnel(TunnelSettings(local_ip=0xC0000201))
    dp.install(v.flows(ports))
    return dp.receive(v.packet, ports[v.in_port], now=1.0), resolve(v, ports)


@pytest.mark.unit
@pytest.mark.parametrize("v", ALL, ids=[v.name for v in ALL])
def test_vector_memory(v: Vector) -> None:
    got, want = _memory_run(v)
    assert got == want


@pytest.fixture(scope="module")
def bpf_env() -> Iterator[tuple[BpfDatapath, dict[str, int]]]:
    if not have_bpf():
        pytest.skip("needs root and clang")
    lab = Lab()
    try:
        ns = lab.ns("vec")
        for name, _k, mtu in PORTS:
            lab.veth(ns, name, ns, f"{name}p", mtu=mtu)
        dp = BpfDatapath(lab.host_name("vec"), netns=ns, trace=True)
        try:
            ports = {n: dp.add_port(n, KINDS[k], mtu=mtu) for n, k, mtu in PORTS}
            dp.set_tunnel(TunnelSettings(local_ip=0xC0000201, udp_port=4789))
            assert in_ns(ns, "tc", "filter", "show", "dev", "vm1", "ingress").stdout
            yield dp, ports
        finally:
            dp.destroy()
    finally:
        lab.cleanup()


@pytest.mark.bpf
@pytest.mark.parametrize("v", [v for v in ALL if v.bpf], ids=[v.name for v in ALL if v.bpf])
def test_vector_bpf(v: Vector, bpf_env: tuple[BpfDatapath, dict[str, int]]) -> None:
    dp, ports = bpf_env
    flows = v.flows(ports)
    dp.install(flows)
    try:
        got = dp.run_outcome(v.packet, ports[v.in_port])
    finally:
        dp.delete([(f.key, f.mask) for f in flows])
    want = resolve(v, ports)
    assert got == want
    assert dp.flow_count() == 0


@pytest.mark.bpf
def test_bpf_counts_hits(bpf_env: tuple[BpfDatapath, dict[str, int]]) -> None:
    dp, ports = bpf_env
    v = VECTORS[0]
    flows = v.flows(ports)
    dp.install(flows)
    try:
        for _ in range(3):
            assert dp.run_outcome(v.packet, ports["vm1"])[0].fate == Fate.OUTPUT
        [(flow, stats)] = dp.dump()
        assert flow == flows[0]
        assert (stats.packets, stats.bytes) == (3, 3 * len(v.packet))
    finally:
        dp.delete([(f.key, f.mask) for f in flows])


def _edge_counts(dp: MemoryDatapath | BpfDatapath) -> tuple[int, int]:
    c = dp.counters()
    return c.ip_header_errors, c.tagged_dropped


def _count_edge_drops(dp: MemoryDatapath | BpfDatapath, ports: dict[str, int]) -> None:
    """Each edge drop is counted by its reason; a packet with options is no drop."""
    by_name = {v.name: v for v in EDGE_VECTORS}
    before = _edge_counts(dp)
    flows = by_name["bad-ip-checksum-dropped"].flows(ports)
    dp.install(flows)
    try:
        for name in ("bad-ip-checksum-dropped", "ip-ihl-4-dropped", "tagged-8021ad-dropped"):
            run = dp.receive if isinstance(dp, MemoryDatapath) else dp.run_outcome
            assert run(by_name[name].packet, ports["vm1"])[0].fate == Fate.DROP
    finally:
        dp.delete([(f.key, f.mask) for f in flows])
    ip_errors, tagged = _edge_counts(dp)
    assert (ip_errors - before[0], tagged - before[1]) == (2, 1)


@pytest.mark.unit
def test_edge_drops_are_counted_memory() -> None:
    dp = MemoryDatapath()
    ports = {n: dp.add_port(n, KINDS[k], mtu=mtu) for n, k, mtu in PORTS}
    _count_edge_drops(dp, ports)


@pytest.mark.bpf
def test_edge_drops_are_counted_bpf(bpf_env: tuple[BpfDatapath, dict[str, int]]) -> None:
    _count_edge_drops(*bpf_env)
