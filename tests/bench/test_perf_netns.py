"""``netloom bench perf`` for real, in namespaces: setups, the smoke run, cleanup on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from netloom.bench.perf.setups import BareSetup, KernelVxlanSetup, NamespaceSetup, _kill_inside
from netloom.bench.perf.workloads import TESTS
from netloom.errors import DatapathError, SetupUnavailable
from netloom.lab import netns, nsexec, probes
from netloom.lab.addressing import VXLAN_OVERHEAD

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("root")]

CLI = [sys.executable, "-c", "from netloom.cli.main import main; main()"]


@pytest.mark.parametrize(
    "cls, mtu, underlay",
    [
        (BareSetup, 1500, "direct"),
        (BareSetup, 1500, "switch"),
        (KernelVxlanSetup, 1500, "direct"),
        (KernelVxlanSetup, 1500, "switch"),
        (KernelVxlanSetup, 9000, "direct"),
    ],
)
def test_setup_reaches_its_server_and_leaves_nothing(
    cls: type[NamespaceSetup], mtu: int, underlay: str, made: list[str]
) -> None:
    setup = cls(mtu, underlay)
    try:
        ep = setup.up()
        made.extend(setup.namespaces)
        assert all(n.startswith("nlb-") for n in setup.namespaces)
        assert probes.ping(ep.client_netns, ep.server_ip, count=2, timeout=2.0)
        vm_mtu = mtu if cls is BareSetup else mtu - VXLAN_OVERHEAD
        assert netns.link_info(ep.client_netns, "eth0").mtu == vm_mtu
        # the largest unfragmented packet of the VM MTU gets through the tunnel, one more
        # byte with DF does not leave the VM (RFC 791: 20 B IP + 8 B ICMP headers)
        assert probes.ping(ep.client_netns, ep.server_ip, df_size=vm_mtu - 28, timeout=2.0)
        # the two-host setups and bare take the same cable: a switch namespace or none
        switch = [n for n in setup.namespaces if n.endswith("-sw")]
        assert len(switch) == (1 if underlay == "switch" else 0)
        if underlay == "switch":  # host to host through the switch's bridge
            ports = nsexec.run(switch[0], ["ip", "-o", "link", "show", "master", "br0"]).stdout
            assert ports.count("master br0") == 2, ports
    finally:
        setup.down()
    assert [n for n in made if netns.exists(n)] == []


def test_an_unknown_underlay_is_refused_before_anything_is_built() -> None:
    with pytest.raises(SetupUnavailable, match="unknown underlay 'wifi'"):
        KernelVxlanSetup(1500, "wifi")
    done = subprocess.run(
        [*CLI, "bench", "perf", "--underlay", "wifi"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "--underlay must be one of direct, switch" in done.stderr


def test_a_failed_up_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    real = netns.add_address

    def fail_on_vm(ns: str | None, ifname: str, cidr: str, **kw: object) -> bool:
        if ns is not None and ns.endswith("-vm"):
            raise DatapathError("injected failure")
        return real(ns, ifname, cidr)

    setup = KernelVxlanSetup(1500)
    monkeypatch.setattr(netns, "add_address", fail_on_vm)
    with pytest.raises(DatapathError, match="injected"):
        setup.up()
    assert netns.list_netns(setup.ns.prefix) == []


def test_smoke_run_prints_consistent_figures_and_cleans_up(made: list[str]) -> None:
    done = subprocess.run(
        [
            *CLI,
            "bench",
            "perf",
            "--reps",
            "1",
            "--duration",
            "1",
            "--setups",
            "bare,kernel-vxlan",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    made.extend(res["namespaces"])
    assert res["params"]["underlay"] == "direct"
    assert len(res["namespaces"]) == 2 + 4  # bare: client, server; vxlan: 2 hosts, 2 VMs
    assert [n for n in res["namespaces"] if netns.exists(n)] == []
    rep = res["reps"][0]
    for setup in ("bare", "kernel-vxlan"):
        for test in TESTS:
            assert rep[setup][test]["value"] > 0, (setup, test)
            assert res["medians"][setup][test] == rep[setup][test]["value"]  # one rep
    ratios = res["ratios"]["kernel-vxlan"]
    assert ratios == {
        t: pytest.approx(rep["kernel-vxlan"][t]["value"] / rep["bare"][t]["value"]) for t in TESTS
    }
    low_high = res["ratio_range"]["kernel-vxlan"]
    assert all(low_high[t][0] <= ratios[t] <= low_high[t][1] for t in TESTS), low_high
    assert res["ratios"] == {"kernel-vxlan": ratios}  # only the setups asked for
    assert res["ranges"]["bare"]["tcp_rr"] == [rep["bare"]["tcp_rr"]["value"]] * 2
    # no agents: no upcall counter, no agents' counters
    assert res["upcalls_per_setup"] == {"bare": None, "kernel-vxlan": None}
    assert rep["kernel-vxlan"]["tcp_crr"]["agents"] is None
    assert res["upcalls_during_run"] is None and res["skipped"] == {}
    assert res["reps"][0]["bare"]["tcp_crr"]["errors"] == 0
    check = res["crr_tool_check"]
    assert check["configured"]["rate"] > 0 and check["doubled"]["conc"] == 32
    assert res["machine"]["cpus"] == os.cpu_count() and res["machine"]["kernel"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_tears_everything_down(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            *CLI,
            "bench",
            "perf",
            "--reps",
            "3",
            "--duration",
            "3",
            "--no-tool-check",
            "--setups",
            "bare,kernel-vxlan",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    names: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.match(r"\S+ is up: (.*)", line)
            if m:
                names += m.group(1).split()
            if line.startswith("rep 1/3 tcp_stream kernel-vxlan"):
                break  # mid-run: both setups up, servers running, a client in flight
        assert len(names) == 6  # bare 2; kernel-vxlan: 2 hosts, 2 VMs (direct underlay)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert [n for n in names if netns.exists(n)] == []
    finally:
        if proc.poll() is None:  # an assertion failed mid-run: let the bench tear down first
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for n in names:  # whatever is left: its servers (ours), then the namespace
            if netns.exists(n):
                _kill_inside(n)
                netns.delete(n)
