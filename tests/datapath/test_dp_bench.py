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
