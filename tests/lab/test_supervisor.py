"""The supervisor's identity check and restart policy, on processes this test starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netloom.lab import supervisor
from netloom.lab.state import ProcessRecord
from netloom.lab.supervisor import RestartPolicy

pytestmark = pytest.mark.unit


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marker-x"])
    yield proc
    proc.kill()
    proc.wait()


def test_start_ticks_survive_odd_command_names(tmp_path: Path) -> None:
    """The command name in /proc/PID/stat may hold spaces and parentheses; the start time is
    on CLOCK_BOOTTIME, in clock ticks."""
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(odd), "30"])
    try:
        ticks = supervisor.start_ticks(proc.pid)
        assert ticks is not None
        age = supervisor.boottime() - ticks / os.sysconf("SC_CLK_TCK")
        assert 0 <= age < 10, age  # started just now
        with open(f"/proc/{proc.pid}/stat") as f:
            assert "(a) b (c)" in f.read()  # the name that a naive split gets wrong
    finally:
        proc.kill()
        proc.wait()


def test_recorded_process_is_ours(sleeper: subprocess.Popen[bytes]) -> None:
    rec = supervisor.record(sleeper.pid, "agent", "marker-x", None, None)
    assert supervisor.same_process(rec)
    assert supervisor.alive(rec)
    assert supervisor.still_ours(rec) is not None


def test_pid_with_another_start_time_is_not_ours(sleeper: subprocess.Popen[bytes]) -> None:
    """A recorded pid whose start time differs is a recycled pid: not ours, never signalled,
    whatever its command line says."""
    ticks = supervisor.start_ticks(sleeper.pid)
    assert ticks is not None
    rec = ProcessRecord(role="agent", pid=sleeper.pid, match="marker-x", start_ticks=ticks + 1)
    assert not supervisor.same_process(rec)
    assert not supervisor.alive(rec)
    assert supervisor.still_ours(rec) is None


def test_pid_with_another_command_line_is_not_ours(sleeper: subprocess.Popen[bytes]) -> None:
    rec = supervisor.record(sleeper.pid, "agent", "not-this-one", None, None)
    assert supervisor.still_ours(rec) is None


def test_dead_process_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    rec = supervisor.record(proc.pid, "agent", "true", None, None)
    proc.wait()
    assert not supervisor.alive(rec)


def test_legacy_record_without_start_ticks(sleeper: subprocess.Popen[bytes]) -> None:
    """State files written before start_ticks carry create_time: still read and checked."""
    import psutil

    created = psutil.Process(sleeper.pid).create_time()
    legacy = ProcessRecord.model_validate(
        {"role": "agent", "pid": sleeper.pid, "create_time": created, "match": "marker-x"}
    )
    assert supervisor.alive(legacy)
    moved = legacy.model_copy(update={"create_time": created - 10})
    assert not supervisor.alive(moved)
    assert not supervisor.alive(legacy.model_copy(update={"create_time": None}))


def test_restart_policy_backs_off_and_gives_up() -> None:
    policy = RestartPolicy(max_restarts=3, window_s=60.0, backoff_s=1.0, backoff_max_s=3.0)
    rec = ProcessRecord(role="agent", pid=1, match="x", started=100.0)
    assert policy.decide(rec, 100.5) == "wait"  # died at once: wait 1 s after its start
    assert policy.decide(rec, 101.0) == "restart"
    rec.restarts = [101.0]
    rec.started = 101.0
    assert policy.decide(rec, 102.5) == "wait"  # 2 s after one restart
    assert policy.decide(rec, 103.0) == "restart"
    rec.restarts = [101.0, 103.0, 106.0]
    rec.started = 106.0
    assert policy.decide(rec, 150.0) == "give-up"  # 3 restarts within 60 s
    assert policy.decide(rec, 170.0) == "restart"  # the first fell out of the window
