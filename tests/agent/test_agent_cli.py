"""``netloom agent`` as a process: host lookup by name, bindings, metrics over HTTP, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from netloom.api.service import ObjectService
from netloom.store.memory import MemoryStore
from netloom.topology.server import TopologyServer

from .agentlab import run

pytestmark = pytest.mark.unit
NETLOOM = str(Path(sys.executable).with_name("netloom"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return str(r.read().decode())
    except OSError:
        return None


def test_agent_process_runs_and_exits_on_sigterm() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        svc = ObjectService(store)
        host = svc.create("host", {"name": "cli-h1"})[0]["id"]
        svc.create("tunnel_zone", {"name": "tz", "members": [{"host_id": host, "ip": "127.0.0.1"}]})
        br = svc.create("bridge", {"name": "b"})[0]["id"]
        p = svc.create("port", {"device_id": br, "type": "bridge", "mac": "02:00:00:00:00:01"})
        svc.bind_port(p[0]["id"], host, "tap-cli")
        server = TopologyServer(store, host_timeout_s=3.0)
        port = await server.start("127.0.0.1", 0)
        mport = _free_port()
        proc = await asyncio.create_subprocess_exec(
            NETLOOM,
            "agent",
            "--host-name",
            "cli-h1",
            "--topology",
            f"127.0.0.1:{port}",
            "--metrics-port",
            str(mport),
            "--log-format",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 20
            text = None
            while time.monotonic() < deadline:
                text = await asyncio.to_thread(_metrics, mport)
                if text and server.host_alive(host):
                    break
                await asyncio.sleep(0.1)
            assert text is not None and "netloom_agent_upcalls" in text
            assert server.host_alive(host)
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 10)
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            assert rc == 0, err
            assert '"msg": "bound port=' in err and "ifname=tap-cli" in err
            assert '"msg": "agent stopping' in err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await server.stop()

    run(scenario())


def test_agent_cli_rejects_bad_arguments() -> None:
    import subprocess

    r = subprocess.run(
        [NETLOOM, "agent", "--topology", "nope"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "exactly one of --host-id" in r.stderr
    r = subprocess.run(
        [NETLOOM, "agent", "--host-id", "x", "--topology", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    for bad, word in (
        (["--conntrack-size", "0"], "conntrack"),
        (["--conntrack-lifetimes", "1:2"], "conntrack"),
        (["--sidecar-ns-prefix", "a/b"], "sidecar"),
    ):
        r = subprocess.run(
            [NETLOOM, "agent", "--host-id", "x", "--topology", "h:1", *bad],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2 and word in r.stderr, r.stderr


def test_both_entry_points_take_the_same_options() -> None:
    """``netloom agent`` hands its arguments to the agent's own parser, and ``python -m
    netloom.agent`` imports nothing of netloom.cli (it must start fast)."""
    import subprocess

    via_cli = subprocess.run([NETLOOM, "agent", "--help"], capture_output=True, text=True)
    via_module = subprocess.run(
        [sys.executable, "-m", "netloom.agent", "--help"], capture_output=True, text=True
    )
    assert via_cli.returncode == via_module.returncode == 0, via_module.stderr
    assert via_cli.stdout == via_module.stdout and "--metrics-port" in via_cli.stdout
    probe = (
        "import sys, netloom.agent.__main__; "
        "print(any(m.startswith('netloom.cli') for m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert imported.stdout.strip() == "False", imported.stderr


def test_agent_options_round_trip_through_argv() -> None:
    from netloom.agent.options import (
        AgentOptions,
        DatapathKind,
        LogFormat,
        VxlanEncap,
        parse_argv,
    )

    full = AgentOptions(
        topology="192.0.2.1:8182",
        host_name="h1",
        datapath=DatapathKind.bpf,
        underlay_ip="192.0.2.11",
        metrics_port=9464,
        idle_timeout=5.0,
        mtu=9000,
        vxlan_encap=VxlanEncap.device,
        log_format=LogFormat.json,
        verbose=True,
        kernel_conntrack=False,
        conntrack_size=1024,
        conntrack_lifetimes="30:1:5",
        sidecar_ns_prefix="lab-gw1-sc-",
        state_dir="/var/lib/netloom-agent",
    )
    assert parse_argv(full.to_argv()) == full
    assert full.conntrack().tcp_closing_s == 1.0 and full.conntrack().max_entries == 1024
    minimal = AgentOptions(topology="127.0.0.1:1", host_id="x")
    assert minimal.to_argv() == ["--topology", "127.0.0.1:1", "--host-id", "x"]
    assert parse_argv(minimal.to_argv()) == minimal
