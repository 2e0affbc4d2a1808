"""``netloom bench scale``'s agents: worker processes each running many real agents
(:mod:`netloom.bench.scale_worker`), the first-packet checks asked of them, and the propagation
of topology changes made through the API to the agents that need them."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from netloom.api.client import ApiClient
from netloom.bench.scale_cloud import Cloud, TenantPlan, VmPlan, peer_address
from netloom.bench.scale_worker import Check, worker_main
from netloom.bench.stats import percentile, rounded
from netloom.errors import NetloomError

READY_TIMEOUT_S = 60.0
PROPAGATION_TIMEOUT_S = 30.0
BLACKHOLE_DST = "192.0.2.0/24"  # RFC 5737: the route a propagation check creates
QUIET_S = 0.5  # after the last expected arrival: time for an unwanted one to show up


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


# ---- learned routes ---------------------------------------------------------------------------

# what every gateway's peer announces: a default route and more prefixes (RFC 6598 shared
# address space: the scale cloud's underlay takes RFC 2544's 198.18.0.0/15)
LEARNED_PREFIXES = ["0.0.0.0/0", *(f"100.64.{i}.0/24" for i in range(99))]


def learn_routes(ws: Workers, cloud: Cloud, api_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Every gateway agent reports the routes its uplink's peer announces (and the session
    established) through its topology connection; the time until the cluster has written them
    all, read back through the API."""
    where = {h: w for w, hs in enumerate(ws.hosts) for h in hs}
    msgs: dict[int, list[tuple[str, str, str, str, list[str]]]] = {}
    for g, hi in enumerate(cloud.gateways):
        item = (cloud.hosts[hi].id, cloud.uplinks[g], cloud.peers[g], peer_address(g))
        msgs.setdefault(where[hi], []).append((*item, LEARNED_PREFIXES))
    if not msgs:
        return {}
    t0 = time.monotonic()
    ws.call({w: ("learn", items) for w, items in msgs.items()}, timeout)
    want = len(cloud.gateways) * len(LEARNED_PREFIXES)
    have = 0
    with ApiClient(api_url) as api:
        while time.monotonic() - t0 < timeout:
            routes = api.list("routes", {"router_id": cloud.provider_router})
            have = sum(1 for r in routes if r.get("learned_from"))
            if have >= want:
                break
            time.sleep(0.05)
    return {"learned_routes": {"routes": have, "want": want, "ms": _ms(time.monotonic() - t0)}}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


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
    with ApiClient(api_url) as api:
        return {what: _propagate(ws, cloud, api, what, picks) for what in ("sg", "route")}


def _change(api: ApiClient, what: str, parent: str) -> None:
    if what == "sg":
        rule = {
            "position": 25,
            "action": "accept",
            "nw_proto": 6,
            "tp_dst": {"start": 80, "end": 80},
        }
        api.create("rules", {"chain_id": parent, **rule})
    else:
        api.create("routes", {"router_id": parent, "dst": BLACKHOLE_DST, "type": "blackhole"})


def _propagate(
    ws: Workers, cloud: Cloud, api: ApiClient, what: str, picks: list[TenantPlan]
) -> dict[str, Any]:
    """One kind of change (``sg`` or ``route``) on each picked tenant; its figures."""
    parents = {t.ingress_chain if what == "sg" else t.router_id: t for t in picks}
    ws.all(("track", list(parents)), 30)
    sent: dict[str, float] = {}
    began: dict[str, float] = {}
    for pid in parents:
        began[pid] = time.time()
        _change(api, what, pid)
        sent[pid] = time.time()
    need = {pid: {cloud.hosts[cloud.vms[i].host].id for i in t.vms} for pid, t in parents.items()}
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
    return {
        "changes": len(parents),
        "agents_needing": sum(map(len, need.values())),
        "p50_ms": rounded(percentile(lat, 0.5), 1),
        "p99_ms": rounded(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "from_call_start_p99_ms": rounded(percentile(lat_call, 0.99), 1),
        "missing": missing,
        "unwanted": extra,
    }


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


def wait_figures(stats: list[dict[str, Any]]) -> dict[str, Any]:
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


__all__ = [
    "READY_TIMEOUT_S",
    "Workers",
    "make_check",
    "propagation",
    "random_checks",
    "run_checks",
    "start_workers",
    "wait_figures",
    "warmup_checks",
]
