"""``netloom bench northsouth``: north-south traffic through a lab's gateways.

One lab (``lab up --datapath bpf --gateways N``, :mod:`.world`), then, in this order, each
once the lab has settled:

1. spread (:mod:`.spread`): 600 connections from the external host to the floating IPs,
   counted per gateway on the upstream's uplink cables;
2. throughput (:mod:`.throughput`): TCP_STREAM / MAERTS / RR / CRR through the gateways to a
   floating IP, as ratios to a kernel-routed path in the same run;
3. failover (:mod:`.failover`): a gateway's agent killed and its uplink down under load;
4. learned routes (:mod:`.routes`): 1000 prefixes from the upstream into the NSDB and every
   live gateway agent's simulation, and out again (last: a route storm is the heaviest load
   on the lab; after a failover, over the gateways left).

A part that fails (say the floating IPs are not reachable) leaves its figures null and its
error in ``errors``; the others still run. ``--json`` prints exactly ``{"gateways", "ratios",
"spread": {"min", "max"}, "failover": {"gap_ms", "survived_other", "survived_dead",
"new_conn_ms"}, "learned_routes": {"announce_ms", "withdraw_ms"}}``; ``--detail`` adds what
each figure was measured from under ``detail``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netloom.bench.northsouth import failover, routes, spread, throughput
from netloom.bench.northsouth.world import World
from netloom.bench.perf.workloads import TESTS
from netloom.bench.procs import Progress, machine
from netloom.bench.report import key_values
from netloom.errors import InvalidInput, NetloomError
from netloom.lab.addressing import MAX_GATEWAYS

PARTS = ("spread", "throughput", "failover", "routes")


@dataclass
class Options:
    gateways: int = 6
    hosts: int = 2
    parts: tuple[str, ...] = PARTS
    load: throughput.Load = field(default_factory=throughput.Load)
    connections: int = 600
    spread_wait: float = 2.0
    prefixes: int = 1000
    route_timeout: float = 10.0
    streams_per_gateway: int = 4
    before: float = 2.0
    after: float = 5.0

    def validate(self) -> None:
        if not 2 <= self.gateways <= MAX_GATEWAYS:
            raise InvalidInput(f"--gateways must be 2..{MAX_GATEWAYS}", field="gateways")
        load = self.load
        if min(self.hosts, load.reps, load.duration, self.connections) < 1:
            raise InvalidInput("hosts, reps, duration and connections must be >= 1")
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise InvalidInput(f"--parts takes some of {', '.join(PARTS)}", field="parts")
        if not load.tests or any(t not in TESTS for t in load.tests):
            raise InvalidInput(f"--tests takes some of {', '.join(TESTS)}", field="tests")
        routes.prefixes(self.prefixes)


@dataclass
class _Parts:
    """Runs the parts in turn, each once the lab has settled, keeping what failed."""

    world: World
    opts: Options
    progress: Progress
    errors: dict[str, str] = field(default_factory=dict)
    settled: dict[str, float] = field(default_factory=dict)  # seconds waited before each

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self.opts.parts:
            return None
        self.progress(f"{name} ...")
        try:
            self.settled[name] = round(self.world.settle(), 2)
            return fn()
        except (NetloomError, OSError) as exc:
            self.errors[name] = getattr(exc, "message", None) or str(exc)
            self.progress(f"{name} failed: {self.errors[name]}")
            return None


def run(opts: Options, progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Build the lab, run the parts, tear everything down; every figure."""
    opts.validate()
    started = time.time()
    world = World(opts.gateways, opts.hosts)
    jobs: dict[str, Callable[[], Any]] = {
        "spread": lambda: spread.measure(world, opts.connections, opts.spread_wait),
        "throughput": lambda: throughput.run(world, opts.load, progress),
        "failover": lambda: failover.measure(
            world, opts.streams_per_gateway, opts.before, opts.after
        ),
        "routes": lambda: routes.measure(world, opts.prefixes, opts.route_timeout),
    }
    try:
        world.up(progress)
        parts = _Parts(world, opts, progress)
        got = {name: parts.run(name, fn) for name, fn in jobs.items()}
    finally:
        world.down()
    return {
        **figures(opts, got),
        "detail": {
            **got,
            "errors": parts.errors,
            "settle_s": parts.settled,
            "lab": world.lab.name,
            "machine": machine(),
            "params": _params(opts),
            "elapsed_s": round(time.time() - started, 1),
        },
    }


def figures(opts: Options, got: dict[str, Any]) -> dict[str, Any]:
    """The issue's JSON shape from the parts' results (null where a part did not run)."""
    tp, sp, fo, lr = (got.get(k) or {} for k in ("throughput", "spread", "failover", "routes"))
    ratios = tp.get("ratios") or {}
    return {
        "gateways": opts.gateways,
        "ratios": {t: ratios.get(t) for t in TESTS},
        "spread": {"min": sp.get("min"), "max": sp.get("max")},
        "failover": {
            k: fo.get(k) for k in ("gap_ms", "survived_other", "survived_dead", "new_conn_ms")
        },
        "learned_routes": {k: lr.get(k) for k in ("announce_ms", "withdraw_ms")},
    }


def _params(opts: Options) -> dict[str, Any]:
    return {
        "gateways": opts.gateways,
        "hosts": opts.hosts,
        "parts": list(opts.parts),
        "tests": list(opts.load.tests),
        "reps": opts.load.reps,
        "duration_s": opts.load.duration,
        "crr_procs": opts.load.crr.procs,
        "crr_conc": opts.load.crr.conc,
        "connections": opts.connections,
        "prefixes": opts.prefixes,
        "streams_per_gateway": opts.streams_per_gateway,
        "failover_before_s": opts.before,
        "failover_after_s": opts.after,
    }


def render(res: dict[str, Any]) -> str:
    """The figures as text, then the measurements behind them."""
    d = res["detail"]
    rows: list[tuple[str, object]] = [("gateways", res["gateways"])]
    rows += [(f"ratio {t}", _num(r)) for t, r in res["ratios"].items()]
    sp = d.get("spread") or {}
    rows.append(("spread per gateway", sp.get("per_gateway")))
    rows.append(("spread min / max", f"{res['spread']['min']} / {res['spread']['max']}"))
    rows += [(f"failover {k}", _num(v)) for k, v in res["failover"].items()]
    rows += [(f"learned routes {k}", _num(v)) for k, v in res["learned_routes"].items()]
    tp = d.get("throughput") or {}
    for name, med in (tp.get("medians") or {}).items():
        rows += [(f"{name} {t} (median)", _num(v)) for t, v in med.items()]
    rows += [(f"error {k}", v) for k, v in d["errors"].items()]
    rows.append(("elapsed s", d["elapsed_s"]))
    return key_values(rows)


def _num(v: object) -> object:
    return round(v, 3) if isinstance(v, float) else v


__all__ = ["PARTS", "Options", "figures", "render", "run"]
