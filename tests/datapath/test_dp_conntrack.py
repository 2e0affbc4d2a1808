"""The conntrack vectors (ctvectors.py) against both datapaths, plus the table's own rules
(lifetimes, refresh, LRU bound) on the reference table."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest

from netloom.datapath.base import Fate, Outcome, PortKind, TunnelSettings
from netloom.datapath.bpf import BpfDatapath, abi
from netloom.datapath.conntrack import Conntrack, ConntrackSettings, ct_tuple
from netloom.datapath.memory import MemoryDatapath
from netloom.errors import InvalidInput
from netloom.flows.model import CT_EST, CT_NEW, CT_RPL, FlowKey

from .conftest import Lab, have_bpf, in_ns
from .ctvectors import CT_VECTORS, VNI, CtVector, Row, Step, named
from .dpvectors import PORTS, Ports, frame

LOCAL_UL = 0xC0000201  # 192.0.2.1, the vectors' TUNNEL_REMOTE is 192.0.2.2
Got = tuple[Fate, str, int, bytes | None]


def summary(outs: list[Outcome], ports: Ports) -> list[Got]:
    names = {n: name for name, n in ports.items()}
    out: list[Got] = []
    for o in outs:
        if o.fate == Fate.OUTPUT:
            out.append((o.fate, names.get(o.port, "?"), 0, o.packet))
        elif o.fate == Fate.TUNNEL:
            out.append((o.fate, "", o.vni, None))
        else:
            out.append((o.fate, "", 0, None))
    return out


def expected(s: Step) -> list[Got]:
    if s.fate == Fate.OUTPUT:
        return [(s.fate, s.port, 0, s.packet if s.out is None else s.out)]
    if s.fate == Fate.TUNNEL:
        return [(s.fate, "", s.vni, None)]
    return [(s.fate, "", 0, None)]


def check_result(
    v: CtVector, got: list[list[Got]], table: set[Row], deltas: tuple[int, int]
) -> None:
    assert got == [expected(s) for s in v.steps]
    assert table == v.table
    assert deltas == (v.commits, v.lost)


@pytest.mark.unit
@pytest.mark.parametrize("v", CT_VECTORS, ids=[v.name for v in CT_VECTORS])
def test_ct_vector_memory(v: CtVector) -> None:
    dp = MemoryDatapath()
    ports = {n: dp.add_port(n, PortKind.VM, mtu=mtu) for n, _k, mtu in PORTS}
    tun = dp.set_tunnel(TunnelSettings(local_ip=LOCAL_UL))
    dp.bind_tunnel_key(VNI, ports["vm1"])
    dp.install(v.flows(ports))
    t, got = 100.0, []
    for s in v.steps:
        t += s.age + 0.001
        if s.in_port == "tun":
            outs = dp.receive(s.packet, tun, tun_key=s.vni, now=t)
        else:
            outs = dp.receive(s.packet, ports[s.in_port], now=t)
        got.append(summary(outs, ports))
    c = dp.counters()
    check_result(v, got, named(dp.ct.entries(), ports, t), (c.ct_commits, c.ct_lost))
    dp.set_clock(t)
    for tup, e in dp.ct.entries().items():  # the read-only lookup agrees with the table
        assert (dp.conntrack_entry(tup) is not None) == (e.expires > t)


# ---- the kernel, through BPF_PROG_TEST_RUN ---------------------------------------------------


def vxlan(inner: bytes, vni: int) -> bytes:
    """Outer Ethernet/IPv4/UDP/VXLAN (RFC 7348) from 192.0.2.2 to the vectors' host."""
    udp_len = 8 + 8 + len(inner)
    iph = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_len,
        1,
        0,
        64,
        17,
        0,
        bytes([192, 0, 2, 2]),
        bytes([192, 0, 2, 1]),
    )
    udp = struct.pack("!HHHH", 49152, 4789, udp_len, 0)
    vx = struct.pack("!II", 0x08000000, vni << 8)
    eth = bytes.fromhex("020000000101") + bytes.fromhex("020000000102") + b"\x08\x00"
    return eth + iph + udp + vx + inner


@pytest.fixture(scope="module")
def ct_env() -> Iterator[tuple[BpfDatapath, Ports, int]]:
    if not have_bpf():
        pytest.skip("needs root and clang")
    lab = Lab()
    try:
        ns = lab.ns("ct")
        for name, _k, mtu in PORTS:
            lab.veth(ns, name, ns, f"{name}p", mtu=mtu)
        lab.veth(ns, "ul", ns, "ulp")
        in_ns(ns, "ip", "addr", "add", "192.0.2.1/24", "dev", "ul")
        dp = BpfDatapath(lab.host_name("ct"), netns=ns, trace=True)
        try:
            ports = {n: dp.add_port(n, PortKind.VM, mtu=mtu) for n, _k, mtu in PORTS}
            dp.set_tunnel(TunnelSettings(local_ip=LOCAL_UL, udp_port=4789))
            dp.bind_tunnel_key(VNI, ports["vm1"])
            ul = int(in_ns(ns, "ip", "-o", "link", "show", "ul").stdout.split(":")[0])
            yield dp, ports, ul
        finally:
            dp.destroy()
    finally:
        lab.cleanup()


def age_kernel(dp: BpfDatapath, seconds: float) -> None:
    m = dp._loader.map("nl_ct")
    d = int(seconds * 1e9)
    for k, v in m.items(abi.CT_KEY.size, abi.CT_ENTRY.size):
        exp, ref, flags, pad = abi.CT_ENTRY.unpack(v)
        m.update(k, abi.CT_ENTRY.pack(max(1, exp - d), max(1, ref - d), flags, pad))


def flush_kernel(dp: BpfDatapath) -> None:
    m = dp._loader.map("nl_ct")
    for k, _v in m.items(abi.CT_KEY.size, abi.CT_ENTRY.size):
        m.delete(k)


@pytest.mark.bpf
@pytest.mark.parametrize("v", CT_VECTORS, ids=[v.name for v in CT_VECTORS])
def test_ct_vector_bpf(v: CtVector, ct_env: tuple[BpfDatapath, Ports, int]) -> None:
    dp, ports, ul = ct_env
    flush_kernel(dp)
    flows = v.flows(ports)
    dp.install(flows)
    before = dp.counters()
    try:
        got = []
        for s in v.steps:
            if s.age:
                age_kernel(dp, s.age)
            if s.in_port == "tun":
                outs = dp.run_outcome(vxlan(s.packet, s.vni), ul)
            else:
                outs = dp.run_outcome(s.packet, ports[s.in_port])
            got.append(summary(outs, ports))
        table = named(dp.conntrack(), ports, time.monotonic())
        now = time.monotonic()
        for t, e in dp.conntrack().items():  # the read-only lookup agrees with the dump
            if e.expires > now + 1 or e.expires < now:
                assert (dp.conntrack_entry(t) is not None) == (e.expires > now)
    finally:
        dp.delete([(f.key, f.mask) for f in flows])
    c = dp.counters()
    check_result(v, got, table, (c.ct_commits - before.ct_commits, c.ct_lost - before.ct_lost))


# ---- the reference table's own rules ----------------------------------------------------------


def _key(sport: int = 40000, flags_proto: int = 6) -> FlowKey:
    return FlowKey(ip_src=1, ip_dst=2, ip_proto=flags_proto, tp_src=sport, tp_dst=80)


@pytest.mark.unit
def test_lifetimes_refresh_at_most_once_a_second_and_closing_is_final() -> None:
    ct = Conntrack(ConntrackSettings(tcp_established_s=100, tcp_closing_s=5, other_s=30))
    ct.commit(ct_tuple(_key(), 7), reply=False, closing=False, now=0.0)
    e = ct.entries()[ct_tuple(_key(), 7)]
    assert e.expires == 100.0
    assert ct.lookup(_key(), 7, 0x10, 0.5) == CT_EST
    assert e.expires == 100.0  # not yet refreshed: less than a second
    ct.lookup(_key(), 7, 0x10, 2.0)
    assert e.expires == 102.0
    ct.lookup(_key(), 7, 0x11, 3.0)  # FIN
    assert (e.closing, e.expires) == (True, 8.0)
    ct.lookup(_key(), 7, 0x10, 6.0)
    assert e.expires == 8.0  # a closing entry is never extended
    assert ct.lookup(_key(), 7, 0x10, 8.0) == CT_NEW  # expired: absent (and counted lost)
    assert (len(ct), ct.lost) == (0, 1)


@pytest.mark.unit
def test_reply_direction_and_non_tcp_lifetime() -> None:
    ct = Conntrack(ConntrackSettings(other_s=30))
    udp = _key(flags_proto=17)
    ct.commit(ct_tuple(udp, 3, reverse=True), reply=True, closing=False, now=0.0)
    back = FlowKey(ip_src=2, ip_dst=1, ip_proto=17, tp_src=80, tp_dst=40000)
    assert ct.lookup(back, 3, 0, 29.0) == CT_EST | CT_RPL
    assert ct.lookup(back, 3, 0, 60.0) == CT_NEW


@pytest.mark.unit
def test_full_table_evicts_the_least_recently_used() -> None:
    ct = Conntrack(ConntrackSettings(max_entries=2))
    for sport in (1, 2):
        ct.commit(ct_tuple(_key(sport), 1), reply=False, closing=False, now=0.0)
    assert ct.lookup(_key(1), 1, 0x10, 0.1) == CT_EST  # 1 is now the most recently used
    ct.commit(ct_tuple(_key(3), 1), reply=False, closing=False, now=0.2)
    assert {t[4] for t in ct.entries()} == {1, 3}
    assert ct.commits == 3


@pytest.mark.unit
@pytest.mark.parametrize(
    "kw", [{"max_entries": 0}, {"tcp_closing_s": 0}, {"other_s": -1}, {"max_entries": 1 << 30}]
)
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        ConntrackSettings(**kw)  # type: ignore[arg-type]


@pytest.mark.unit
def test_miss_upcall_carries_ct_state() -> None:
    dp = MemoryDatapath()
    port = dp.add_port("vm1", PortKind.VM)
    dp.receive(frame(), port, now=1.0)
    [up] = dp.poll_upcalls()
    assert up.ct_state == CT_NEW
