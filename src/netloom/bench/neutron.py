"""``netloom bench neutron``: Neutron port create, list and delete through openstacksdk against
a cluster (``netloom cluster --neutron``, SQLite store) started for the run.

Create latency with one client (a quarter of ``--ports``), then the rest with ``--clients``
concurrent clients (ports per second of wall time, latencies), then the list of every port of
the network with a filter (median of three), then deletion by all clients. Each client is its
own SDK connection, in a thread of this process (the server is the other process)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from netloom.bench import procs
from netloom.bench.stats import median, percentile, rounded
from netloom.errors import LabError, SetupUnavailable
from netloom.lab.cluster import netloom_argv

PROJECT = "0b3f5e7a9c1d4e2f8a6b4c2d0e8f6a4b"
READY_TIMEOUT_S = 30.0
DEVICE_OWNER = "compute:bench"


@contextmanager
def cluster(tmp: Path) -> Iterator[str]:
    """A ``netloom cluster --neutron`` process on SQLite; yields the Neutron URL."""
    log = tmp / "cluster.log"
    cmd = [*netloom_argv(), "cluster", "--api", "127.0.0.1:0"]
    cmd += ["--topology", "127.0.0.1:0", "--neutron", "127.0.0.1:0", "--state-dir", str(tmp)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            m = re.search(r"event=cluster\.ready .*neutron_port=(\d+)", log.read_text())
            if m:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the cluster did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{m[1]}"
    finally:
        procs.stop_group(proc)


def _connect(url: str) -> Any:
    try:
        import openstack
    except ImportError:
        raise SetupUnavailable("openstacksdk is not installed (pip install openstacksdk)") from None
    return openstack.connect(
        auth_type="none", auth={"endpoint": url}, network_endpoint_override=url + "/"
    )


def _create(conn: Any, net_id: str, count: int) -> tuple[list[str], list[float]]:
    ids, lat = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        port = conn.network.create_port(
            network_id=net_id, project_id=PROJECT, device_owner=DEVICE_OWNER
        )
        lat.append((time.perf_counter() - t0) * 1000)
        ids.append(port.id)
    return ids, lat


def _phases(url: str, clients: int, ports: int, progress: procs.Progress) -> dict[str, Any]:
    conns = [_connect(url) for _ in range(clients)]
    net = conns[0].network.create_network(name="bench", project_id=PROJECT)
    conns[0].network.create_subnet(
        network_id=net.id, project_id=PROJECT, ip_version=4, cidr="10.128.0.0/20"
    )
    single = max(1, ports // 4)
    progress(f"create {single} ports, 1 client")
    ids, lat1 = _create(conns[0], net.id, single)
    rest = ports - single
    progress(f"create {rest} ports, {clients} clients")
    shares = [rest // clients + (1 if i < rest % clients else 0) for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(lambda a: _create(conns[a[0]], net.id, a[1]), enumerate(shares)))
    wall = time.perf_counter() - t0
    latn = [x for _, lat in done for x in lat]
    ids += [i for got, _ in done for i in got]
    progress(f"list {len(ids)} ports with a filter")
    list_ms = []
    for _ in range(3):
        t0 = time.perf_counter()
        found = list(conns[0].network.ports(network_id=net.id, device_owner=DEVICE_OWNER))
        list_ms.append((time.perf_counter() - t0) * 1000)
    if len(found) != len(ids):
        raise LabError(f"listed {len(found)} ports, created {len(ids)}")
    progress("delete")
    lock = threading.Lock()
    todo = list(ids)

    def drain(conn: Any) -> None:
        while True:
            with lock:
                if not todo:
                    return
                pid = todo.pop()
            conn.network.delete_port(pid)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(drain, conns))
    conns[0].network.delete_network(net.id)
    out = {
        "ports": ports,
        "clients": clients,
        "create_p50_ms_1client": rounded(percentile(lat1, 0.5), 2),
        "create_p99_ms_1client": rounded(percentile(lat1, 0.99), 2),
        "create_per_s_nclients": rounded(rest / wall if wall else None, 1),
        "create_p50_ms_nclients": rounded(percentile(latn, 0.5), 2),
        "create_p99_ms_nclients": rounded(percentile(latn, 0.99), 2),
        "list_filtered_ms": rounded(median(list_ms), 2),
    }
    # the names the goals use, when the run is the one they describe
    if clients == 8:
        out["create_per_s_8clients"] = out["create_per_s_nclients"]
    if len(ids) == 1000:
        out["list_1000_filtered_ms"] = out["list_filtered_ms"]
    return out


def run_neutron(clients: int, ports: int, progress: procs.Progress) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="netloom-bench-neutron-") as tmp,
        cluster(Path(tmp)) as url,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # the SDK's warnings about its own internals
        result = _phases(url, clients, ports, progress)
    return {**result, "machine": procs.machine()}


def _render(res: dict[str, Any]) -> str:
    lines = ["Neutron API through openstacksdk (SQLite store)"]
    lines += [f"  {k}: {v}" for k, v in res.items() if k != "machine"]
    return "\n".join(lines)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del app

    @bench.command("neutron")
    def neutron(
        *,
        clients: int = typer.Option(8, min=1, max=64, help="concurrent clients"),
        ports: int = typer.Option(1000, min=8, max=4000, help="ports created in all"),
        as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    ) -> None:
        """Port create/list/delete through openstacksdk: latency with 1 client, ports/s with
        N, the filtered list of every port."""
        procs.run_and_print(lambda p: run_neutron(clients, ports, p), _render, as_json)


__all__ = ["cluster", "register", "run_neutron"]
