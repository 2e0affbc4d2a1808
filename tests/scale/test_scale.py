"""Smoke test of ``netloom bench scale``: the real command on a small cloud, and the judge
that decides whether a first packet landed where the plan says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netloom.bench.scale_cloud import plan_cloud
from netloom.bench.scale_worker import _judge
from netloom.datapath.base import Fate, Outcome
from netloom.errors import InvalidInput


class _Agent:
    def dp_port_of(self, port_id: str) -> int:
        return {"p": 5}.get(port_id, 0)


@pytest.mark.unit
def test_plan_places_100_on_one_host_and_10_on_the_others() -> None:
    c = plan_cloud(20, 200, 2)
    per_host = [sum(1 for v in c.vms if v.host == h) for h in range(20)]
    assert per_host[0] == 100 and set(per_host[1:11]) == {10} and sum(per_host) == 200
    assert c.gateways == [18, 19] and len(c.tenants) == 10
    assert len({v.mac for v in c.vms}) == 200 and len({v.ip for v in c.vms}) == 200
    with pytest.raises(InvalidInput):
        plan_cloud(5, 200, 2)


@pytest.mark.unit
def test_big_host_reaches_the_same_tenants_in_a_small_and_a_big_cloud() -> None:
    small, big = plan_cloud(98, 1000, 6), plan_cloud(1000, 10_000, 6)
    for c in (small, big):
        on_big = [v for v in c.vms if v.host == 0]
        assert len(on_big) == 100
        assert {v.tenant for v in on_big} == set(range(50))  # 2 per tenant, one per bridge
        assert {(v.tenant, v.subnet) for v in on_big} == {(t, s) for t in range(50) for s in (0, 1)}
    assert len(big.tenants) == 10 * len(small.tenants)


@pytest.mark.unit
def test_judge_rejects_wrong_destinations() -> None:
    a = _Agent()
    tun = [Outcome(Fate.TUNNEL, vni=7, remote=9)]
    assert _judge(a, 1, tun, ("tunnel", 7, 9))[0]  # type: ignore[arg-type]
    assert not _judge(a, 1, tun, ("tunnel", 8, 9))[0]  # type: ignore[arg-type]
    assert not _judge(a, 1, tun, ("drop",))[0]  # type: ignore[arg-type]
    assert not _judge(a, 1, [], ("tunnel", 7, 9))[0]  # type: ignore[arg-type]
    out = [Outcome(Fate.OUTPUT, port=5)]
    assert _judge(a, 1, out, ("local", "p"))[0]  # type: ignore[arg-type]
    assert not _judge(a, 1, [Outcome(Fate.OUTPUT, port=6)], ("local", "p"))[0]  # type: ignore[arg-type]
    # an ICMP error back to the sender is still a drop of the pair
    assert _judge(a, 1, [Outcome(Fate.OUTPUT, port=1)], ("drop",))[0]  # type: ignore[arg-type]


@pytest.mark.slow
def test_scale_command_small_cloud() -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "netloom"),
            "bench",
            "scale",
            "--hosts",
            "20",
            "--vms",
            "200",
            "--gateways",
            "2",
            "--sims",
            "500",
            "--agents-per-process",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    r = json.loads(proc.stdout)
    for key in (
        "hosts",
        "vms",
        "gateways",
        "provision_s",
        "all_active_s",
        "propagation_p99_ms",
        "sim_checks",
        "sim_failures",
        "agent100_rss_mb",
        "agent100_rss_small_mb",
        "cluster_rss_mb",
    ):
        assert key in r, key
    assert (r["hosts"], r["vms"], r["gateways"]) == (20, 200, 2)
    assert r["sim_checks"] == 500 and r["sim_failures"] == 0 and r["warmup_failures"] == 0
    assert r["agents_connected"] == 20 and r["store_watches"] == 1
    assert r["worker_processes"] == 2
    for k in ("sg", "route"):
        p = r["propagation"][k]
        assert p["agents_needing"] > 0 and p["missing"] == 0 and p["unwanted"] == 0
    assert r["checks_failed"] == []
    learned = r["learned_routes"]  # 2 gateways' reports, written by the cluster
    assert learned["routes"] == learned["want"] == 2 * 100
