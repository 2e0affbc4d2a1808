"""``netloom bench perf`` with the real netloom overlay (two bpf agents, a router, FIP NAT)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from netloom.bench.perf.overlay_setup import FLOATING_IP, OverlaySetup
from netloom.bench.perf.setups import OBSERVED
from netloom.bench.perf.workloads import TEST_PORTS, TESTS
from netloom.errors import SetupUnavailable
from netloom.lab import netns, nsexec, probes

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("root")]

CLI = [sys.executable, "-c", "from netloom.cli.main import main; main()"]


def test_overlay_setup_is_named_by_its_options_and_refuses_what_the_lab_cannot_run() -> None:
    assert OverlaySetup(False, 1500).name == "overlay"
    assert OverlaySetup(True, 9000).name == "overlay-fip"
    with pytest.raises(SetupUnavailable, match="1500 or 9000"):
        OverlaySetup(False, 4000)
    assert OverlaySetup(False, 1500, "device").name == "overlay-vxdev"
    with pytest.raises(SetupUnavailable, match="VXLAN"):
        OverlaySetup(False, 1500, "gre")


def _link_packets(ns: str, dev: str) -> int:
    out = nsexec.run(ns, ["ip", "-j", "-s", "link", "show", "dev", dev]).stdout
    st = json.loads(out)[0]["stats64"]
    return int(st["rx"]["packets"]) + int(st["tx"]["packets"])


def _device_packets(ns: str) -> int:
    return _link_packets(ns, "nlvx0")


@pytest.mark.parametrize(
    "vxlan, underlay", [("bpf", "direct"), ("device", "direct"), ("bpf", "switch")]
)
def test_vxlan_in_the_datapath_or_through_the_device(
    made: list[str], vxlan: str, underlay: str
) -> None:
    """``netloom agent --vxlan-encap``: with bpf the hosts' VXLAN devices see (almost) none
    of a TCP stream between the VMs, with device they carry all of it; both deliver. With
    ``underlay="direct"`` the tunnels take the hosts' own cable (``data0``), not the switch."""
    setup = OverlaySetup(False, 1500, vxlan, underlay)
    try:
        ep = setup.up()
        made.extend(setup.namespaces)
        hosts = [n for n in setup.namespaces if n.endswith(("-h1", "-h2"))]
        assert len(hosts) == 2
        before = sum(_device_packets(h) for h in hosts)
        nic = "data0" if underlay == "direct" else "eth0"
        on_wire = _link_packets(hosts[0], nic)
        srv = subprocess.Popen(
            nsexec.nsenter_argv(ep.server_netns, ["iperf3", "-s", "-1", "-p", "5301"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probes.wait_listening(ep.server_netns, 5301, srv)
            out = nsexec.run(
                ep.client_netns,
                ["iperf3", "-c", ep.server_ip, "-p", "5301", "-t", "1", "-J"],
                timeout=30,
            ).stdout
        finally:
            srv.wait(10)
        moved = json.loads(out)["end"]["sum_received"]["bytes"]
        assert moved > 0
        through_device = sum(_device_packets(h) for h in hosts) - before
        assert _link_packets(hosts[0], nic) - on_wire > 1000
        if underlay == "switch":
            assert "data0" not in nsexec.run(hosts[0], ["ip", "-o", "link"]).stdout
        if vxlan == "bpf":
            assert through_device < 20, through_device
        else:
            assert through_device > 1000, through_device
    finally:
        setup.down()
    assert [n for n in made if netns.exists(n)] == []


@pytest.mark.parametrize("groups", ["sg", "no-sg"])
def test_fip_setup_reaches_the_server_by_its_floating_ip_and_leaves_nothing(
    made: list[str], groups: str
) -> None:
    sg = groups == "sg"
    setup = OverlaySetup(True, 1500, sg=sg)
    try:
        ep = setup.up()
        made.extend(setup.namespaces)
        assert ep.server_ip == FLOATING_IP
        assert all(n.startswith("nlb") for n in setup.namespaces)
        # the server VM does not own the FIP: an answer means the router translated it
        assert FLOATING_IP not in nsexec.run(ep.server_netns, ["ip", "-4", "addr"]).stdout
        # a test port answers (a reset: nothing listens yet) through both groups; another
        # port only without them
        assert probes.tcp_connect(ep.client_netns, ep.server_ip, TEST_PORTS[0], 2.0) == "refused"
        other = probes.tcp_connect(ep.client_netns, ep.server_ip, 2222, 1.0)
        assert other == ("timeout" if sg else "refused")
        lab = setup._lab
        assert lab is not None
        ports = {p["name"]: p for p in lab.api().list("ports") if p.get("host_id")}
        assert len(ports) == 2
        assert all(bool(p["inbound_filter_id"]) == sg for p in ports.values())
        assert all(bool(p["outbound_filter_id"]) == sg for p in ports.values())
        if not sg:
            assert probes.ping(ep.client_netns, ep.server_ip, count=2, timeout=2.0)
        assert len(setup.agent_pids()) == 2
        first = setup.upcalls()
        assert first is not None and first > 0  # the warm-up went through the agents
        seen = setup.observe()
        assert seen is not None and set(seen) == set(OBSERVED)
        assert seen["upcalls"] == first and seen["agent_rss_mb"] > 0
    finally:
        setup.down()
        setup.down()  # idempotent
    assert [n for n in made if netns.exists(n)] == []


def test_smoke_run_with_the_overlay_has_kernel_flows_and_cleans_up(made: list[str]) -> None:
    done = subprocess.run(
        [
            *CLI,
            "bench",
            "perf",
            "--reps",
            "1",
            "--duration",
            "1",
            "--no-tool-check",
            "--setups",
            "bare,overlay,overlay-fip",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    made.extend(res["namespaces"])
    assert res["skipped"] == {}
    # bare 2; each lab: switch (management: API, agents), 2 hosts, 2 VMs
    assert len(res["namespaces"]) == 2 + 5 + 5
    assert [n for n in res["namespaces"] if netns.exists(n)] == []
    rep = res["reps"][0]
    for setup in ("overlay", "overlay-fip"):
        for test in TESTS:
            assert rep[setup][test]["value"] > 0, (setup, test)
            want = rep[setup][test]["value"] / rep["bare"][test]["value"]  # one rep: its ratio
            assert res["ratios"][setup][test] == pytest.approx(want), (setup, test)
        assert res["agent_cpu_s"][setup] is not None
        lat = res["rr_half_rtt_us"][setup]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p99"], lat
    # flows are in the kernel: a TCP stream moves ~10^5+ packets a second, the agents see at
    # most a few per connection (CRR opens thousands of connections: one flow each at most)
    stream_pkts = res["medians"]["overlay"]["tcp_stream"] * 1e6 / 8 / 1500  # 1 s at that rate
    ups = res["upcalls"]
    assert ups["overlay"] is not None and ups["overlay-fip"] is not None
    per_test = [
        res["reps"][0][s][t]["upcalls"]
        for s in ("overlay", "overlay-fip")
        for t in ("tcp_stream", "tcp_maerts", "tcp_rr")
    ]
    assert all(u is not None and u < 0.001 * stream_pkts for u in per_test), per_test
    crr = res["reps"][0]["overlay"]["tcp_crr"]
    assert crr["upcalls"] <= 4 * crr["value"] * 1 + 100, crr


def _bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*CLI, "bench", "perf", "--duration", "1", "--no-tool-check", "--json", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    res: dict[str, Any] = json.loads(done.stdout)
    return res


def test_smoke_run_over_the_switch_counts_upcalls_per_setup_and_cleans_up(
    made: list[str],
) -> None:
    """Bare host to host and the overlay VM to VM over the lab switch, with security groups:
    the CRR runs' upcalls per setup and per rep, medians with their ranges."""
    res = _bench(
        "--underlay",
        "switch",
        "--setups",
        "bare,overlay",
        "--tests",
        "tcp_rr,tcp_crr",
        "--reps",
        "2",
    )
    made.extend(res["namespaces"])
    assert [n for n in res["namespaces"] if netns.exists(n)] == []
    p = res["params"]
    assert (p["underlay"], p["sg"], p["series"], p["tests"]) == (
        "switch",
        True,
        False,
        ["tcp_rr", "tcp_crr"],
    )
    # bare: 2 hosts and their switch; the lab: switch, 2 hosts, 2 VMs
    assert len(res["namespaces"]) == 3 + 5
    assert set(res["medians"]["overlay"]) == {"tcp_rr", "tcp_crr"}
    for setup in ("bare", "overlay"):
        for test in ("tcp_rr", "tcp_crr"):
            low, high = res["ranges"][setup][test]
            assert 0 < low <= res["medians"][setup][test] <= high
    low, high = res["ratio_range"]["overlay"]["tcp_crr"]
    assert low <= res["ratios"]["overlay"]["tcp_crr"] <= high
    ups = res["upcalls_per_setup"]
    assert ups["bare"] is None
    per_rep = [r["overlay"]["tcp_crr"]["upcalls"] for r in res["reps"]]
    assert ups["overlay"] == {"test": "tcp_crr", "total": sum(per_rep), "per_rep": per_rep}
    agents = res["reps"][0]["overlay"]["tcp_crr"]["agents"]
    assert set(agents) == set(OBSERVED) and agents["flows_installed"] >= 0


def test_series_runs_back_to_back_and_reports_each_run(made: list[str]) -> None:
    res = _bench("--series", "--setups", "overlay", "--tests", "tcp_crr", "--reps", "2", "--no-sg")
    made.extend(res["namespaces"])
    assert [n for n in res["namespaces"] if netns.exists(n)] == []
    assert res["params"]["series"] is True and res["params"]["sg"] is False
    values = [r["overlay"]["tcp_crr"]["value"] for r in res["reps"]]
    series = res["series"]["overlay"]["tcp_crr"]
    assert series["values"] == values and all(v > 0 for v in values)
    assert series["last_over_first"] == pytest.approx(values[-1] / values[0])
    assert res["ratios"] == {"overlay": None}  # no bare: no ratios
    assert len(res["upcalls_per_setup"]["overlay"]["per_rep"]) == 2


def test_profile_charges_the_tc_program_to_the_overlay_and_cleans_up(made: list[str]) -> None:
    """``netloom bench profile``: perf samples split by stage, per transaction; the datapath's
    tc program shows up on the overlay and (nearly) nowhere on bare."""
    done = subprocess.run(
        [*CLI, "bench", "profile", "--duration", "1", "--reps", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    made.extend(res["namespaces"])
    assert [n for n in res["namespaces"] if netns.exists(n)] == []
    tc = next(s for s in res["stages"] if s.startswith("netloom tc program"))
    bare, overlay = (res["setups"][s]["per_unit_us"] for s in ("bare", "overlay"))
    assert bare["busy"] > 0 and overlay["busy"] > 0
    assert overlay[tc] > 0, overlay  # every packet of a transaction goes through the program
    assert bare[tc] < 0.02 * bare["busy"], bare
    rates = {s: res["setups"][s]["value"] for s in ("bare", "overlay")}
    assert res["ratio_measured"]["overlay"] == pytest.approx(rates["overlay"] / rates["bare"])
    assert res["extra_over_bare_us"]["overlay"][tc] == pytest.approx(overlay[tc] - bare[tc])
