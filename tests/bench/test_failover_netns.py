"""``netloom bench failover`` end to end, small: three clients, a short run. Asserts the JSON's
keys and that the figures come from a real run (no thresholds: the goals are the benchmark's to
report)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from netloom.lab import netns
from netloom.lab.zookeeper import CLASSPATH

pytestmark = [
    pytest.mark.netns,
    pytest.mark.bpf,
    pytest.mark.zookeeper,
    pytest.mark.slow,
    pytest.mark.usefixtures("root"),
]

CLI = [sys.executable, "-c", "from netloom.cli.main import main; main()"]
KEYS = {"retry_max_ms", "ports_lost", "ports_duplicated", "reconnect_p99_ms", "pings_lost"}


def test_bench_failover_measures_a_real_kill_and_leaves_nothing() -> None:
    if shutil.which("java") is None or not all(j.exists() for j in CLASSPATH):
        pytest.skip("java or Debian's zookeeper package is not installed")
    done = subprocess.run(
        [*CLI, "bench", "failover", "--clients", "3", "--before", "1", "--after", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout)
    assert set(res) >= KEYS
    assert netns.list_netns(f"{res['lab']}-") == []
    assert res["clusters"] == 3 and res["ports_created"] > 0 and res["pings_sent"] > 0
    # one client starts on each cluster process: the dead one's calls were retried elsewhere
    assert res["calls_retried"] >= 1 and res["retry_max_ms"] is not None
    assert res["agents_on_dead"] >= 1  # the process holding the most agents was killed
    assert res["reconnects"] == res["agents_on_dead"]
    assert res["reconnect_p99_ms"] is not None and res["reconnect_p99_ms"] > 0
    for key in ("ports_lost", "ports_duplicated", "pings_lost"):
        assert isinstance(res[key], int) and res[key] >= 0
