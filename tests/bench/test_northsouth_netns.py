"""``netloom bench northsouth`` end to end, small: 2 gateways, one compute host, short runs.
Asserts the JSON's shape and that every figure was measured (no thresholds: speed goals are
the benchmark's to report)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netloom.lab import netns

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow, pytest.mark.usefixtures("root")]

CLI = [sys.executable, "-c", "from netloom.cli.main import main; main()"]
SMALL = ["--gateways", "2", "--hosts", "1", "--reps", "1", "--duration", "1"]
SMALL += ["--connections", "40", "--prefixes", "50", "--streams", "2", "--after", "4"]


def test_bench_northsouth_measures_every_figure_and_leaves_nothing() -> None:
    done = subprocess.run(
        [*CLI, "bench", "northsouth", *SMALL, "--json", "--detail"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout)
    detail = res["detail"]
    assert netns.list_netns(f"{detail['lab']}-") == []
    assert detail["errors"] == {}
    assert set(res) == {"gateways", "ratios", "spread", "failover", "learned_routes", "detail"}
    assert set(res["ratios"]) == {"tcp_stream", "tcp_maerts", "tcp_rr", "tcp_crr"}
    assert set(res["spread"]) == {"min", "max"}
    assert set(res["failover"]) == {"gap_ms", "survived_other", "survived_dead", "new_conn_ms"}
    assert set(res["learned_routes"]) == {"announce_ms", "withdraw_ms"}
    assert res["gateways"] == 2
    assert all(r is not None and r > 0 for r in res["ratios"].values())
    per = detail["spread"]["per_gateway"]
    assert sum(per.values()) == 40
    assert (res["spread"]["min"], res["spread"]["max"]) == (min(per.values()), max(per.values()))
    fo = res["failover"]
    assert fo["gap_ms"] is not None and fo["gap_ms"] > 0
    # None: new connections still failed at the end of the window (a measurement too)
    assert fo["new_conn_ms"] is None or fo["new_conn_ms"] >= 0
    assert detail["failover"]["connect_attempts"] > 0
    lr = res["learned_routes"]
    assert lr["announce_ms"] is not None and lr["announce_ms"] > 0
    assert lr["withdraw_ms"] is not None and lr["withdraw_ms"] > 0
