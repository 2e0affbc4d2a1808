"""A real Prometheus server (Debian's ``prometheus``) scrapes a cluster and an agent (memory
datapath, processes as an operator runs them) and answers a figure of each back over its HTTP
API. The server is stopped pass or fail."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.conftest import Cluster, netloom_exe, run_env
from waiting import wait_until

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def agent(cluster: Cluster, tmp_path: Path) -> Iterator[int]:
    """A ``netloom agent`` of a new host on the cluster; yields its metrics port."""
    with httpx.Client(base_url=cluster.api + "/api/v1", timeout=10) as http:
        host = http.post("/hosts", json={"name": "prom-h1"}).json()["id"]
        zone = {"name": "prom-tz", "members": [{"host_id": host, "ip": "127.0.0.1"}]}
        assert http.post("/tunnel_zones", json=zone).status_code == 201
    port = _free_port()
    cmd = [netloom_exe(), "agent", "--host-name", "prom-h1"]
    cmd += ["--topology", f"127.0.0.1:{cluster.topology_port}", "--metrics-port", str(port)]
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env())
    try:
        yield port
    finally:
        _stop(proc)


@pytest.fixture
def prometheus(cluster: Cluster, agent: int, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the cluster's /metrics and the agent's every 2 seconds."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus package is not installed")
    api_target = cluster.api.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 2s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: cluster, static_configs: [{{targets: ['{api_target}']}}]}}\n"
        f"  - {{job_name: agent, static_configs: [{{targets: ['127.0.0.1:{agent}']}}]}}\n"
    )
    port = _free_port()
    cmd = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}"]
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    try:
        r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.TransportError:
        return []
    if r.status_code != 200:
        return []
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def _value(url: str, promql: str) -> float | None:
    found = _query(url, promql)
    return float(found[0]["value"][1]) if found else None


def test_prometheus_scrapes_the_cluster_and_an_agent(prometheus: str, cluster: Cluster) -> None:
    def seen(promql: str, want: float, what: str) -> None:
        wait_until(lambda: _value(prometheus, promql) == want, 60, what)

    seen("netloom_cluster_topology_connected_agents", 1.0, "the agent connected to the cluster")
    seen('up{job="agent"}', 1.0, "a scrape of the agent")
    seen('netloom_agent_flows{job="agent"}', 0.0, "the agent's flow count")
    wait_until(
        lambda: (_value(prometheus, "sum(netloom_cluster_nsdb_commit_seconds_count)") or 0) >= 2,
        60,
        "the cluster's NSDB commits",
    )
    posts = 'sum(netloom_cluster_api_requests_total{method="POST",route="/api/v1/hosts"})'
    seen(posts, 1.0, "the POST that created the host")
