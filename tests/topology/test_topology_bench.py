"""Smoke test of ``netloom bench fanout`` so that it cannot rot (20 agents, real TCP, the
agents in a second process as in the full run)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from netloom.bench.fanout import run_fanout
from netloom.cli.main import app
from netloom.errors import InvalidInput

pytestmark = pytest.mark.unit


def test_fanout_bench_delivers_every_change_through_one_watch() -> None:
    result = run_fanout(agents=20, changes=5, interval_ms=5)
    assert result["store_watches"] == 1
    assert result["delivered"] == result["expected"] == 100
    assert result["reconnects"] == 0
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_fanout_bench_cli_json() -> None:
    out = CliRunner().invoke(
        app, ["bench", "fanout", "--agents", "5", "--changes", "2", "--interval-ms", "1", "--json"]
    )
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output)
    assert figures["agents"] == 5 and figures["delivered"] == 10
    assert figures["store_watches"] == 1


def test_fanout_bench_refuses_nonsense() -> None:
    with pytest.raises(InvalidInput):
        run_fanout(agents=0)
