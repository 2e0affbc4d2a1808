"""Smoke test of ``netloom bench sim``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from netloom.bench.sim import run_bench
from netloom.bench.sim_paths import SCENARIOS
from netloom.bench.sim_rules import sg_scenario
from netloom.errors import InvalidInput
from netloom.sim import Verdict

pytestmark = pytest.mark.unit


def test_scenarios_forward_new_flows() -> None:
    for make in SCENARIOS.values():
        sc = make()
        for i in range(5):
            assert sc.run_one(i) is Verdict.FORWARD
        # every simulation is a new flow: conntrack/NAT state grows with the runs
    l3 = SCENARIOS["l3_sg_per_s"]()
    for i in range(10):
        l3.run_one(i)
    assert len(l3.state.conntrack) == 2 * 10  # each new flow, tracked in two zones (two devices)
    fip = SCENARIOS["fip_per_s"]()
    for i in range(10):
        fip.run_one(i)
    assert len(fip.state.nat) == 2 * 10  # each new flow: its SNAT binding and the reverse


def test_bench_cli_prints_json() -> None:
    from netloom.cli.main import app

    res = CliRunner().invoke(app, ["bench", "sim", "--json", "--seconds", "0.05"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {"l2_per_s", "l3_sg_per_s", "fip_per_s"}
    assert all(v > 0 for v in doc.values())


def test_bench_rejects_bad_seconds() -> None:
    with pytest.raises(InvalidInput):
        run_bench(0)


def test_sg_scenario_decides_by_the_last_rule_or_none() -> None:
    hit, miss = sg_scenario(20, 5, hit=True), sg_scenario(20, 5, hit=False)
    for i in range(3):
        assert hit.run_one(i) is Verdict.FORWARD
        assert miss.run_one(i) is Verdict.DROP


def test_bench_cli_scaling_json() -> None:
    from netloom.cli.main import app

    args = ["bench", "sim", "--json", "--seconds", "0.02", "--rules", "3,12", "--members", "2,9"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {
        "l2_per_s",
        "l3_sg_per_s",
        "fip_per_s",
        "rate_by_rules",
        "rate_by_members",
        "rules_ratio",
        "members_ratio",
    }
    assert set(doc["rate_by_rules"]) == {"3", "12"}
    assert set(doc["rate_by_members"]) == {"2", "9"}
    rates = [*doc["rate_by_rules"].values(), *doc["rate_by_members"].values()]
    assert all(v > 0 for v in rates)
    assert doc["rules_ratio"] > 0 and doc["members_ratio"] > 0


def test_bench_cli_scaling_table() -> None:
    from netloom.cli.main import app

    res = CliRunner().invoke(app, ["bench", "sim", "--seconds", "0.02", "--rules", "2,4"])
    assert res.exit_code == 0, res.output
    assert "rules ratio" in res.output and "rate_by_rules" not in res.output


@pytest.mark.parametrize("bad", ["0", "x", "10,-1", "100000000"])
def test_bench_rejects_bad_rule_counts(bad: str) -> None:
    from netloom.cli.main import app

    res = CliRunner().invoke(app, ["bench", "sim", "--seconds", "0.02", "--rules", bad])
    assert res.exit_code == 2
    assert "rules" in res.output


def test_bench_trace_log_prints_the_rates_on_and_off_and_the_ratio() -> None:
    from netloom.cli.main import app

    res = CliRunner().invoke(app, ["bench", "sim", "--trace-log", "--json", "--seconds", "0.06"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    paths = ("l2", "l3_sg", "fip")
    for name in paths:
        assert doc[f"{name}_log_off_per_s"] > 0 and doc[f"{name}_log_on_per_s"] > 0
    assert doc["trace_log_ratio"] == min(doc[f"{n}_log_ratio"] for n in paths)
    bad = CliRunner().invoke(app, ["bench", "sim", "--trace-log", "--seconds", "0"])
    assert bad.exit_code == 2 and "seconds" in bad.output
