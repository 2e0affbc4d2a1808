"""``netloom bench agent100``: the plan (unit) and a small real run (netns)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from netloom.bench.dense_host.plan import Options, path_of, plan_pings, plan_streams, plan_vms
from netloom.bench.dense_host.plumbing import count_bpf_attached
from netloom.datapath.pins import PIN_ROOT
from netloom.errors import InvalidInput
from netloom.lab import netns, nsexec
from netloom.lab.cluster import netloom_argv
from netloom.lab.state import state_path


@pytest.mark.unit
def test_plan_spreads_vms_over_bridges_with_unique_addresses() -> None:
    specs = plan_vms(Options(vms=100, remote_vms=4, bridges=4))
    assert len(specs) == 104
    assert sum(s.host == 1 for s in specs) == 100
    per_bridge = [sum(s.bridge == b for s in specs) for b in range(4)]
    assert per_bridge == [26, 26, 26, 26]
    assert len({s.ip for s in specs}) == 104
    assert all(s.ip.startswith(f"10.0.{s.bridge + 1}.") for s in specs)
    assert {s.bridge for s in specs if s.host == 2} == {0, 1, 2, 3}


@pytest.mark.unit
def test_ping_pairs_cover_every_path_kind() -> None:
    specs = plan_vms(Options(vms=20, remote_vms=3))
    pairs = plan_pings(specs, 30, random.Random(1))
    kinds = [path_of(a, b) for a, b in pairs]
    assert kinds.count("bridged") == kinds.count("routed") == kinds.count("cross-host") == 10
    assert all(a != b for a, b in pairs)


@pytest.mark.unit
def test_streams_use_disjoint_vms_and_one_crosses_hosts() -> None:
    specs = plan_vms(Options(vms=10, remote_vms=2))
    pairs = plan_streams(specs, 4, random.Random(7))
    assert len(pairs) == 4
    ends = [v.name for p in pairs for v in p]
    assert len(set(ends)) == 8
    assert [path_of(a, b) for a, b in pairs].count("cross-host") == 1


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        Options(vms=7),
        Options(vms=251),
        Options(bridges=0),
        Options(vms=8, streams=5),
        Options(seconds=0),
    ],
)
def test_bad_sizes_are_refused(bad: Options) -> None:
    with pytest.raises(InvalidInput):
        bad.check()


@pytest.mark.netns
def test_bpf_attached_count_reads_the_kernel(lab_name: str) -> None:
    """No filter: 0; a clsact qdisc with a non-BPF filter: still 0 (only ``bpf`` counts)."""
    ns = f"{lab_name}-x"
    netns.create(ns)
    try:
        netns.create_veth(ns, "a0", ns, "b0")
        assert count_bpf_attached(ns, ["a0", "missing0"]) == 0
        nsexec.run(ns, ["tc", "qdisc", "add", "dev", "a0", "clsact"])
        nsexec.run(
            ns,
            ["tc", "filter", "add", "dev", "a0", "ingress", "matchall", "action", "pass"],
            check=False,
        )
        assert count_bpf_attached(ns, ["a0"]) == 0
    finally:
        netns.delete(ns)


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.slow
def test_agent100_small_run_passes_and_leaves_nothing(lab_name: str) -> None:
    done = subprocess.run(
        [
            *netloom_argv(),
            "bench",
            "agent100",
            "--vms",
            "10",
            "--remote-vms",
            "2",
            "--pings",
            "40",
            "--seconds",
            "2",
            "--name",
            lab_name,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    res = json.loads(done.stdout)
    assert res["ok"] and res["error"] is None
    assert res["checks"] == {
        "all_bindings_active": True,
        "ping_mesh": True,
        "security_group": True,
        "iperf3": True,
    }
    assert res["bindings_active"] == 12
    assert res["pings"]["pairs"] == res["pings"]["answered"] == 40
    by_path = res["pings"]["by_path"]
    assert set(by_path) == {"bridged", "routed", "cross-host"}
    assert sum(p["pairs"] for p in by_path.values()) == 40
    assert res["pings"]["first_try"] <= 40 and res["ping_failures"] == []
    assert res["security_group"]["tcp/22"] == "timeout"
    streams = res["iperf3"]
    assert len(streams) == 4 and all(s["gbit_s"] > 0 and s["error"] is None for s in streams)
    assert res["iperf3_total_gbit_s"] == pytest.approx(sum(s["gbit_s"] for s in streams), abs=0.01)
    assert [s["path"] for s in streams].count("cross-host") == 1
    agent = res["agent"]
    assert agent["upcalls_end"] > 0 and agent["flows_installed_end"] > 0
    assert agent["flows_installed_end"] >= agent["flows_now_end"]  # a total never below "now"
    assert agent["simulations_end"] >= agent["simulations_bound"]  # counters only grow
    timings = res["timings"]
    assert set(timings) >= {"vms_up_s", "provision_s", "all_active_s", "iperf3_s"}
    assert timings["all_active_s"] >= timings["provision_s"]  # measured from the same start
    # everything removed: namespaces, state file, pins, processes
    assert netns.list_netns(f"{lab_name}-") == []
    assert not state_path(lab_name).exists()
    pins = [item.split(" ", 1)[1] for item in res["cleaned_up"] if item.startswith("bpf ")]
    assert len(pins) == 2 and all(p.startswith(str(PIN_ROOT)) for p in pins)
    assert not any(Path(p).exists() for p in pins)
    assert (
        psutil.pid_exists(agent["pid"]) is False
        or psutil.Process(agent["pid"]).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.netns
@pytest.mark.bpf
def test_sigterm_midway_removes_the_lab(lab_name: str) -> None:
    """SIGTERM once the bindings are active (read from the progress lines, not a sleep): exit
    130 and nothing of the lab left."""
    proc = subprocess.Popen(
        [
            *netloom_argv(),
            "bench",
            "agent100",
            "--vms",
            "8",
            "--remote-vms",
            "0",
            "--name",
            lab_name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "bindings active" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130
    assert netns.list_netns(f"{lab_name}-") == []
    assert not state_path(lab_name).exists()
