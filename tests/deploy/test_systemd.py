"""The systemd units pass ``systemd-analyze verify`` as an installer writes them, and the
cluster speaks the readiness and watchdog protocol they rely on (``Type=notify``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netloom.deploy import sdnotify
from netloom.deploy.units import UNIT_CONFIG_DIR, UNIT_PREFIX, UNITS, render

UNIT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def _unit(name: str) -> str:
    return (UNIT_DIR / name).read_text()


def _setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


@pytest.mark.unit
def test_render_replaces_the_installation_paths() -> None:
    text = render(_unit("netloom-agent.service"), "/srv/venv/", "/srv/etc")
    assert _setting(text, "ExecStart") == [
        "/srv/venv/bin/netloom agent --config /srv/etc/netloom.toml"
    ]
    assert UNIT_PREFIX not in text and UNIT_CONFIG_DIR + "/" not in text


@pytest.mark.unit
def test_units_are_hardened() -> None:
    agent, cluster = _unit("netloom-agent.service"), _unit("netloom-cluster.service")
    for text in (agent, cluster):
        for setting in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes"):
            assert setting in text.splitlines()
        for key in ("ProtectSystem", "ProtectHome", "WatchdogSec"):
            assert _setting(text, key) in (["strict"], ["yes"], ["30s"])
    caps = set(_setting(agent, "CapabilityBoundingSet")[0].split())
    assert caps == {
        "CAP_NET_ADMIN",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_RAW",
        "CAP_SYS_ADMIN",
        "CAP_NET_BIND_SERVICE",
    }
    assert _setting(agent, "ReadWritePaths") == ["/sys/fs/bpf"]
    assert _setting(cluster, "CapabilityBoundingSet") == [""]


@pytest.mark.unit
def test_systemd_analyze_verifies_the_rendered_units(tmp_path: Path) -> None:
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.fail("systemd-analyze is missing (Debian package systemd, make sysdeps)")
    prefix, etc = tmp_path / "venv", tmp_path / "etc"
    (prefix / "bin").mkdir(parents=True)
    etc.mkdir()
    exe = prefix / "bin" / "netloom"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        (units / name).write_text(render(_unit(name), str(prefix), str(etc)))
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *(str(units / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


@pytest.mark.unit
def test_notify_without_systemd_does_nothing() -> None:
    assert sdnotify.notify(sdnotify.READY, {}) is False
    assert sdnotify.watchdog_period({}) is None
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30.0)
        yield sock, path


def _next(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def _next_but_watchdog(sock: socket.socket) -> str:
    message = _next(sock)
    while message == sdnotify.WATCHDOG:
        message = _next(sock)
    return message


@pytest.mark.slow
def test_cluster_tells_systemd_ready_then_pings_the_watchdog(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    cmd = [sys.executable, "-m", "netloom.cli.main", "cluster", "--store", "memory:"]
    cmd += ["--api", "127.0.0.1:0", "--topology", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert _next(sock) == sdnotify.READY
        assert _next(sock) == sdnotify.WATCHDOG
        assert _next(sock) == sdnotify.WATCHDOG
        proc.send_signal(signal.SIGTERM)
        assert _next_but_watchdog(sock) == sdnotify.STOPPING  # after the pings already sent
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        log = proc.stderr.read()
        proc.stderr.close()
    assert "event=cluster.ready" in log


@pytest.mark.slow
def test_agent_is_ready_once_connected_with_its_ports_plugged(
    notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    from netloom.api.service import ObjectService
    from netloom.store.memory import MemoryStore
    from netloom.topology.server import TopologyServer

    sock, path = notify_socket

    async def scenario() -> str:
        store = MemoryStore()
        svc = ObjectService(store)
        host = svc.create("host", {"name": "sd-h1"})[0]["id"]
        bridge = svc.create("bridge", {"name": "b"})[0]["id"]
        port = svc.create("port", {"device_id": bridge, "type": "bridge"})[0]["id"]
        svc.bind_port(port, host, "tap-sd")
        server = TopologyServer(store, host_timeout_s=3.0)
        address = await server.start("127.0.0.1", 0)
        config = tmp_path / "netloom.toml"
        config.write_text(f'[agent]\ntopology = "127.0.0.1:{address}"\nhost-name = "sd-h1"\n')
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netloom.agent", "--config", str(config),
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            # the agent pings the watchdog from its start on, ready or not
            assert await asyncio.to_thread(_next_but_watchdog, sock) == sdnotify.READY
            assert server.host_alive(host)
            assert await asyncio.to_thread(_next, sock) == sdnotify.WATCHDOG
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await server.stop()
        assert proc.stderr is not None
        return (await proc.stderr.read()).decode()

    log = asyncio.run(scenario())
    assert log.index("bound port=") < log.index("agent ready")
