"""Smoke test of ``netloom bench neutron``: a small run prints every figure (no thresholds:
speed goals are the benchmark's to report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow]


def test_bench_neutron_smoke() -> None:
    exe = Path(sys.executable).parent / "netloom"
    done = subprocess.run(
        [str(exe), "bench", "neutron", "--ports", "16", "--clients", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    for key in ("create_p99_ms_1client", "create_per_s_nclients", "list_filtered_ms"):
        assert isinstance(res[key], float) and res[key] > 0
    assert res["ports"] == 16 and res["clients"] == 2
