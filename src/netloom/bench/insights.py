"""``netloom bench insights``: the flow history at scale.

Synthetic records of a day of a cloud (:mod:`netloom.bench.insights_records`) are fed to the
real store (:class:`~netloom.insights.history.FlowHistory` on a DuckDB file in a temporary
directory) in agent-sized batches, then the UI's queries run against it:

* ``ingest_per_s``: records per second through ``ingest`` (the final write included; making
  the records is not timed). Goal >= 50 000.
* ``query_p99_ms``: the p99 over the runs of three queries — top talkers over every flow, one
  VM's flows (a page of 100), drops by rule (one-minute buckets) — each with varying
  arguments. Goal <= 200 ms. ``queries_p99_ms`` has each query's own.
* ``bytes_per_million_flows``: the file's size, scaled to a million flows.
* ``ingest_per_cpu_s``, ``query_p99_cpu_ms``: the same on this process's CPU time (DuckDB's
  threads included), which a machine shared with other work does not inflate.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import typer

from netloom.bench.insights_records import DAY_S, Cloud, records
from netloom.bench.stats import percentile
from netloom.errors import InvalidInput
from netloom.insights.history import FlowHistory
from netloom.insights.queries import FlowFilter

INGEST_GOAL = 50_000.0
QUERY_GOAL_MS = 200.0
BATCH = 500  # records per ingest call, as an agent's report would carry
START = 1_700_000_000.0


def _ingest(history: FlowHistory, cloud: Cloud, flows: int) -> tuple[float, float]:
    """Seconds spent in ``ingest`` and the final write: wall clock, and CPU of this process."""
    wall = cpu = 0.0
    source = records(cloud, flows)
    while True:
        batch = list(islice(source, BATCH))
        t, c = time.perf_counter(), time.process_time()
        if batch:
            history.ingest(batch)
        else:
            history.flush()
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        if not batch:
            return wall, cpu


def _queries(cloud: Cloud) -> dict[str, Callable[[FlowHistory, random.Random], object]]:
    def top(h: FlowHistory, rng: random.Random) -> object:
        return h.top_talkers(FlowFilter(since=START, until=START + DAY_S), by="source")

    def vm(h: FlowHistory, rng: random.Random) -> object:
        port = cloud.vms[rng.randrange(min(len(cloud.vms), 1000))].port_id
        return h.flows(FlowFilter(port_id=port), limit=100)

    def drops(h: FlowHistory, rng: random.Random) -> object:
        since = START + rng.random() * DAY_S / 2
        return h.drops_by_rule(FlowFilter(since=since), bucket_s=60.0)

    return {"top_talkers": top, "vm_flows": vm, "drops_by_rule": drops}


Samples = dict[str, list[tuple[float, float]]]


def _time_queries(history: FlowHistory, cloud: Cloud, runs: int) -> Samples:
    """Per query, (wall ms, CPU ms) of each run."""
    rng = random.Random(3)
    out: Samples = {}
    for name, query in _queries(cloud).items():
        query(history, rng)  # warm
        samples = []
        for _ in range(runs):
            t, c = time.perf_counter(), time.process_time()
            query(history, rng)
            samples.append(((time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3))
        out[name] = samples
    return out


def _p99(samples: Samples, which: int) -> float:
    return percentile((s[which] for each in samples.values() for s in each), 0.99) or 0.0


def run_bench(flows: int, runs: int = 30) -> dict[str, Any]:
    """One run on a fresh store; the figures as a JSON-ready dict."""
    if flows < 1 or runs < 1:
        raise InvalidInput("--flows and --runs must be at least 1", field="flows")
    cloud = Cloud.make(flows, START)
    with tempfile.TemporaryDirectory(prefix="netloom-insights-") as tmp:
        path = Path(tmp) / "flows.duckdb"
        history = FlowHistory(path)
        try:
            seconds, cpu = _ingest(history, cloud, flows)
            stored = history.count()
            samples = _time_queries(history, cloud, runs)
        finally:
            history.close()
        size = path.stat().st_size
    p99 = _p99(samples, 0)
    ingest = flows / seconds if seconds > 0 else 0.0
    return {
        "flows": flows,
        "stored": stored,
        "store": "duckdb",
        "ingest_per_s": round(ingest),
        "ingest_ratio": round(ingest / INGEST_GOAL, 3),
        "query_p99_ms": round(p99, 2),
        "query_ratio": round(QUERY_GOAL_MS / p99, 3) if p99 else None,
        "queries_p99_ms": {k: round(_p99({k: v}, 0), 2) for k, v in samples.items()},
        # the same on CPU time of this process: what a machine shared with other work hides
        "ingest_per_cpu_s": round(flows / cpu) if cpu > 0 else None,
        "query_p99_cpu_ms": round(_p99(samples, 1), 2),
        "bytes_per_million_flows": round(size * 1_000_000 / flows),
        "goals": {"ingest_per_s": INGEST_GOAL, "query_p99_ms": QUERY_GOAL_MS},
    }


def _table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"flows stored        {result['stored']:>12}",
        f"ingest/s            {result['ingest_per_s']:>12}  "
        f"(goal >= {INGEST_GOAL:.0f}: ratio {result['ingest_ratio']})",
        f"query p99 ms        {result['query_p99_ms']:>12}  "
        f"(goal <= {QUERY_GOAL_MS:.0f}: ratio {result['query_ratio']})",
    ]
    lines += [f"  {k:<18}{v:>12}" for k, v in result["queries_p99_ms"].items()]
    lines.append(f"ingest/CPU s        {result['ingest_per_cpu_s']:>12}")
    lines.append(f"query p99 CPU ms    {result['query_p99_cpu_ms']:>12}")
    lines.append(f"bytes/million flows {result['bytes_per_million_flows']:>12}")
    return lines


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del app

    @bench.command("insights")
    def insights(
        *,
        flows: int = typer.Option(1_000_000, "--flows", help="flow records to ingest"),
        runs: int = typer.Option(30, "--runs", help="runs of each query"),
        as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    ) -> None:
        """The flow history: ingest rate, the UI queries' p99, the store's size."""
        try:
            result = run_bench(flows, runs)
        except InvalidInput as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(result))
            return
        for line in _table(result):
            typer.echo(line)


__all__ = ["INGEST_GOAL", "QUERY_GOAL_MS", "register", "run_bench"]
