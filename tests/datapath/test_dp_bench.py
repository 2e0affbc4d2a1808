"""Smoke test of `netloom bench datapath` (small sizes)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from .conftest import have_bpf

pytestmark = [
    pytest.mark.netns,
    pytest.mark.bpf,
    pytest.mark.skipif(not have_bpf(), reason="needs root and clang"),
]


def test_bench_datapath_json() -> None:
    from netloom.cli.main import app

    r = CliRunner().invoke(
        app,
        ["bench", "datapath", "--json", "--samples", "20", "--installs", "2000", "--burst", "200"],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["upcalls_handled"] == 200 and res["reinjected_delivered"] == 200
    assert res["first_packet_added_p50_ms"] <= res["first_packet_added_p99_ms"]
    assert res["first_packet_lost"] == 0 and res["first_packet_samples"] == 20
    assert set(res["lookup_ns_by_masks"]) == {"1", "4", "16", "32"}


def test_bench_datapath_flows_json() -> None:
    """``--flows``: figures for each table size, positive, and the flows really installed,
    evicted without failure and invalidated."""
    from netloom.cli.main import app

    r = CliRunner().invoke(app, ["bench", "datapath", "--json", "--flows", "2000,1000"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    sizes = {"1000", "2000"}
    for key in ("lookup_ns_by_flows", "lookup_ns_by_flows_hot", "install_per_s_by_flows"):
        assert set(res[key]) == sizes and all(v > 0 for v in res[key].values()), key
    assert res["flows_kept_by_flows"] == {"1000": 1000, "2000": 2000}
    assert res["lookup_missed_by_flows"] == {"1000": 0, "2000": 0}
    assert all(set(m) == {"1", "4", "16"} for m in res["lookup_ns_by_flows_masks"].values())
    assert res["install_per_s"] > 0 and res["bytes_per_flow"] > 0
    ev = res["eviction"]
    assert ev["failed_batches"] == 0 and 0 < ev["flows_after"] <= ev["table"]
    assert ev["install_per_s"] > 0
    inv = res["invalidation"]
    assert inv["flows"] == inv["kernel_flows_removed"] == 2000
    assert inv["still_forwarding_of_500_probed"] == 0 and inv["ms"] > 0
    assert len(res["goals"]) == 3


def test_bench_datapath_flows_rejects_bad_sizes() -> None:
    from netloom.cli.main import app

    for bad in ("lots", "10", "1000,x"):
        r = CliRunner().invoke(app, ["bench", "datapath", "--flows", bad])
        assert r.exit_code == 2 and "--flows" in r.output, (bad, r.output)
