"""`netloom bench datapath --flows N,...`: the kernel flow table at scale, one table per N
(``nl_flows`` sized to N plus a quarter: an LRU hash starts evicting a little before it is
full, each CPU keeping a few free entries of its own).

* ``install_per_s``: N exact 5-tuple flows through ``BpfDatapath.install`` in batches
  (BPF_MAP_UPDATE_BATCH), timing the installs only (building the flows is the simulation's).
* ``lookup_ns_by_flows``: BPF_PROG_TEST_RUN ns per packet (the least of three medians), each probe
  a different installed flow picked at random, one run per call: the flow's bucket and entry
  are as cold as traffic over many flows leaves them. ``_floor``: the same one-run calls on one
  flow (the timer, the program's own cold start); ``_hot``: one flow repeated ``HOT_REPEAT``
  times (all in cache); ``_masks`` (and ``_masks_hot``): when ``m - 1`` more specific masks
  (one flow each) are searched before the table's own mask.
* ``bytes_per_flow``: the map's ``memlock`` in fdinfo (the kernel's ``map_mem_usage``: the
  preallocated entries and the bucket array) over its ``max_entries``.
* ``eviction``: installs go on into the full table up to twice its size: the rate while
  evicting, the slowest batch against the median one, installs that failed (none expected).
* ``invalidation``: 10 000 flows of the largest table carry one tag in the agent's
  ``FlowTable``; the time of ``FlowInstaller.invalidate`` (the index, then one batched delete
  from the kernel) and how many of those flows the kernel still holds afterwards.
"""

from __future__ import annotations

import random
import statistics
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netloom.datapath.bpf.testrun import TC_ACT_REDIRECT
from netloom.errors import DatapathError, InvalidInput, NetloomError
from netloom.packet.checksum import checksum

if TYPE_CHECKING:
    from netloom.datapath.bpf import BpfDatapath
    from netloom.flows.model import Flow, FlowKey

MASKS = (1, 4, 16)
BATCH = 10_000  # flows per install call
PROBES = 3000  # random flows probed per spread measurement
ROUNDS = 3  # of PROBES // ROUNDS each
HOT_REPEAT = 200_000  # BPF_PROG_TEST_RUN repeat of the one-flow measurement
INVALIDATE = 10_000
_IP_SRC0 = 0x0A400000  # 10.64.0.0: flow i comes from 10.64.0.0 + i
_IP_DST = 0x0A010002
_TAG = "bench-invalidate"


def parse_sizes(text: str) -> list[int]:
    """``"1000,10000"`` -> [1000, 10000]; each in [1000, 4 000 000]."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InvalidInput(f"--flows takes numbers separated by commas, got {text!r}") from None
    if not sizes or any(not 1000 <= n <= 4_000_000 for n in sizes):
        raise InvalidInput("--flows: each size must be in [1000, 4000000]", field="flows")
    return sorted(set(sizes))


def table_size(n: int) -> int:
    """The ``nl_flows`` size that holds ``n`` flows (see the module docstring)."""
    return n + n // 4


@dataclass
class _Ports:
    a: int
    b: int
    mask: FlowKey


def _flow(p: _Ports, i: int) -> Flow:
    from netloom.flows.model import Flow, FlowKey, Output

    key = FlowKey(
        in_port=p.a,
        eth_type=0x800,
        ip_src=_IP_SRC0 + i,
        ip_dst=_IP_DST,
        ip_proto=17,
        tp_src=1024 + (i & 0x7FFF),
        tp_dst=9,
    )
    return Flow(key, p.mask, (Output(p.b),))


def _packet(i: int) -> bytes:
    """The UDP packet of flow ``i`` (VM a -> VM b, as ``_flow`` matches it)."""
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 33, 1, 0x4000, 64, 17, 0, _IP_SRC0 + i, _IP_DST)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]  # else dropped (RFC 1812 5.2.2)
    return eth + ip + struct.pack("!HHHH", 1024 + (i & 0x7FFF), 9, 13, 0) + b"hello"


def _chunks(p: _Ports, start: int, stop: int) -> Iterator[list[Flow]]:
    for i in range(start, stop, BATCH):
        yield [_flow(p, j) for j in range(i, min(i + BATCH, stop))]


@dataclass
class _Installed:
    seconds: float  # spent in ``install``
    batches: list[float]  # seconds per batch
    failed: int  # batches whose install raised


def install_range(dp: BpfDatapath, p: _Ports, start: int, stop: int) -> _Installed:
    """Install flows ``start..stop`` in batches of ``BATCH``."""
    batches: list[float] = []
    failed = 0
    for flows in _chunks(p, start, stop):
        t0 = time.perf_counter()
        try:
            dp.install(flows)
        except NetloomError:
            failed += 1
        batches.append(time.perf_counter() - t0)
    return _Installed(sum(batches), batches, failed)


def spread_ns(
    dp: BpfDatapath, p: _Ports, n: int, rng: random.Random, *, same: bool = False
) -> tuple[float, int]:
    """ns per packet over ``PROBES`` random flows among the first ``n`` (``same``: flow 0 every
    time, the floor of a one-run measurement): the least of ``ROUNDS`` medians (other processes
    only ever add time), and how many probes missed (an evicted flow: the packet went up to
    the agent instead)."""
    medians, missed = [], 0
    for _ in range(ROUNDS):
        runs = []
        for i in rng.choices(range(n), k=PROBES // ROUNDS):
            rc, _out, ns = dp.test_run(_packet(0 if same else i), p.a, repeat=1)
            runs.append(ns)
            missed += rc != TC_ACT_REDIRECT
        medians.append(statistics.median(runs))
    return float(min(medians)), missed


def hot_ns(dp: BpfDatapath, p: _Ports) -> float:
    """ns per packet of one flow repeated (median of 5 runs)."""
    runs = [dp.test_run(_packet(0), p.a, repeat=HOT_REPEAT)[2] for _ in range(5)]
    return float(statistics.median(runs))


def decoys(p: _Ports, m: int) -> list[Flow]:
    """``m - 1`` masks with more bits than the table's (searched first), one flow each, that
    no probe matches."""
    from netloom.flows.model import Flow, FlowKey

    out = []
    for k in range(1, m):
        mask = FlowKey(**{**_fields(p.mask), "eth_src": (1 << k) - 1})
        out.append(Flow(FlowKey(in_port=p.a, eth_src=(1 << k) - 1), mask, ()))
    return out


def _fields(k: FlowKey) -> dict[str, int]:
    return {f: getattr(k, f) for f in k.__dataclass_fields__}


def by_masks(
    dp: BpfDatapath, p: _Ports, n: int, rng: random.Random
) -> tuple[dict[str, float], dict[str, float]]:
    """Lookup ns, spread and one flow repeated, with 1, 4, 16 masks searched (the hit under
    the last one)."""
    spread: dict[str, float] = {}
    hot: dict[str, float] = {}
    for m in MASKS:
        extra = decoys(p, m)
        dp.install(extra)
        spread[str(m)] = spread_ns(dp, p, n, rng)[0]
        hot[str(m)] = hot_ns(dp, p)
        dp.delete([(f.key, f.mask) for f in extra])
    return spread, hot


def evict(dp: BpfDatapath, p: _Ports, n: int) -> dict[str, object]:
    """Install on past the table's size up to twice it (flows ``n..2 * size``)."""
    size = dp.map_info("nl_flows").max_entries
    fill = install_range(dp, p, n, size)
    full = install_range(dp, p, size, 2 * size)  # every install evicts
    return {
        "table": size,
        "installed": 2 * size,
        "install_per_s": round(size / full.seconds),
        "fill_install_per_s": round((size - n) / fill.seconds) if size > n else None,
        "batch_ms_p50": round(statistics.median(full.batches) * 1000, 2),
        "batch_ms_max": round(max(full.batches) * 1000, 2),
        "flows_after": dp.flow_count(),
        "failed_batches": fill.failed + full.failed,
    }


def invalidate(dp: BpfDatapath, p: _Ports, n: int) -> dict[str, object]:
    """Tag ``INVALIDATE`` of the table's first ``n`` flows in the agent's ``FlowTable`` and
    time ``FlowInstaller.invalidate`` of that tag."""
    from netloom.agent.flowtable import FlowTable
    from netloom.agent.installer import FlowInstaller
    from netloom.agent.metrics import AgentMetrics

    count = min(INVALIDATE, n)
    table = FlowTable()
    tagged = [_flow(p, i) for i in range(n - count, n)]
    dp.install(tagged)  # again: the eviction phase may have pushed them out
    for f in tagged:
        table.add(f, frozenset({_TAG, ("port", "a")}), "a", 0.0)
    stats = {"installed": 0, "invalidated": 0, "expired": 0}
    installer = FlowInstaller(dp, table, stats, AgentMetrics())
    before = dp.flow_count()
    t0 = time.perf_counter()
    gone = installer.invalidate([_TAG], "bench")
    ms = (time.perf_counter() - t0) * 1000
    left = sum(
        dp.test_run(_packet(i), p.a)[0] == TC_ACT_REDIRECT
        for i in range(n - count, n, max(1, count // 500))
    )
    return {
        "flows": gone,
        "ms": round(ms, 2),
        "kernel_flows_removed": before - dp.flow_count(),
        "still_forwarding_of_500_probed": left,
        "via": "agent FlowTable.invalidate + FlowInstaller -> BpfDatapath.delete "
        "(BPF_MAP_DELETE_BATCH)",
    }


def measure(dp: BpfDatapath, p: _Ports, n: int, rng: random.Random) -> dict[str, object]:
    """Every figure of one table of ``n`` flows (see the module docstring)."""
    done = install_range(dp, p, 0, n)
    if done.failed:
        raise DatapathError(f"{done.failed} install batches failed into a table of {n} flows")
    kept = dp.flow_count()
    spread, missed = spread_ns(dp, p, n, rng)
    masks, masks_hot = by_masks(dp, p, n, rng)
    info = dp.map_info("nl_flows")
    return {
        "install_per_s": round(n / done.seconds),
        "flows_kept": kept,
        "lookup_ns": spread,
        "lookup_missed": missed,
        "lookup_ns_floor": spread_ns(dp, p, n, rng, same=True)[0],
        "lookup_ns_hot": hot_ns(dp, p),
        "lookup_ns_masks": masks,
        "lookup_ns_masks_hot": masks_hot,
        "bytes_per_flow": round(info.memlock / info.max_entries, 1),
        "memlock_mb": round(info.memlock / 2**20, 1),
    }


def summary(per_n: dict[int, dict[str, object]], sizes: Sequence[int]) -> dict[str, object]:
    """The JSON of the run: figures by N, the largest table's headline figures, the goals."""

    def col(k: str) -> dict[str, object]:
        return {str(n): per_n[n][k] for n in sizes}

    lo, hi = per_n[sizes[0]], per_n[sizes[-1]]
    ratio = float(str(hi["lookup_ns"])) / float(str(lo["lookup_ns"]))
    hot = float(str(hi["lookup_ns_hot"])) / float(str(lo["lookup_ns_hot"]))
    return {
        "lookup_ns_by_flows": col("lookup_ns"),
        "lookup_ns_by_flows_floor": col("lookup_ns_floor"),
        "lookup_ns_by_flows_hot": col("lookup_ns_hot"),
        "lookup_ns_by_flows_masks": col("lookup_ns_masks"),
        "lookup_ns_by_flows_masks_hot": col("lookup_ns_masks_hot"),
        "lookup_missed_by_flows": col("lookup_missed"),
        "install_per_s": hi["install_per_s"],
        "install_per_s_by_flows": col("install_per_s"),
        "flows_kept_by_flows": col("flows_kept"),
        "bytes_per_flow": hi["bytes_per_flow"],
        "bytes_per_flow_by_flows": col("bytes_per_flow"),
        "bytes_per_flow_source": "fdinfo memlock / max_entries",
        "memlock_mb_by_flows": col("memlock_mb"),
        "eviction": hi["eviction"],
        "invalidation": hi["invalidation"],
        "goals": {
            f"lookup {sizes[-1]} vs {sizes[0]} flows <= 1.5x": round(ratio, 2),
            f"lookup {sizes[-1]} vs {sizes[0]} flows, one flow repeated": round(hot, 2),
            "install >= 100000/s": hi["install_per_s"],
        },
    }


def run(sizes: Sequence[int], seed: int = 1) -> dict[str, object]:
    """One throw-away table per size in a throw-away namespace; returns the figures."""
    from netloom.bench.datapath import _flow_mask, _lab
    from netloom.datapath.base import PortKind
    from netloom.datapath.bpf import BpfDatapath
    from netloom.datapath.bpf.loader import FLOWS

    rng = random.Random(seed)
    per_n: dict[int, dict[str, object]] = {}
    with _lab() as lab:
        for n in sizes:
            dp = BpfDatapath(lab.prefix, netns=lab.host, max_entries={FLOWS: table_size(n)})
            try:
                p = _Ports(
                    dp.add_port("ha", PortKind.VM), dp.add_port("hb", PortKind.VM), _flow_mask()
                )
                per_n[n] = measure(dp, p, n, rng)
                if n == sizes[-1]:
                    per_n[n]["eviction"] = evict(dp, p, n)
                    per_n[n]["invalidation"] = invalidate(dp, p, n)
            finally:
                dp.destroy()
    return summary(per_n, sizes)


__all__ = ["parse_sizes", "run", "table_size"]
