"""Smoke test of ``netloom bench sim``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from netloom.bench.sim import SCENARIOS, run_bench
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
