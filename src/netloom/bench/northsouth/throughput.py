"""TCP_STREAM, TCP_MAERTS, TCP_RR and TCP_CRR from the external host, through netloom's
gateways to a floating IP and through a kernel-routed baseline (:mod:`.paths`), with
``bench perf``'s workloads, servers, CPU pinning and figures: both paths are up for the whole
run, each rep runs every test on both in turn, a ratio is the median over reps of netloom /
baseline of the same rep (:mod:`netloom.bench.perf.summary`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netloom.bench.northsouth.paths import NetloomPath, RoutedPath
from netloom.bench.northsouth.world import World
from netloom.bench.perf import summary
from netloom.bench.perf.live import Live, measure
from netloom.bench.perf.setups import Setup
from netloom.bench.perf.workloads import TESTS, CrrParams, Pin, Servers, prepare_client
from netloom.bench.procs import Progress

NAMES = ("bare", "netloom")


@contextlib.contextmanager
def paths_up(
    world: World, crr: CrrParams, pin: Pin, progress: Progress
) -> Iterator[dict[str, Live]]:
    """Both paths up with their servers; torn down however the block ends."""
    live: dict[str, Live] = {}
    with contextlib.ExitStack() as stack:
        setups: list[Setup] = [RoutedPath(world), NetloomPath(world, world.targets[0])]
        for setup in setups:
            stack.callback(setup.down)
            progress(f"up {setup.name}")
            ep = setup.up()
            prepare_client(ep.client_netns)
            servers = Servers(ep, crr, pin)
            stack.callback(servers.stop)
            servers.start()
            live[setup.name] = Live(setup, ep, servers)
        yield live


@dataclass(frozen=True)
class Load:
    """What the throughput part runs: ``tests``, ``reps`` interleaved, ``duration`` seconds
    each, the CRR tool's load."""

    tests: tuple[str, ...] = TESTS
    reps: int = 3
    duration: int = 5
    crr: CrrParams = field(default_factory=CrrParams)


def run(world: World, load: Load, progress: Progress) -> dict[str, Any]:
    """Interleaved reps of the tests on both paths; ratios, medians, ranges."""
    pin = Pin.two_machines()
    tests, reps, duration, crr = load.tests, load.reps, load.duration, load.crr
    with paths_up(world, crr, pin, progress) as live:
        results: list[dict[str, dict[str, Any]]] = []
        for rep in range(reps):
            row: dict[str, dict[str, Any]] = {n: {} for n in NAMES}
            for test in tests:
                for name in NAMES:
                    progress(f"rep {rep + 1}/{reps} {test} {name}")
                    row[name][test] = measure(live[name], test, duration, crr)
            results.append(row)
    return {
        "ratios": summary.ratios(results, NAMES, tests)["netloom"],
        "ratio_range": summary.ratio_ranges(results, NAMES, tests)["netloom"],
        "medians": summary.medians(results, NAMES, tests),
        "ranges": summary.value_ranges(results, NAMES, tests),
        "rr_half_rtt_us": summary.rr_latency(results, NAMES) if "tcp_rr" in tests else {},
        "upcalls_per_setup": (
            summary.upcalls_per_setup(results, NAMES) if "tcp_crr" in tests else {}
        ),
        "pin": {"client_cpu": pin.client_cpu, "server_cpu": pin.server_cpu},
        "reps": results,
    }


__all__ = ["NAMES", "Load", "paths_up", "run"]
