"""One run of one test on a setup that is up, with what its agents did meanwhile.

Agent CPU time is the delta of ``utime + stime`` (``/proc/<pid>/stat`` fields 14 and 15) of
the setup's agent PIDs around the test; upcalls, flows installed and expired and flow-state
pushes are the deltas of the agents' counters (:meth:`~netloom.bench.perf.setups.Setup.observe`),
flows held and resident memory their levels after the test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netloom.bench.perf.setups import OBSERVED_COUNTERS, OBSERVED_LEVELS, Endpoints, Setup
from netloom.bench.perf.workloads import CrrParams, Servers, run_test
from netloom.bench.procs import cpu_seconds


@dataclass
class Live:
    """A setup that is up, with its servers, and what its agents did over the whole run."""

    setup: Setup
    ep: Endpoints
    servers: Servers
    agent_cpu_s: float | None = None  # None: the setup has no agent
    upcalls: int | None = None  # None: the setup has no upcall counter


def measure(lv: Live, test: str, duration: int, crr: CrrParams) -> dict[str, Any]:
    """Run ``test`` once: its value, the tool's details, the agents' CPU time and upcalls
    (None without agents) and ``agents``: the counters' deltas and the levels after."""
    pids = lv.setup.agent_pids()
    cpu0, up0, seen0 = cpu_seconds(pids), lv.setup.upcalls(), lv.setup.observe()
    m = run_test(test, lv.ep, duration, crr, lv.servers)
    cpu = cpu_seconds(pids) - cpu0 if pids else None
    up1, seen1 = lv.setup.upcalls(), lv.setup.observe()
    upcalls = up1 - up0 if up0 is not None and up1 is not None else None
    if cpu is not None:
        lv.agent_cpu_s = (lv.agent_cpu_s or 0.0) + cpu
    if upcalls is not None:
        lv.upcalls = (lv.upcalls or 0) + upcalls
    return {
        "value": m.value,
        "agent_cpu_s": cpu,
        "upcalls": upcalls,
        "agents": _agents(seen0, seen1),
        **m.detail,
    }


def _agents(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    out = {k: after[k] - before[k] for k in OBSERVED_COUNTERS}
    out.update({k: after[k] for k in OBSERVED_LEVELS})
    return out


__all__ = ["Live", "measure"]
