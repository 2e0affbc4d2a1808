"""``netloom bench sim``: simulations per second on one core.

The three paths of :mod:`netloom.bench.sim_paths` (``l2_per_s``, ``l3_sg_per_s``,
``fip_per_s``); with ``--rules``/``--members`` also the rate against the size of a security
group and of a remote group (:mod:`netloom.bench.sim_rules`): ``rate_by_rules``,
``rate_by_members`` and the ratios of the largest count's rate to the smallest's (the goal for
rules: at least 0.5 from 10 to 1 000). With ``--trace-log``, instead: each path's rate with the
simulation log on and off and ``trace_log_ratio`` (:mod:`netloom.bench.sim_log`).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from netloom.bench.sim_log import run_trace_log, trace_log_table
from netloom.bench.sim_paths import SCENARIOS, measure
from netloom.bench.sim_rules import parse_counts, run_scaling
from netloom.errors import InvalidInput

RULES_GOAL = 0.5  # rate with the most rules / rate with the fewest, at least


def run_bench(
    seconds: float, rules: list[int] | None = None, members: list[int] | None = None
) -> dict[str, Any]:
    """The paths' rates; with ``rules`` or ``members`` also the scaling figures."""
    if seconds <= 0:
        raise InvalidInput("--seconds must be positive", field="seconds")
    result: dict[str, Any] = {
        name: round(measure(make, seconds), 1) for name, make in SCENARIOS.items()
    }
    if rules or members:
        result.update(run_scaling(rules or [10], members or [10], seconds))
    return result


def _table(result: dict[str, Any]) -> list[str]:
    lines = [f"{name:<14} {result[name]:>12,.0f}" for name in SCENARIOS]
    for key, what in (("rate_by_rules", "rules"), ("rate_by_members", "members")):
        if key in result:
            lines.append(f"{what:>14} {'sims/s':>12}")
            lines += [f"{n:>14} {v:>12,.0f}" for n, v in result[key].items()]
    if "rules_ratio" in result:
        lines.append(f"rules ratio    {result['rules_ratio']:>12.3f}  (goal >= {RULES_GOAL})")
        lines.append(f"members ratio  {result['members_ratio']:>12.3f}")
    return lines


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("sim")
    def sim(
        seconds: float = typer.Option(2.0, help="measuring time per scenario"),
        rules: str = typer.Option(
            "", help="security-group sizes to measure, e.g. 10,100,1000 (rate_by_rules)"
        ),
        members: str = typer.Option(
            "", help="remote-group sizes to measure, e.g. 10,1000 (rate_by_members)"
        ),
        trace_log: bool = typer.Option(
            False, "--trace-log", help="the rate with the simulation log on and off instead"
        ),
        as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    ) -> None:
        """Simulations per second on one core: L2, L3 + stateful SGs, floating IP; with
        --rules/--members, against the size of a security group and of a remote group; with
        --trace-log, with the simulation log on and off (trace_log_ratio)."""
        try:
            if trace_log:
                if seconds <= 0:
                    raise InvalidInput("--seconds must be positive", field="seconds")
                result = run_trace_log(seconds)
            else:
                counts = parse_counts(rules, "rules"), parse_counts(members, "members")
                result = run_bench(seconds, *counts)
        except InvalidInput as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(result))
            return
        for line in trace_log_table(result) if trace_log else _table(result):
            typer.echo(line)


__all__ = ["RULES_GOAL", "register", "run_bench"]
