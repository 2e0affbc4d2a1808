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

KINDS = {"vm": PortKind.VM}


def _memory_run(v: Vector) -> tuple[list[Outcome], list[Outcome]]:
    dp = MemoryDatapath()
    ports = {n: dp.add_port(n, KINDS[k], mtu=mtu) for n, k, mtu in PORTS}
    dp.set_tunnel(TunnelSettings(local_ip=0xC0000201))
    dp.install(v.flows(ports))
    return dp.receive(v.packet, ports[v.in_port], now=1.0), resolve(v, ports)


@pytest.mark.unit
@pytest.mark.parametrize("v", VECTORS, ids=[v.name for v in VECTORS])
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
@pytest.mark.parametrize("v", [v for v in VECTORS if v.bpf], ids=[v.name for v in VECTORS if v.bpf])
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
