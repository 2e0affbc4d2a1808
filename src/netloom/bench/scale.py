"""``netloom bench scale``: a whole cloud of real agents against one cluster.

Steps, each measured:

1. the cluster (``netloom cluster``: API + topology service) starts as its own process on
   loopback ports with a temporary state dir (ZooKeeper: a real 3-node ensemble first), so its
   RSS and CPU are its own (:mod:`netloom.bench.scale_cluster` adds the store-watch probe);
2. the cloud of :mod:`netloom.bench.scale_cloud` is provisioned through the REST API;
3. ``hosts`` real agents start, packed in worker processes (:mod:`netloom.bench.scale_worker`),
   except the 100-VM agent, alone in its process so that its RSS is its own; we time until every
   agent has every binding plugged;
4. warm-up: one first-packet simulation from every VM port to a VM of its tenant on the other
   bridge (the agent loads its tenants' routers and chains, as traffic would make it);
5. change propagation: security-group rule creates and route creates on a few tenants; per
   agent, the time from the API call returning until its listener saw the change applied; the
   agents that must get it are computed from the plan (hosts with a VM of that tenant), and any
   other agent receiving it is a failure (interest-based fan-out);
6. first-packet checks between random VM pairs on the agents owning the source port: same
   tenant -> the right host (tunnel VNI = destination port key, remote = its host) or the right
   local port; cross tenant -> dropped;
7. memory and store figures. Flatness: the same steps 1-4 with a ten times smaller cloud first,
   and the 100-VM agent's RSS after warm-up in both.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer

from netloom.bench.scale_agents import (
    READY_TIMEOUT_S,
    Workers,
    learn_routes,
    propagation,
    random_checks,
    run_checks,
    start_workers,
    wait_figures,
    warmup_checks,
)
from netloom.bench.scale_cloud import Cloud, Provisioner, plan_cloud
from netloom.bench.scale_report import failed_checks, print_table
from netloom.errors import InvalidInput, NetloomError


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


# ---- the cluster process ----------------------------------------------------------------------


@dataclass
class ClusterProc:
    proc: subprocess.Popen[bytes]
    api_url: str
    topology: tuple[str, int]
    stats_file: Path
    store_url: str
    sqlite_path: Path | None
    zk: Any = None

    def stats(self) -> dict[str, Any]:
        p = psutil.Process(self.proc.pid)
        cpu = p.cpu_times()
        out: dict[str, Any] = {
            "cluster_rss_mb": _mb(p.memory_info().rss),
            "cluster_cpu_s": round(cpu.user + cpu.system, 1),
        }
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out["cluster_peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
        out.update(json.loads(self.stats_file.read_text()))
        if self.sqlite_path is not None:
            size = sum(
                f.stat().st_size for f in self.sqlite_path.parent.glob(self.sqlite_path.name + "*")
            )
            out["store_bytes"] = size
            out["store_mb"] = _mb(size)
        if self.zk is not None:
            from netloom.lab.zookeeper import four_letter_word

            m = self.zk.members[0]
            mntr = dict(
                line.split("\t", 1)
                for line in four_letter_word(self.zk.host, m.client_port, "mntr").splitlines()
                if "\t" in line
            )
            out["zk_znodes"] = int(mntr.get("zk_znode_count", 0))
            out["zk_watches"] = int(mntr.get("zk_watch_count", 0))
            out["zk_data_mb"] = _mb(int(mntr.get("zk_approximate_data_size", 0)))
        return out


@contextlib.contextmanager
def start_cluster(store: str, workdir: Path) -> Iterator[ClusterProc]:
    """``netloom cluster`` in its own process; yields once it logged ``cluster.ready``."""
    zk: Any = None
    sqlite_path: Path | None = None
    stack = contextlib.ExitStack()
    with stack:
        if store == "sqlite":
            sqlite_path = workdir / "nsdb.sqlite"
            url = f"sqlite:{sqlite_path}"
        elif store == "zookeeper":
            from netloom.lab.zookeeper import ZooKeeperEnsemble

            zk = stack.enter_context(
                ZooKeeperEnsemble(size=3, base_dir=workdir / "zk", heap_mb=512)
            )
            url = f"zookeeper:{zk.connect_string}/netloom-scale"
        else:
            raise InvalidInput(f"unknown store {store!r}: sqlite or zookeeper", field="store")
        stats = workdir / "cluster-stats.json"
        log_path = workdir / "cluster.log"
        log = stack.enter_context(log_path.open("wb"))
        cmd = [
            sys.executable,
            "-m",
            "netloom.bench.scale_cluster",
            str(stats),
            "--store",
            url,
            "--api",
            "127.0.0.1:0",
            "--topology",
            "127.0.0.1:0",
            "--state-dir",
            str(workdir),
            "--host-timeout",
            "30",
            "--log-level",
            "info",
        ]
        # info: the ready line (with the ports the kernel chose) is logged at info
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            api, topo = _wait_ready(proc, log_path)
            yield ClusterProc(proc, api, topo, stats, url, sqlite_path, zk)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> tuple[str, tuple[str, int]]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NetloomError(
                f"cluster exited ({proc.returncode}): "
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        for line in log_path.read_text(errors="replace").splitlines():
            if "event=cluster.ready" in line:
                kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
                return (
                    f"http://127.0.0.1:{kv['api_port']}",
                    ("127.0.0.1", int(kv["topology_port"])),
                )
        time.sleep(0.05)
    raise NetloomError("cluster did not become ready")


# ---- one cloud --------------------------------------------------------------------------------


def _provision(cloud: Cloud, api_url: str, threads: int, vms: int) -> dict[str, Any]:
    """Step 2: the cloud through the REST API; its timing and request figures."""
    prov = Provisioner(api_url, threads)
    t0 = time.monotonic()
    try:
        prov.provision(cloud)
    finally:
        prov.close()
    took = round(time.monotonic() - t0, 2)
    vm_s = prov.vm_port_seconds
    return {
        "provision_s": took,
        "api_requests": prov.requests,
        "api_conflicts_retried": prov.conflicts,
        "requests_per_s": round(prov.requests / took, 1),
        "ports_per_s": round(vms / vm_s, 1) if vm_s else None,
        "provision_phases_s": prov.phases,
    }


def _bring_up(ws: Workers, cloud: Cloud) -> dict[str, Any]:
    """Steps 3-4: every agent started until all its bindings are active, then the warm-up."""
    agents = {
        w: ("start", [(cloud.hosts[h].id, cloud.hosts[h].ip, cloud.expected_ports(h)) for h in hs])
        for w, hs in enumerate(ws.hosts)
    }
    t_start = time.time()
    active = ws.call(agents, 600)
    out: dict[str, Any] = {
        "all_active_s": round(max(max(a.values()) for a in active.values()) - t_start, 2)
    }
    t0 = time.monotonic()
    n, fails = run_checks(ws, cloud, warmup_checks(cloud), 1800)
    out["warmup_s"] = round(time.monotonic() - t0, 2)
    out["warmup_checks"], out["warmup_failures"] = n, len(fails)
    out["warmup_failure_sample"] = fails[:5]
    out["agent100_rss_mb"] = _mb(psutil.Process(ws.pid(ws.big)).memory_info().rss)
    return out


def _agent_stats(ws: Workers, hosts: int) -> dict[str, Any]:
    """What the agents report about themselves, summed over the worker processes."""
    stats = ws.all(("stats",), 60)
    rest = [s for w, s in stats.items() if w != ws.big]
    out: dict[str, Any] = {
        "agent100_records": stats[ws.big]["records_max"],
        "worker_processes": len(rest),
        "worker_rss_mb": [s["rss_mb"] for s in rest],
        "agents_connected": sum(s["connected"] for s in stats.values()),
        "sim_retransmits": sum(s["retransmits"] for s in stats.values()),
        "agent_counters": {
            k: sum(s["agent"][k] for s in stats.values()) for k in stats[ws.big]["agent"]
        },
        "subscribe_wait_ms": wait_figures(list(stats.values())),
    }
    if rest:
        out["agent_records_max"] = max(s["records_max"] for s in rest)
        out["agent_records_mean"] = round(
            sum(s["records_sum"] for s in rest) / max(1, hosts - 1), 1
        )
    return out


def run_cloud(
    hosts: int,
    vms: int,
    gateways: int,
    store: str,
    per_process: int,
    sims: int,
    changes: int,
    full: bool,
    threads: int,
) -> dict[str, Any]:
    """Steps 1-4 (and 5-7 when ``full``) on one cloud; returns the figures."""
    cloud = plan_cloud(hosts, vms, gateways)
    rng = random.Random(11)
    out: dict[str, Any] = {
        "hosts": hosts,
        "vms": vms,
        "gateways": gateways,
        "tenants": len(cloud.tenants),
        "store": store,
    }
    workdir = Path(tempfile.mkdtemp(prefix="netloom-scale-"))
    try:
        with start_cluster(store, workdir) as cl:
            out.update(_provision(cloud, cl.api_url, threads, vms))
            with start_workers(cloud, cl.topology, per_process) as ws:
                up = _bring_up(ws, cloud)
                sample = up.pop("warmup_failure_sample")
                out.update(up)
                out.update(learn_routes(ws, cloud, cl.api_url))
                if full:
                    out.update(_full_steps(ws, cloud, cl, sims, changes, rng))
                    out["warmup_failure_sample"] = sample
                out.update(_agent_stats(ws, hosts))
                out.update(cl.stats())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _full_steps(
    ws: Workers, cloud: Cloud, cl: ClusterProc, sims: int, changes: int, rng: random.Random
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prop = propagation(ws, cloud, cl.api_url, changes, rng)
    out["propagation"] = prop
    lat = [v for k in ("sg", "route") for v in (prop[k]["p99_ms"],) if v is not None]
    out["propagation_p99_ms"] = max(lat) if lat else None
    out["propagation_max_ms"] = max((prop[k]["max_ms"] or 0.0) for k in ("sg", "route"))
    t0 = time.monotonic()
    n, fails = run_checks(ws, cloud, random_checks(cloud, sims, rng), 3600)
    out["sim_s"] = round(time.monotonic() - t0, 2)
    out["sim_checks"], out["sim_failures"] = n, len(fails)
    out["sim_failure_sample"] = fails[:5]
    out["agent100_rss_end_mb"] = _mb(psutil.Process(ws.pid(ws.big)).memory_info().rss)
    return out


def run_scale(
    hosts: int,
    vms: int,
    gateways: int,
    store: str = "sqlite",
    per_process: int = 250,
    sims: int = 10_000,
    changes: int = 5,
    flatness: bool = True,
    threads: int = 4,
) -> dict[str, Any]:
    """The small cloud (flatness reference) first, then the full one."""
    if per_process < 1:
        raise InvalidInput("--agents-per-process must be >= 1", field="agents_per_process")
    plan_cloud(hosts, vms, gateways)  # bad sizes fail before anything starts
    small: dict[str, Any] | None = None
    if flatness:
        s_vms = max(vms // 10, 110)
        s_hosts = 2 + math.ceil((s_vms - 100) / 10) + gateways
        small = run_cloud(s_hosts, s_vms, gateways, store, per_process, 0, 0, False, threads)
    out = run_cloud(hosts, vms, gateways, store, per_process, sims, changes, True, threads)
    if small is not None:
        out["agent100_rss_small_mb"] = small["agent100_rss_mb"]
        out["small_cloud"] = {
            k: small[k]
            for k in (
                "hosts",
                "vms",
                "agent100_rss_mb",
                "agent100_records",
                "all_active_s",
                "provision_s",
                "cluster_rss_mb",
            )
        }
        base = small["agent100_rss_mb"]
        out["agent100_rss_growth_pct"] = round(100 * (out["agent100_rss_mb"] - base) / base, 1)
    out["checks_failed"] = failed_checks(out)
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del app

    @bench.command("scale")
    def scale(
        hosts: Annotated[int, typer.Option(help="hosts (agents)")] = 1000,
        vms: Annotated[int, typer.Option(help="VM ports")] = 10_000,
        gateways: Annotated[int, typer.Option(help="gateway hosts (one uplink each)")] = 6,
        store: Annotated[str, typer.Option(help="sqlite | zookeeper")] = "sqlite",
        agents_per_process: Annotated[int, typer.Option(help="agents per worker process")] = 250,
        sims: Annotated[int, typer.Option(help="random first-packet checks")] = 10_000,
        changes: Annotated[int, typer.Option(help="tenants changed per propagation test")] = 5,
        flatness: Annotated[bool, typer.Option(help="also run the 10x smaller cloud")] = True,
        threads: Annotated[int, typer.Option(help="concurrent API requests")] = 4,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """A cloud of real agents on memory datapaths against one cluster."""
        try:
            r = run_scale(
                hosts, vms, gateways, store, agents_per_process, sims, changes, flatness, threads
            )
        except NetloomError as exc:
            from netloom.errors import print_error

            print_error(exc)
            raise typer.Exit(1) from None
        if as_json:
            typer.echo(json.dumps(r, indent=2))
        else:
            print_table(r)
        if r["checks_failed"]:
            raise typer.Exit(1)


__all__ = ["failed_checks", "plan_cloud", "register", "run_cloud", "run_scale"]
