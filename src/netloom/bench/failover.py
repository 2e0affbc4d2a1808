"""``netloom bench failover``: a cluster process killed under load.

A lab with a 3-member ZooKeeper ensemble, three cluster processes on it and one VM per host
(bpf datapath). While every VM pings the VM of the next host and ``clients`` threads create
ports through API clients given all three endpoints (each starting on a different one), the
cluster process holding the most agents' topology connections is SIGKILLed. Measured: the
longest a call that failed took until its retry succeeded (``retry_max_ms``), ports whose
create succeeded but are missing (``ports_lost``) or present twice (``ports_duplicated``),
the agents' reconnection time as they report it (``reconnect_p99_ms``, over the agents that
were on the dead process) and the pings lost (``pings_lost``).

The lab is ``nlf<5 hex>``; :func:`run` removes it, pass or fail (``netloom lab down --name``
after a crash).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.bench.procs import AGENT_ALIVE_TIMEOUT_S, Progress
from netloom.bench.stats import percentile, rounded
from netloom.errors import LabError, NetloomError
from netloom.lab import nsexec, probes
from netloom.lab.cluster import NetnsApiClient
from netloom.lab.lab import Lab

CLUSTERS = 3
PING_INTERVAL_S = 0.1
RECONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Options:
    clients: int = 8
    hosts: int = 3
    before: float = 1.5  # seconds of load before the kill
    after: float = 4.0  # seconds of load after it


@dataclass
class Client:
    """One creating thread's record."""

    index: int
    created: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    failed: int = 0
    retry_waits: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # every successful call's


def _create_loop(lab: Lab, bridge: str, client: Client, stop: threading.Event) -> None:
    rec = lab.state.cluster
    assert rec is not None
    urls = rec.api_url.split(",")
    mine = ",".join(urls[client.index % len(urls) :] + urls[: client.index % len(urls)])
    with NetnsApiClient(rec.netns, mine, timeout=10.0) as api:
        n = 0
        while not stop.is_set():
            name = f"fo-{client.index}-{n}"
            n += 1
            start = time.monotonic()
            try:
                doc = api.create("ports", {"device_id": bridge, "type": "bridge", "name": name})
            except NetloomError:
                client.failed += 1
                continue
            client.durations.append(time.monotonic() - start)
            client.created.append((str(doc["id"]), name))
        client.retry_waits = list(api.retry_waits)


def _topology_conns(lab: Lab) -> list[int]:
    """Established agent connections per cluster process (``ss`` in the switch namespace)."""
    rec = lab.state.cluster
    assert rec is not None
    out = []
    for endpoint in rec.topology.split(","):
        port = endpoint.rsplit(":", 1)[1]
        done = nsexec.run(rec.netns, ["ss", "-Htn", "state", "established", f"sport = :{port}"])
        out.append(len([line for line in done.stdout.splitlines() if line.strip()]))
    return out


def _cluster_pids(lab: Lab) -> list[int]:
    return [p.pid for p in lab.state.processes if p.role == "cluster"]


def _agent_gauges(lab: Lab) -> dict[str, tuple[float, float]]:
    """Per host namespace: (topology connects, last reconnection seconds)."""
    families = {
        "connects": "netloom_agent_topology_connects",
        "wait": "netloom_agent_topology_reconnect_seconds",
    }
    out = {}
    for h in lab.state.hosts:
        got = probes.metric_totals(probes.fetch_metrics(h.netns, METRICS_PORT), families)
        out[h.netns] = (got["connects"], got["wait"])
    return out


def _wait_alive(lab: Lab) -> None:
    api = lab.api()
    deadline = time.monotonic() + AGENT_ALIVE_TIMEOUT_S
    while True:
        alive = [bool(h.get("alive")) for h in api.list("hosts")]
        if alive and all(alive):
            return
        if time.monotonic() > deadline:
            raise LabError("the lab's agents did not come alive")
        time.sleep(0.2)


@dataclass
class Pinger:
    """One VM pinging the VM of the next host until told to stop (in-process ICMP: the lab
    machines have no ``ping`` binary)."""

    netns: str
    dst: str
    sent: int = 0
    received: int = 0

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sent += 1
            self.received += len(probes.ping(self.netns, self.dst, timeout=1.0))
            stop.wait(PING_INTERVAL_S)


def _pingers(lab: Lab) -> list[Pinger]:
    vms = lab.state.vms
    out = []
    for i, vm in enumerate(vms):
        peer = vms[(i + 1) % len(vms)]
        assert peer.ip is not None
        pinger = Pinger(vm.netns, peer.ip.split("/")[0])
        if not probes.ping(pinger.netns, pinger.dst, count=3, timeout=2.0):  # warm, and up
            raise LabError(f"{vm.name} cannot ping {peer.name}")
        out.append(pinger)
    return out


def _reconnects(lab: Lab, before: dict[str, tuple[float, float]], expected: int) -> list[float]:
    """The reconnection times of the agents that moved, once ``expected`` of them have."""
    deadline = time.monotonic() + RECONNECT_TIMEOUT_S
    while True:
        now = _agent_gauges(lab)
        moved = [now[ns][1] for ns in now if now[ns][0] > before[ns][0]]
        if len(moved) >= expected or time.monotonic() > deadline:
            return moved
        time.sleep(0.1)


def _measure(lab: Lab, opts: Options, progress: Progress) -> dict[str, Any]:
    vm0 = lab.state.vms[0]
    assert vm0.port_id is not None
    bridge = str(lab.api().get("ports", vm0.port_id)["device_id"])
    conns = _topology_conns(lab)
    victim = max(range(len(conns)), key=lambda i: conns[i])
    gauges = _agent_gauges(lab)
    pingers = _pingers(lab)
    clients = [Client(i) for i in range(opts.clients)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_create_loop, args=(lab, bridge, c, stop), daemon=True)
        for c in clients
    ]
    threads += [threading.Thread(target=p.loop, args=(stop,), daemon=True) for p in pingers]
    for t in threads:
        t.start()
    time.sleep(opts.before)
    progress(f"killing cluster process {victim} ({conns[victim]} agents on it)")
    os.kill(_cluster_pids(lab)[victim], signal.SIGKILL)
    killed_at = time.monotonic()
    moved = _reconnects(lab, gauges, conns[victim])
    time.sleep(max(0.0, killed_at + opts.after - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    pings = (sum(p.sent for p in pingers), sum(p.received for p in pingers))
    return _tally(lab, clients, Kill(victim, conns, moved), pings)


@dataclass(frozen=True)
class Kill:
    """Which cluster process died, the agents each held, the reconnection times seen."""

    victim: int
    conns: list[int]
    moved: list[float]


def _tally(lab: Lab, clients: list[Client], kill: Kill, pings: tuple[int, int]) -> dict[str, Any]:
    victim, conns, moved = kill.victim, kill.conns, kill.moved
    listed = [p for p in lab.api().list("ports") if str(p.get("name", "")).startswith("fo-")]
    names = Counter(str(p["name"]) for p in listed)
    ids = {str(p["id"]) for p in listed}
    created = [pair for c in clients for pair in c.created]
    waits = [w for c in clients for w in c.retry_waits]
    calls = [d for c in clients for d in c.durations]
    return {
        "retry_max_ms": rounded(1000 * max(waits), 1) if waits else None,
        "ports_lost": sum(1 for id, _ in created if id not in ids),
        "ports_duplicated": sum(n - 1 for n in names.values() if n > 1),
        "reconnect_p99_ms": rounded(1000 * (percentile(moved, 0.99) or 0.0), 1) if moved else None,
        "pings_lost": pings[0] - pings[1],
        "ports_created": len(created),
        "calls_retried": len(waits),
        "calls_failed": sum(c.failed for c in clients),
        # every successful call, retried or not: what a retry costs beyond a call under load
        "call_p50_ms": rounded(1000 * (percentile(calls, 0.5) or 0.0), 1),
        "call_p99_ms": rounded(1000 * (percentile(calls, 0.99) or 0.0), 1),
        "pings_sent": pings[0],
        "agents_on_dead": conns[victim],
        "reconnects": len(moved),
        "killed": victim,
        "clusters": len(conns),
        "clients": len(clients),
        "lab": lab.name,
    }


def run(opts: Options, progress: Progress) -> dict[str, Any]:
    """Build the lab, measure, tear it down (always)."""
    lab = Lab.create(f"nlf{secrets.token_hex(3)[:5]}", store="zookeeper")
    try:
        progress(f"lab {lab.name}: {opts.hosts} hosts, {CLUSTERS} cluster processes")
        lab.up(opts.hosts, 1, datapath="bpf", clusters=CLUSTERS)
        _wait_alive(lab)
        return _measure(lab, opts, progress)
    finally:
        with contextlib.suppress(NetloomError):
            lab.down()


def render(res: dict[str, Any]) -> str:
    keys = ("retry_max_ms", "ports_lost", "ports_duplicated", "reconnect_p99_ms", "pings_lost")
    lines = [f"{k:18} {res[k]}" for k in keys]
    lines.append(
        f"(killed cluster process {res['killed']} of {res['clusters']} with "
        f"{res['agents_on_dead']} agents; {res['reconnects']} reconnected; "
        f"{res['ports_created']} ports created by {res['clients']} clients, "
        f"{res['calls_retried']} calls retried, {res['calls_failed']} failed, call p50 "
        f"{res['call_p50_ms']} ms p99 {res['call_p99_ms']} ms; "
        f"{res['pings_sent']} pings)"
    )
    return "\n".join(lines)


__all__ = ["Options", "render", "run"]
