"""Fixtures of the CLI tests: a real ``netloom cluster`` process on ephemeral ports.

The cluster runs as a subprocess (the way an operator runs it) with ``--api 127.0.0.1:0`` and
``--topology 127.0.0.1:0``: the kernel picks free ports (no race between choosing a port and
binding it) and the cluster logs them in its ``cluster.ready`` line, which the fixture reads.
The store is the default one: SQLite in a temporary ``--state-dir``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

READY_TIMEOUT_S = 30.0


def netloom_exe() -> str:
    """The ``netloom`` script of the virtualenv running the tests."""
    local = Path(sys.executable).parent / "netloom"
    if local.exists():
        return str(local)
    found = shutil.which("netloom")
    if found is None:
        pytest.fail("the netloom console script is not installed (pip install -e .)")
    return found


@dataclass
class Cluster:
    proc: subprocess.Popen[bytes]
    api: str
    topology_port: int
    log: Path
    state_dir: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_cluster(tmp: Path, *extra: str) -> Cluster:
    """Start ``netloom cluster`` and wait for its ready line (fails with the log if it dies)."""
    log = tmp / "cluster.log"
    state = tmp / "state"
    cmd = [
        netloom_exe(),
        "cluster",
        "--api",
        "127.0.0.1:0",
        "--topology",
        "127.0.0.1:0",
        "--state-dir",
        str(state),
        "--host-timeout",
        "5",
        *extra,  # a later --state-dir wins
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        m = re.search(r"event=cluster\.ready .*api_port=(\d+) topology_port=(\d+)", text)
        if m:
            return Cluster(proc, f"http://127.0.0.1:{m[1]}", int(m[2]), log, state)
        if proc.poll() is not None:
            pytest.fail(f"netloom cluster exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    stop_cluster(proc)
    pytest.fail(f"netloom cluster not ready after {READY_TIMEOUT_S}s:\n{log.read_text()}")


def stop_cluster(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM the cluster we started (by its pid only), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        stop_cluster(c.proc)


@pytest.fixture()
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.api + "/api/v1", timeout=10) as client:
        yield client


@pytest.fixture()
def cli(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner of the real typer app, pointed at the cluster through $NETLOOM_API."""
    monkeypatch.setenv("NETLOOM_API", cluster.api)
    return CliRunner()


def run_env() -> dict[str, str]:
    """Environment for subprocess CLI runs: no inherited $NETLOOM_API, wide terminal."""
    env = {k: v for k, v in os.environ.items() if k != "NETLOOM_API"}
    env["COLUMNS"] = "200"
    return env


RunNetloom = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture()
def run_netloom() -> RunNetloom:
    """Run the real ``netloom`` binary: ``run_netloom(*args)`` -> CompletedProcess (text)."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [netloom_exe(), *args],
            capture_output=True,
            text=True,
            env=run_env(),
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture()
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start extra clusters inside one test; all are stopped at its end, pass or fail."""
    started: list[Cluster] = []

    def start(*extra: str, state_dir: Path | None = None) -> Cluster:
        base = tmp_path / f"c{len(started)}"
        base.mkdir()
        if state_dir is not None:
            extra = ("--state-dir", str(state_dir), *extra)
        c = start_cluster(base, *extra)
        started.append(c)
        return c

    yield start
    for c in started:
        stop_cluster(c.proc)
