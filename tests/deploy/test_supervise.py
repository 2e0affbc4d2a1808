"""netloom-supervise (the Ansible roles' service manager where systemd does not run) and the
PLAY RECAP parser of the netns test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import wait_until

from .machines import PLAYBOOKS, Recap

pytestmark = pytest.mark.unit

SUPERVISE = PLAYBOOKS / "roles" / "netloom_service" / "files" / "netloom-supervise"

UNIT = """\
[Unit]
Description=test
[Service]
Environment=GREETING=hello "OTHER=a b"
ExecStart={python} -c "{program}" --flag value
Restart=on-failure
"""
PROGRAM = (
    "import os, sys, time; "
    "print(os.environ['GREETING'], os.environ['OTHER'], sys.argv[1:], flush=True); "
    "time.sleep(600)"
)


def _supervise(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SUPERVISE), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_runs_the_units_execstart_with_its_environment(tmp_path: Path) -> None:
    unit = tmp_path / "t.service"
    unit.write_text(UNIT.format(python=sys.executable, program=PROGRAM))
    run = tmp_path / "run"
    args = ("t", str(unit), str(run))
    try:
        assert _supervise("start", *args) == "started"
        assert _supervise("start", *args) == "running"  # nothing done: idempotent
        log = run / "t.log"
        wait_until(lambda: log.exists() and log.read_text(), 10, "the service's output")
        assert log.read_text().strip() == "hello a b ['--flag', 'value']"
        pid = int((run / "t.pid").read_text())
        assert _supervise("restart", *args) == "restarted"
        assert int((run / "t.pid").read_text()) != pid
    finally:
        assert _supervise("stop", *args) in ("stopped", "not running")
    assert not (run / "t.pid").exists()
    assert _supervise("stop", *args) == "not running"


def test_restarts_a_failed_process(tmp_path: Path) -> None:
    unit = tmp_path / "t.service"
    unit.write_text(UNIT.format(python=sys.executable, program=PROGRAM))
    run = tmp_path / "run"
    args = ("t", str(unit), str(run))
    try:
        _supervise("start", *args)
        log = run / "t.log"
        wait_until(lambda: log.exists() and log.read_text().count("hello") == 1, 10, "started")
        child = _child_of(int((run / "t.pid").read_text()))
        os.kill(child, 9)
        wait_until(lambda: log.read_text().count("hello") == 2, 10, "restarted after a failure")
    finally:
        _supervise("stop", *args)


def _child_of(pid: int) -> int:
    def found() -> int | None:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    return int(entry)
        return None

    wait_until(lambda: found() is not None, 10, "the supervised process")
    child = found()
    assert child is not None
    return child


def test_recap() -> None:
    out = (
        "PLAY RECAP *********\n"
        "an1-h1   : ok=30   changed=0    unreachable=0    failed=0    skipped=4    rescued=0\n"
        "an1-h2   : ok=23   changed=2    unreachable=1    failed=0    skipped=3    rescued=0\n"
    )
    recap = Recap.parse(out)
    assert recap.hosts == {"an1-h1": (30, 0, 0, 0), "an1-h2": (23, 2, 1, 0)}
    assert recap.changed() == 2
    assert recap.failed() == 1
