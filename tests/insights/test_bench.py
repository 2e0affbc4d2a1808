"""Smoke test of ``netloom bench insights`` (a small --flows; the goals are the real run's)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from netloom.bench.insights_records import Cloud, records
from netloom.cli.main import app

pytestmark = pytest.mark.unit


def test_records_are_a_plausible_cloud() -> None:
    got = list(records(Cloud.make(2000, 1000.0), 2000))
    assert len({r.flow_id for r in got}) == 2000
    verdicts = {r.verdict for r in got}
    assert verdicts == {"forward", "drop", "reject"}
    assert all(r.out_port_id is None for r in got if r.verdict != "forward")
    sources = sorted(sum(1 for r in got if r.src_ip == ip) for ip in {r.src_ip for r in got})
    assert sources[-1] > 10 * sources[len(sources) // 2]  # a few talk most (Zipf)


def test_bench_insights_prints_the_figures() -> None:
    res = CliRunner().invoke(app, ["bench", "insights", "--flows", "2000", "--runs", "2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["stored"] == 2000
    for key in ("ingest_per_s", "query_p99_ms", "bytes_per_million_flows"):
        assert doc[key] > 0
    assert set(doc["queries_p99_ms"]) == {"top_talkers", "vm_flows", "drops_by_rule"}


def test_bad_flows_is_a_one_line_error() -> None:
    res = CliRunner().invoke(app, ["bench", "insights", "--flows", "0"])
    assert res.exit_code == 2
    assert "flows" in res.output
