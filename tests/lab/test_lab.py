"""The namespace lab end to end: up, what exists, reachability, the cluster, down; crashes
halfway; two labs side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from netloom.agent.options import DEFAULT_METRICS_PORT
from netloom.datapath.pins import PIN_ROOT
from netloom.errors import AlreadyExists, InvalidInput
from netloom.lab import lab as labmod
from netloom.lab import netns, nsexec, probes, supervisor
from netloom.lab.addressing import SWITCH_IP, TENANT_GW, TOPOLOGY_PORT
from netloom.lab.lab import Lab
from netloom.lab.state import ProcessRecord, state_path
from waiting import wait_until

from .conftest import unique_name

pytestmark = pytest.mark.netns

NewLab = Callable[..., Lab]


def _resources(lab: Lab) -> tuple[list[str], list[int], list[Path]]:
    """Everything of ``lab`` that must be gone after down: namespaces, live pids, paths."""
    pids = [p.pid for p in lab.state.processes if supervisor.alive(p)]
    paths = [Path(lab.state.dir), lab._sf.path, *map(Path, lab.state.bpf_pins)]
    return netns.list_netns(f"{lab.name}-"), pids, paths


def _assert_gone(name: str, pids: list[int], paths: list[Path]) -> None:
    assert netns.list_netns(f"{name}-") == []
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    for p in paths:
        assert not p.exists(), p
    assert name not in labmod.labs()


def test_two_hosts_two_vms(new_lab: NewLab) -> None:
    lab = new_lab()
    started = time.monotonic()
    lab.up(2, 2, agents=False)
    took = time.monotonic() - started
    name = lab.name
    s = lab.state
    assert s.phase == "up"
    # namespaces and links, with the MTUs of the design (VM = underlay - 50)
    expected = {
        f"{name}-sw",
        f"{name}-h1",
        f"{name}-h2",
        *(f"{name}-h{h}-vm{v}" for h in (1, 2) for v in (1, 2)),
    }
    assert set(netns.list_netns(f"{name}-")) == expected
    assert netns.link_info(s.switch_netns, "br0").mtu == 1500
    for h in s.hosts:
        info = netns.link_info(h.netns, "eth0")
        assert info.mtu == 1500
        assert info.addresses == [f"{h.underlay_ip}/24"]
        assert (
            netns.link_info(s.switch_netns, h.switch_port).master
            == netns.link_info(s.switch_netns, "br0").index
        )
    for v in lab.vms():
        assert len(v.host_if) <= 15
        assert netns.link_info(v.host, v.host_if).mtu == 1450
        inside = netns.link_info(v.netns, "eth0")
        assert (inside.mtu, inside.mac) == (1450, v.mac)
        assert inside.addresses == [f"{v.ip}/24"]  # static IP written into the VM
    # the underlay carries host-to-host traffic, and every host reaches the cluster address
    h1, h2 = s.hosts
    assert probes.ping(h1.netns, h2.underlay_ip, count=2)
    assert probes.ping(h2.netns, h1.underlay_ip)
    assert probes.ping(h1.netns, SWITCH_IP)
    assert probes.ping(h1.netns, h2.underlay_ip, df_size=1500 - 28)
    # the cluster answers and holds the hosts, the tunnel zone and the bound ports
    api = lab.api()
    hosts = {h["name"]: h["id"] for h in api.list("hosts")}
    assert hosts == {h.name: h.host_id for h in s.hosts}
    (zone,) = api.list("tunnel_zones")
    assert {(m["host_id"], m["ip"]) for m in zone["members"]} == {
        (h.host_id, h.underlay_ip) for h in s.hosts
    }
    for rec in lab.state.vms:
        port = api.get("ports", rec.port_id or "")
        host_id = next(h.host_id for h in s.hosts if h.name == rec.host)
        assert (port["host_id"], port["interface_name"], port["mac"]) == (
            host_id,
            rec.host_if,
            rec.mac,
        )
    (subnet,) = api.list("dhcp_subnets")
    assert subnet["mtu"] == 1450 and len(subnet["hosts"]) == 4
    # exec runs inside the VM (ip, not /sys: nsenter --net keeps the root's /sys mount)
    assert " mtu 1450 " in lab.exec("h2-vm1", ["ip", "-o", "link", "show", "eth0"]).stdout
    st = lab.status()
    assert st["cluster"]["alive"] and len(st["vms"]) == 4
    _, pids, paths = _resources(lab)
    assert pids  # at least the cluster
    removed = labmod.down(name)
    assert any(r.startswith("cluster pid") for r in removed)
    _assert_gone(name, pids, paths)
    assert labmod.down(name) == []  # nothing left: a no-op
    assert took < 30, f"lab up took {took:.1f} s"


def test_mtu_9000_tx_off_one_host(new_lab: NewLab) -> None:
    lab = new_lab(mtu=9000, tx_off=True)
    lab.up(1, 1, static_ip=False, agents=False)
    (vm,) = lab.vms()
    assert netns.link_info(vm.netns, "eth0").mtu == 8950
    assert netns.link_info(lab.state.hosts[0].netns, "eth0").mtu == 9000
    assert nsexec.offload(vm.netns, "eth0", "tx-checksumming") is False
    assert netns.link_info(vm.netns, "eth0").addresses == []  # left to DHCP


def test_interrupted_up_then_down_cleans_everything(
    new_lab: NewLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = new_lab()

    def interrupted(self: Lab, host: str, name: str, **kw: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the VMs are being created

    monkeypatch.setattr(Lab, "add_vm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lab.up(2, 1, agents=False)
    again = Lab.load(lab.name)
    assert again.state.phase == "failed"
    namespaces, pids, paths = _resources(again)
    assert f"{lab.name}-h2" in namespaces and pids
    # the cluster dies on its own too: down must not trip over a dead recorded pid
    os.kill(pids[0], signal.SIGKILL)
    labmod.down(lab.name)
    _assert_gone(lab.name, pids, paths)


def test_killed_cli_halfway_then_down(lab_names: list[str]) -> None:
    """SIGKILL the `lab up` process right after it started the cluster: no finally block
    runs, only the write-ahead state remains, and down still removes everything."""
    name = unique_name()
    lab_names.append(name)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from netloom.cli.main import main; main()",
            "lab",
            "up",
            "--name",
            name,
            "--hosts",
            "3",
            "--vms-per-host",
            "3",
            "--no-agents",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                st = Lab.load(name).state
                if st.processes:
                    break
            except Exception:
                pass
            time.sleep(0.02)
        else:
            pytest.fail("lab up never recorded the cluster")
    finally:
        cli.kill()
        cli.wait()
    lab = Lab.load(name)
    assert lab.state.phase == "creating"
    namespaces, pids, paths = _resources(lab)
    assert namespaces and pids
    labmod.down(name)
    _assert_gone(name, pids, paths)


def test_two_labs_coexist(new_lab: NewLab) -> None:
    a, b = new_lab(), new_lab()
    a.up(1, 1, agents=False)
    b.up(1, 1, agents=False)
    # same addresses on both sides, different namespaces, each cluster with its own host
    assert a.state.hosts[0].underlay_ip == b.state.hosts[0].underlay_ip
    assert [h["name"] for h in a.api().list("hosts")] == [a.state.hosts[0].name]
    assert [h["name"] for h in b.api().list("hosts")] == [b.state.hosts[0].name]
    assert a.vms()[0].host_if != b.vms()[0].host_if
    _, pids, paths = _resources(a)
    labmod.down(a.name)
    _assert_gone(a.name, pids, paths)
    assert b.status()["cluster"]["alive"]
    assert len(netns.list_netns(f"{b.name}-")) == 3
    assert probes.ping(b.state.hosts[0].netns, SWITCH_IP)


def test_bad_input_creates_nothing(lab_names: list[str]) -> None:
    with pytest.raises(InvalidInput):
        Lab.create("Bad-Name")
    with pytest.raises(InvalidInput):
        Lab.create("waytoolongname")
    name = unique_name()
    lab_names.append(name)
    with pytest.raises(InvalidInput):
        Lab.create(name, mtu=1400)
    assert not state_path(name).exists()
    lab = Lab.create(name)
    with pytest.raises(AlreadyExists):
        Lab.create(name)
    with pytest.raises(InvalidInput):
        lab.up(0, 1)
    with pytest.raises(InvalidInput):
        lab.up(20, 20)  # 400 VMs do not fit a /24
    assert netns.list_netns(f"{name}-") == []


def test_foreign_pid_is_never_signalled(new_lab: NewLab) -> None:
    """A recorded pid whose command line no longer carries our marker (a recycled pid) is
    left alone by down."""
    lab = new_lab()
    other = subprocess.Popen(["sleep", "30"])
    try:
        lab.state.processes.append(
            ProcessRecord(
                role="agent",
                pid=other.pid,
                start_ticks=supervisor.start_ticks(other.pid),
                match="not-this-one",
            )
        )
        lab._sf.save()
        labmod.down(lab.name)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.zookeeper
def test_zookeeper_store(new_lab: NewLab) -> None:
    from netloom.lab.zookeeper import CLASSPATH

    if not all(j.exists() for j in CLASSPATH):
        pytest.skip("Debian's zookeeper package is not installed")
    lab = new_lab(store="zookeeper")
    lab.up(1, 1, agents=False)
    roles = sorted(p.role for p in lab.state.processes)
    assert roles == ["cluster", "zookeeper", "zookeeper", "zookeeper"]
    assert [h["name"] for h in lab.api().list("hosts")] == [lab.state.hosts[0].name]
    _, pids, paths = _resources(lab)
    assert len(pids) == 4
    labmod.down(lab.name)
    _assert_gone(lab.name, pids, paths)


FAKE_AGENT = """
# A stand-in for the agent: makes its pin dir, then idles (a Python script, so its command
# line keeps the options, like the real agent's).
import os, sys, time
host_id = sys.argv[sys.argv.index("--host-id") + 1]
os.makedirs(os.path.join(PIN_ROOT, host_id, "maps"))
time.sleep(300)
"""


def test_agents_started_recorded_and_stopped(new_lab: NewLab, tmp_path: Path) -> None:
    agent = tmp_path / "fake-agent"
    agent.write_text(f"#!{sys.executable}\nPIN_ROOT = {str(PIN_ROOT)!r}\n{FAKE_AGENT}")
    agent.chmod(0o755)
    lab = new_lab()
    lab.up(2, 0, agent_program=[str(agent)])
    assert lab.state.agents == "running"
    agents = [p for p in lab.state.processes if p.role == "agent"]
    assert sorted(p.netns or "" for p in agents) == sorted(h.netns for h in lab.state.hosts)
    for p in agents:
        cmd = psutil.Process(p.pid).cmdline()
        host = next(h for h in lab.state.hosts if h.netns == p.netns)
        # the agent's own options (AgentOptions.to_argv), metrics served by default
        assert cmd[cmd.index("--host-id") + 1] == host.host_id
        assert cmd[cmd.index("--topology") + 1] == f"{SWITCH_IP}:{TOPOLOGY_PORT}"
        assert cmd[cmd.index("--underlay-ip") + 1] == host.underlay_ip
        assert cmd[cmd.index("--metrics-port") + 1] == str(DEFAULT_METRICS_PORT)
        assert "--api" not in cmd and "--bpf-pin-dir" not in cmd
        assert nsexec.pids_in(host.netns) == [p.pid]  # it runs inside its host
    deadline = time.monotonic() + 5
    pins = [Path(p) for p in lab.state.bpf_pins]
    while not all(p.exists() for p in pins) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pins and all(p.exists() for p in pins)
    st = lab.status()
    assert all(len(h["agent_pids"]) == 1 for h in st["hosts"])
    lab.start_agents([str(agent)])  # every host has a live agent: no second one
    assert len([p for p in lab.state.processes if p.role == "agent"]) == 2
    _, pids, paths = _resources(lab)
    removed = labmod.down(lab.name)
    assert sum(r.startswith("agent pid") for r in removed) == 2
    _assert_gone(lab.name, pids, paths)


def test_dead_agent_is_restarted_and_its_host_comes_back(new_lab: NewLab) -> None:
    """kill -9 a lab agent: the next look (``lab status`` calls supervise) starts it again
    with the same command line, and the cluster sees the host alive again."""
    lab = new_lab()
    lab.up(1, 0)
    (host,) = lab.state.hosts

    def host_alive() -> bool:
        return any(h["alive"] for h in lab.api().list("hosts") if h["id"] == host.host_id)

    def agent() -> ProcessRecord:
        return next(p for p in lab.state.processes if p.role == "agent")

    _wait(host_alive, 20, "the agent to heartbeat")
    first = agent()
    os.kill(first.pid, signal.SIGKILL)
    _wait(lambda: not supervisor.alive(first), 5, "the agent to die")
    _wait(lambda: bool(lab.supervise()) or agent().pid != first.pid, 10, "a restart")
    second = agent()
    assert second.pid != first.pid and second.argv == first.argv
    assert len(second.restarts) == 1 and supervisor.alive(second)
    assert nsexec.pids_in(host.netns) == [second.pid]
    _wait(host_alive, 20, "the restarted agent to heartbeat")
    assert lab.supervise() == []  # alive: nothing to do


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_stray_process_in_a_vm_is_stopped(new_lab: NewLab) -> None:
    """A process someone started inside a VM (lab exec ... iperf3 -s) is not recorded, but it
    lives in a namespace of the lab: down stops it too."""
    lab = new_lab()
    lab.up(1, 1, agents=False)
    (vm,) = lab.vms()
    stray = nsexec.popen(vm.netns, ["sleep", "60"])
    try:
        labmod.down(lab.name)
        assert stray.wait(timeout=5) is not None
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


@pytest.mark.bpf
def test_real_agents_bpf_datapath_cross_host(new_lab: NewLab) -> None:
    """With the real `netloom agent` (BPF datapath): hosts heartbeat, a VM reaches a VM on the
    other host and the router, and down removes the agents and their pins."""
    lab = new_lab(tx_off=True)
    lab.up(2, 1, datapath="bpf")
    assert lab.state.agents == "running"
    vm1, vm2 = lab.vms()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = {h["name"]: h["alive"] for h in lab.api().list("hosts")}
        if all(alive.values()) and probes.ping(vm1.netns, vm2.ip or "", timeout=0.5):
            break
        time.sleep(0.2)
    assert all(alive.values()), alive
    assert probes.ping(vm1.netns, vm2.ip or "", count=3), "no VM-to-VM reply across hosts"
    assert probes.ping(vm2.netns, TENANT_GW), "the router port does not answer"
    _simulations_of_both_hosts_in_one_query(lab)
    pins = [Path(p) for p in lab.state.bpf_pins]
    assert pins and all(p.exists() for p in pins)
    _, pids, paths = _resources(lab)
    labmod.down(lab.name)
    _assert_gone(lab.name, pids, paths)


def _simulations_of_both_hosts_in_one_query(lab: Lab) -> None:
    """The agents' simulation logs reach the cluster: one query shows the ping's simulations
    on both hosts (the request on the first VM's host, the reply on the second's); each agent
    keeps its own file too."""
    client = lab.api()

    def hosts() -> set[str]:
        body = client.request("GET", "/insights/simlog", params={"kind": "sim", "limit": "1000"})
        return {e["host"] for e in body["entries"] if e["verdict"] == "forward"}

    wait_until(lambda: len(hosts()) == 2, 10, "forwarded simulations of both hosts")
    ids = {h.host_id for h in lab.state.hosts}
    assert hosts() == ids
    files = [Path(lab.state.dir) / "agents" / h.name / "simlog.msgpack" for h in lab.state.hosts]
    assert all(f.exists() and f.stat().st_size > 0 for f in files)


@pytest.mark.bpf
def test_real_agents_jumbo_underlay(new_lab: NewLab) -> None:
    """``--mtu 9000`` reaches the agents: the tunnel gets 8950 like the VMs, so a DF packet of
    nearly 9000 bytes crosses hosts (with the agents' default 1500 underlay, the datapath and
    the simulated router answered it with "fragmentation needed" for 1450 and TCP stalled)."""
    lab = new_lab(mtu=9000)
    lab.up(2, 1, datapath="bpf")
    vm1, vm2 = lab.vms()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not probes.ping(vm1.netns, vm2.ip or "", timeout=0.5):
        time.sleep(0.2)
    for h in lab.state.hosts:
        assert netns.link_info(h.netns, "nlvx0").mtu == 8950
    big = 8950 - 20 - 8  # IPv4 + ICMP headers: the largest echo the VM MTU carries
    assert probes.ping(vm1.netns, vm2.ip or "", df_size=big, count=2, timeout=2.0), (
        "a jumbo DF echo did not cross the overlay"
    )
