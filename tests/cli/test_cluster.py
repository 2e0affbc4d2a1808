"""``netloom cluster``: readiness, default SQLite store, clean shutdown, persistence, and the
one-line refusals (bad store URL, busy port, bad address)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.unit


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_default_store_is_sqlite_in_state_dir(cluster: Any) -> None:
    assert (cluster.state_dir / "nsdb.sqlite").is_file()
    assert f"store=sqlite:{cluster.state_dir}/nsdb.sqlite" in cluster.log_text()
    # every log line is logfmt with a timestamp and a level
    for line in cluster.log_text().splitlines():
        assert line.startswith("ts=") and " level=" in line, line
    r = httpx.get(cluster.api + "/api/v1/tenants", timeout=5)
    assert r.status_code == 200


def test_topology_port_accepts_connections(cluster: Any) -> None:
    with socket.create_connection(("127.0.0.1", cluster.topology_port), timeout=5):
        pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_store_persists(
    cluster_factory: Any, tmp_path: Path, run_netloom: Any, sig: signal.Signals
) -> None:
    state = tmp_path / "state"
    first = cluster_factory(state_dir=state)
    p = run_netloom("tenant", "create", "--name", "kept", "--json", "--api", first.api)
    assert p.returncode == 0, p.stderr
    first.proc.send_signal(sig)
    assert first.proc.wait(15) == 0
    log = first.log_text()
    assert f"signal={sig.name}" in log
    assert "event=topology.stopped" in log and "event=cluster.stopped" in log
    assert "Traceback" not in log
    second = cluster_factory(state_dir=state)
    p = run_netloom("tenant", "list", "--name", "kept", "--json", "--api", second.api)
    assert p.returncode == 0 and '"name": "kept"' in p.stdout


def test_bad_store_url(run_netloom: Any, tmp_path: Path) -> None:
    p = run_netloom(
        "cluster",
        "--store",
        "bogus:x",
        "--api",
        "127.0.0.1:0",
        "--topology",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path),
    )
    assert p.returncode == 1
    assert one_line(p.stderr).startswith("error: invalid_input: bad store URL 'bogus:x'")


def test_unopenable_sqlite_path(run_netloom: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    p = run_netloom(
        "cluster",
        "--store",
        f"sqlite:{blocker}/sub/nsdb.sqlite",
        "--api",
        "127.0.0.1:0",
        "--topology",
        "127.0.0.1:0",
    )
    assert p.returncode == 1
    assert one_line(p.stderr).startswith("error: ")


@pytest.mark.parametrize("which", ["api", "topology"])
def test_busy_port(run_netloom: Any, which: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = f"127.0.0.1:{s.getsockname()[1]}"
        addrs = {"api": "127.0.0.1:0", "topology": "127.0.0.1:0", which: busy}
        p = run_netloom(
            "cluster", "--store", "memory:", "--api", addrs["api"], "--topology", addrs["topology"]
        )
    assert p.returncode == 1
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: invalid_input: cannot listen on {which} {busy}: Address already in use"
        f" (field: {which})"
    ], p.stderr
    assert "Traceback" not in p.stderr


def test_bad_address(run_netloom: Any) -> None:
    p = run_netloom("cluster", "--store", "memory:", "--api", "127.0.0.1:99999")
    assert p.returncode == 1
    assert one_line(p.stderr) == (
        "error: invalid_input: '127.0.0.1:99999' is not HOST:PORT (field: api)"
    )
