"""``netloom bench sim --trace-log``: the simulation rate with the simulation log on and off.

With the log on, each simulation of the paths of :mod:`netloom.bench.sim_paths` is recorded as
the agent records it (:meth:`netloom.agent.simlog.SimLog.sim`) and every :data:`DRAIN` entries
are drained as the agent's driver drains them: stamped, written to a rotated JSON-lines file in
a temporary directory, and encoded as the topology frames that ship them. Off and on runs
alternate (``ROUNDS`` each, the best of each kept), so that a slower moment of the machine does
not fall on one side only, and rates are per CPU second of this process (other work on the
machine does not count against either side). ``trace_log_ratio`` is the worst path's on/off
ratio.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netloom.agent.simlog import SimLog, SimLogFile, SimLogOutlet
from netloom.bench.sim_paths import NOW, SCENARIOS, Scenario
from netloom.errors import InvalidInput
from netloom.sim import Verdict, simulate

TRACE_LOG_GOAL = 0.9  # rate with the log on / rate with it off, at least
ROUNDS = 6
DRAIN = 1000  # entries between two drains (the agent drains every tick)


def _ship(data: bytes) -> bool:
    return True  # the frame is made: the client would write it


def _run(sc: Scenario, seconds: float, first: int, log: SimLogOutlet | None) -> float:
    """Simulations per CPU second (this process's, user + system: the file writes count)
    for ``seconds`` of it; ``log``: with the simulation log."""
    simlog = SimLog(enabled=log is not None)
    n, i = 0, first
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            r = simulate(sc.packet(i), sc.in_port, sc.topo, sc.state, NOW)
            sc.state.apply(r.changes)
            simlog.sim(NOW, sc.in_port, "miss", r)
            i += 1
        n += 200
        done = time.process_time() >= deadline
        if log is not None and (done or n % DRAIN == 0):
            log.drain(simlog.take(), _ship)
        if done:
            return n / (time.process_time() - start)


def _compare(make: Callable[[], Scenario], seconds: float, directory: Path) -> tuple[float, float]:
    """(best rate off, best rate on) of one path."""
    sc = make()
    for i in range(200):  # warm the compile cache; the path decides as it should
        if sc.run_one(i) is not Verdict.FORWARD:
            raise InvalidInput(f"bench scenario {make.__name__} does not forward")
    out = SimLogOutlet(SimLogFile(directory))
    off = on = 0.0
    first = 1000
    try:
        for _ in range(ROUNDS):
            off = max(off, _run(sc, seconds / ROUNDS, first, None))
            first += 10_000_000
            on = max(on, _run(sc, seconds / ROUNDS, first, out))
            first += 10_000_000
    finally:
        out.close()
    return off, on


def run_trace_log(seconds: float) -> dict[str, Any]:
    """Per path: sims/s off and on and their ratio; ``trace_log_ratio``: the worst ratio."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="netloom-simlog-") as tmp:
        for key, make in SCENARIOS.items():
            name = _path(key)
            off, on = _compare(make, seconds, Path(tmp) / name)
            result[f"{name}_log_off_per_s"] = round(off, 1)
            result[f"{name}_log_on_per_s"] = round(on, 1)
            result[f"{name}_log_ratio"] = round(on / off, 3)
    result["trace_log_ratio"] = min(result[f"{_path(k)}_log_ratio"] for k in SCENARIOS)
    return result


def _path(key: str) -> str:
    """``l2`` for the ``l2_per_s`` path."""
    return key.removesuffix("_per_s")


def trace_log_table(result: dict[str, Any]) -> list[str]:
    lines = [f"{'path':<14} {'log off':>12} {'log on':>12} {'ratio':>7}"]
    for name in map(_path, SCENARIOS):
        lines.append(
            f"{name:<14} {result[f'{name}_log_off_per_s']:>12,.0f}"
            f" {result[f'{name}_log_on_per_s']:>12,.0f} {result[f'{name}_log_ratio']:>7.3f}"
        )
    lines.append(f"trace_log_ratio {result['trace_log_ratio']:.3f}  (goal >= {TRACE_LOG_GOAL})")
    return lines


__all__ = ["ROUNDS", "TRACE_LOG_GOAL", "run_trace_log", "trace_log_table"]
