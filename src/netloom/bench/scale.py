"""``netloom bench scale``: a whole cloud of real agents against one cluster (issue 7).

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
   other agent receiving it is a failure (interest-based fan-out, Decision 6);
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
import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer

from netloom.api.client import ApiClient
from netloom.bench.report import print_figures
from netloom.bench.scale_cloud import Cloud, Provisioner, VmPlan, plan_cloud
from netloom.bench.scale_worker import Check, worker_main
from netloom.bench.stats import percentile, rounded
from netloom.errors import InvalidInput, NetloomError

READY_TIMEOUT_S = 60.0
PROPAGATION_TIMEOUT_S = 30.0
QUIET_S = 0.5  # after the last expected arrival: time for an unwanted one to show up


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


# ---- the workers ------------------------------------------------------------------------------


@dataclass
class Workers:
    procs: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    conns: list[Connection] = field(default_factory=list)
    hosts: list[list[int]] = field(default_factory=list)  # host indexes per worker
    big: int = 0  # index of the worker that runs the 100-VM agent alone

    def call(self, msgs: dict[int, tuple[Any, ...]], timeout: float) -> dict[int, Any]:
        """Send one command to each listed worker; wait for every reply."""
        for w, msg in msgs.items():
            self.conns[w].send(msg)
        pending = {self.conns[w]: w for w in msgs}
        out: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetloomError(
                    f"workers {sorted(pending.values())} did not answer "
                    f"{next(iter(msgs.values()))[0]!r} in {timeout:.0f}s"
                )
            for c in wait(list(pending), left):
                assert isinstance(c, Connection)
                w = pending.pop(c)
                try:
                    status, value = c.recv()
                except EOFError:
                    raise NetloomError(f"worker {w} died") from None
                if status != "ok":
                    raise NetloomError(f"worker {w}: {value}")
                out[w] = value
        return out

    def all(self, msg: tuple[Any, ...], timeout: float) -> dict[int, Any]:
        return self.call(dict.fromkeys(range(len(self.conns)), msg), timeout)

    def pid(self, w: int) -> int:
        pid = self.procs[w].pid
        assert pid is not None
        return pid

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.all(("stop",), 30)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


@contextlib.contextmanager
def start_workers(cloud: Cloud, topology: tuple[str, int], per_process: int) -> Iterator[Workers]:
    ctx = multiprocessing.get_context("spawn")
    groups: list[list[int]] = [[0]]  # the 100-VM agent alone
    rest = list(range(1, len(cloud.hosts)))
    n = max(1, math.ceil(len(rest) / per_process)) if rest else 0
    for i in range(n):
        groups.append(rest[i::n])
    ws = Workers(hosts=groups)
    try:
        for g in groups:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, topology, len(g) + 64), daemon=True)
            p.start()
            child.close()
            ws.procs.append(p)
            ws.conns.append(parent)
        for w, c in enumerate(ws.conns):
            if not c.poll(READY_TIMEOUT_S):
                raise NetloomError(f"worker {w} did not start")
            c.recv()
        yield ws
    finally:
        ws.stop()


# ---- the checks -------------------------------------------------------------------------------


def _expect(cloud: Cloud, src: VmPlan, dst: VmPlan) -> tuple[Any, ...]:
    if src.tenant != dst.tenant:
        return ("drop",)
    if src.host == dst.host:
        return ("local", dst.id)
    from netloom.packet.util import ip_to_int

    return ("tunnel", dst.tunnel_key, ip_to_int(cloud.hosts[dst.host].ip))


def make_check(cloud: Cloud, src: VmPlan, dst: VmPlan, sport: int) -> Check:
    t = cloud.tenants[src.tenant]
    same_net = src.tenant == dst.tenant and src.subnet == dst.subnet
    dmac = dst.mac if same_net else t.router_macs[src.subnet]
    return (
        cloud.hosts[src.host].id,
        src.id,
        src.mac,
        src.ip,
        dmac,
        dst.ip,
        sport,
        _expect(cloud, src, dst),
    )


def warmup_checks(cloud: Cloud) -> list[Check]:
    """Every VM port sends to a VM of its tenant on the other bridge (through the router)."""
    out: list[Check] = []
    for v in cloud.vms:
        peers = [cloud.vms[i] for i in cloud.tenants[v.tenant].vms if i != v.index]
        other = [p for p in peers if p.subnet != v.subnet] or peers
        if other:
            out.append(make_check(cloud, v, other[v.index % len(other)], 10000 + v.index % 50000))
    return out


def random_checks(cloud: Cloud, n: int, rng: random.Random) -> list[Check]:
    """``n`` random pairs: 80% within a tenant, 20% across tenants."""
    out: list[Check] = []
    for i in range(n):
        src = rng.choice(cloud.vms)
        mates = cloud.tenants[src.tenant].vms
        if (i % 5 or len(cloud.tenants) == 1) and len(mates) > 1:
            dst = cloud.vms[rng.choice([m for m in mates if m != src.index])]
        elif len(cloud.tenants) > 1:
            other = (src.tenant + rng.randrange(1, len(cloud.tenants))) % len(cloud.tenants)
            dst = cloud.vms[rng.choice(cloud.tenants[other].vms)]
        else:
            continue
        out.append(make_check(cloud, src, dst, 20000 + i % 40000))
    return out


def run_checks(
    ws: Workers, cloud: Cloud, checks: list[Check], timeout: float
) -> tuple[int, list[str]]:
    where = {cloud.hosts[h].id: w for w, hs in enumerate(ws.hosts) for h in hs}
    per: dict[int, list[Check]] = {}
    for c in checks:
        per.setdefault(where[c[0]], []).append(c)
    replies = ws.call({w: ("checks", cs) for w, cs in per.items()}, timeout)
    failures = [
        f"{per[w][i][1][:8]}->{per[w][i][5]}: {why}"
        for w, res in replies.items()
        for i, (ok, why) in enumerate(res)
        if not ok
    ]
    return len(checks), failures


# ---- propagation -------------------------------------------------------------------------------


def propagation(
    ws: Workers, cloud: Cloud, api_url: str, changes: int, rng: random.Random
) -> dict[str, Any]:
    """SG rule creates and route creates on ``changes`` tenants each (one on a tenant of the
    100-VM host); per-agent latency from the API call's return to the change applied."""
    full = [
        t for t in cloud.tenants if {cloud.vms[i].subnet for i in t.vms} == {0, 1}
    ]  # warm-up went through router
    big_tenants = [t for t in full if any(cloud.vms[i].host == 0 for i in t.vms)]
    picks = rng.sample(full, min(changes, len(full)))
    if big_tenants and not any(t in big_tenants for t in picks):
        picks[0] = big_tenants[0]
    result: dict[str, Any] = {}
    with ApiClient(api_url) as api:
        for what in ("sg", "route"):
            parents = {t.ingress_chain if what == "sg" else t.router_id: t for t in picks}
            ws.all(("track", list(parents)), 30)
            sent: dict[str, float] = {}
            began: dict[str, float] = {}
            for pid in parents:
                began[pid] = time.time()
                if what == "sg":
                    api.create(
                        "rules",
                        {
                            "chain_id": pid,
                            "position": 25,
                            "action": "accept",
                            "nw_proto": 6,
                            "tp_dst": {"start": 80, "end": 80},
                        },
                    )
                else:
                    api.create(
                        "routes", {"router_id": pid, "dst": "192.0.2.0/24", "type": "blackhole"}
                    )
                sent[pid] = time.time()
            need = {
                pid: {cloud.hosts[cloud.vms[i].host].id for i in t.vms}
                for pid, t in parents.items()
            }
            seen = _wait_seen(ws, need)
            lat: list[float] = []
            lat_call: list[float] = []  # from the start of the API call (includes the commit)
            missing = extra = 0
            for pid in parents:
                got = {h: ts for h, s in seen.items() for p, ts in s.items() if p == pid}
                # an agent may apply the change before the HTTP answer is back: 0, not < 0
                lat += [max(0.0, (got[h] - sent[pid]) * 1000) for h in need[pid] if h in got]
                lat_call += [(got[h] - began[pid]) * 1000 for h in need[pid] if h in got]
                missing += len(need[pid] - set(got))
                extra += len(set(got) - need[pid])
            result[what] = {
                "changes": len(parents),
                "agents_needing": sum(map(len, need.values())),
                "p50_ms": rounded(percentile(lat, 0.5), 1),
                "p99_ms": rounded(percentile(lat, 0.99), 1),
                "max_ms": round(max(lat), 1) if lat else None,
                "from_call_start_p99_ms": rounded(percentile(lat_call, 0.99), 1),
                "missing": missing,
                "unwanted": extra,
            }
    return result


def _wait_seen(ws: Workers, need: dict[str, set[str]]) -> dict[str, dict[str, float]]:
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
    complete_at: float | None = None
    while True:
        seen: dict[str, dict[str, float]] = {}
        for rep in ws.all(("tracked",), 30).values():
            seen.update(rep)
        done = all(h in seen and p in seen[h] for p, hs in need.items() for h in hs)
        now = time.monotonic()
        if done and complete_at is None:
            complete_at = now
        if (complete_at is not None and now - complete_at >= QUIET_S) or now > deadline:
            return seen
        time.sleep(0.05)


def _wait_figures(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Subscribe -> snapshot waits over every agent: count, mean, p50/p99 (upper bound of the
    log2 bucket: "under N ms") and max, as the agents saw them."""
    hist = [sum(col) for col in zip(*(s["snap_waits"] for s in stats), strict=True)]
    n = sum(hist)

    def under(q: float) -> float | None:
        if not n:
            return None
        acc = 0
        for k, c in enumerate(hist):
            acc += c
            if acc >= q * n:
                return float(2**k) if k < len(hist) - 1 else None
        return None

    return {
        "count": n,
        "mean": round(1000 * sum(s["snap_wait_sum_s"] for s in stats) / n, 2) if n else None,
        "p50_under": under(0.5),
        "p99_under": under(0.99),
        "max": round(1000 * max(s["snap_wait_max_s"] for s in stats), 1),
    }


# ---- one cloud --------------------------------------------------------------------------------


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
            prov = Provisioner(cl.api_url, threads)
            t0 = time.monotonic()
            try:
                prov.provision(cloud)
            finally:
                prov.close()
            out["provision_s"] = round(time.monotonic() - t0, 2)
            out["api_requests"] = prov.requests
            out["api_conflicts_retried"] = prov.conflicts
            out["requests_per_s"] = round(prov.requests / out["provision_s"], 1)
            vm_s = prov.phases.get("vm_ports", 0.0)
            out["ports_per_s"] = round(vms / vm_s, 1) if vm_s else None
            out["provision_phases_s"] = prov.phases
            with start_workers(cloud, cl.topology, per_process) as ws:
                agents = {
                    w: (
                        "start",
                        [
                            (cloud.hosts[h].id, cloud.hosts[h].ip, cloud.expected_ports(h))
                            for h in hs
                        ],
                    )
                    for w, hs in enumerate(ws.hosts)
                }
                t_start = time.time()
                active = ws.call(agents, 600)
                out["all_active_s"] = round(
                    max(max(a.values()) for a in active.values()) - t_start, 2
                )
                t0 = time.monotonic()
                n, fails = run_checks(ws, cloud, warmup_checks(cloud), 1800)
                out["warmup_s"] = round(time.monotonic() - t0, 2)
                out["warmup_checks"], out["warmup_failures"] = n, len(fails)
                out["agent100_rss_mb"] = _mb(psutil.Process(ws.pid(ws.big)).memory_info().rss)
                if full:
                    out.update(_full_steps(ws, cloud, cl, sims, changes, rng))
                    out["warmup_failure_sample"] = fails[:5]
                stats = ws.all(("stats",), 60)
                out["agent100_records"] = stats[ws.big]["records_max"]
                rest = [s for w, s in stats.items() if w != ws.big]
                out["worker_processes"] = len(rest)
                out["worker_rss_mb"] = [s["rss_mb"] for s in rest]
                out["agents_connected"] = sum(s["connected"] for s in stats.values())
                out["sim_retransmits"] = sum(s["retransmits"] for s in stats.values())
                out["agent_counters"] = {
                    k: sum(s["agent"][k] for s in stats.values()) for k in stats[ws.big]["agent"]
                }
                out["subscribe_wait_ms"] = _wait_figures(list(stats.values()))
                if rest:
                    out["agent_records_max"] = max(s["records_max"] for s in rest)
                    out["agent_records_mean"] = round(
                        sum(s["records_sum"] for s in rest) / max(1, hosts - 1), 1
                    )
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


def failed_checks(r: dict[str, Any]) -> list[str]:
    bad = []
    if r.get("sim_failures"):
        bad.append(f"{r['sim_failures']} first-packet checks failed")
    if r.get("warmup_failures"):
        bad.append(f"{r['warmup_failures']} warm-up checks failed")
    for k in ("sg", "route"):
        p = r.get("propagation", {}).get(k, {})
        if p.get("missing"):
            bad.append(f"{k} change missing on {p['missing']} agents")
        if p.get("unwanted"):
            bad.append(f"{k} change sent to {p['unwanted']} agents that do not need it")
    if r.get("store_watches") != 1:
        bad.append(f"store watches = {r.get('store_watches')} (want 1)")
    if r.get("agents_connected") != r.get("hosts"):
        bad.append(f"{r.get('agents_connected')} of {r.get('hosts')} agents connected")
    return bad


def _print_table(r: dict[str, Any]) -> None:
    p = r.get("propagation", {})
    rows = [
        (
            "cloud",
            f"{r['hosts']} hosts, {r['vms']} VMs, {r['tenants']} tenants, "
            f"{r['gateways']} gateways, store {r['store']}",
        ),
        (
            "provisioning",
            f"{r['provision_s']} s, {r['api_requests']} requests "
            f"({r['requests_per_s']}/s), VM ports {r['ports_per_s']}/s",
        ),
        ("all bindings active", f"{r['all_active_s']} s"),
        (
            "warm-up first packets",
            f"{r['warmup_checks']} in {r['warmup_s']} s, {r['warmup_failures']} failed",
        ),
    ]
    for k, name in (("sg", "SG rule propagation"), ("route", "route propagation")):
        if k in p:
            q = p[k]
            rows.append(
                (
                    name,
                    f"p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms, max {q['max_ms']} ms"
                    f" over {q['agents_needing']} agents; missing {q['missing']}, "
                    f"unwanted {q['unwanted']}",
                )
            )
    rows += [
        (
            "first-packet checks",
            f"{r.get('sim_checks')} in {r.get('sim_s')} s, {r.get('sim_failures')} failed",
        ),
        (
            "100-VM agent RSS",
            f"{r['agent100_rss_mb']} MB after warm-up (small cloud "
            f"{r.get('agent100_rss_small_mb')} MB, "
            f"{r.get('agent100_rss_growth_pct')}%), "
            f"{r.get('agent100_rss_end_mb')} MB at the end",
        ),
        (
            "cluster",
            f"RSS {r['cluster_rss_mb']} MB (peak {r.get('cluster_peak_rss_mb')}), "
            f"CPU {r['cluster_cpu_s']} s",
        ),
        (
            "store",
            f"{r.get('store_mb', r.get('zk_data_mb'))} MB"
            + (f", {r['zk_znodes']} znodes" if "zk_znodes" in r else "")
            + f", watches {r['store_watches']}",
        ),
        ("agent workers", f"{r['worker_processes']} processes, RSS {r['worker_rss_mb']} MB"),
        ("checks", "all passed" if not r["checks_failed"] else "; ".join(r["checks_failed"])),
    ]
    print_figures("netloom bench scale", rows)


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
        """A cloud of real agents on memory datapaths against one cluster (issue 7)."""
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
            _print_table(r)
        if r["checks_failed"]:
            raise typer.Exit(1)


__all__ = ["failed_checks", "plan_cloud", "register", "run_cloud", "run_scale"]
