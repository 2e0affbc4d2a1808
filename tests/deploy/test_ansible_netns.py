"""The Ansible playbook (deploy/ansible) run as an operator would: over SSH against lab host
namespaces turned into machines (tests/deploy/machines.py), then the overlay checked between
VMs on two hosts, a second run changing nothing, and the rolling upgrade of the agents under
UDP iperf3 and a fast ping.

Exercised: SSH, the host packages step (apt: already installed here), the virtualenv and the
wheel, the config file, the units rendered and installed, a 3-member ZooKeeper ensemble formed
from zoo.cfg and myid, the cluster on it, hosts and the tunnel zone registered through the CLI,
the agents (BPF datapath), the health checks, idempotence, the rolling upgrade. Not exercised:
systemd itself (PID 1 is not systemd here): the roles run with netloom_service_manager=process,
which starts each unit's own ExecStart= line under netloom-supervise (no User=, sandboxing,
Type=notify or watchdog); the hosts share one filesystem, so each gets its paths under its own
root prefix and all share one virtualenv (installs one host at a time); no gateways group;
one cluster node; `netloom doctor`'s checks (see the extra vars).
$NETLOOM_ANSIBLE_EXTRA (a JSON object) adds extra vars to the test's playbook runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netloom.datapath.pins import PIN_ROOT
from netloom.errors import NetloomError
from netloom.lab import nsexec
from netloom.lab.addressing import API_PORT, TOPOLOGY_PORT
from netloom.lab.cluster import NetnsApiClient
from netloom.lab.lab import Lab
from netloom.lab.probes import ping
from netloom.lab.state import ClusterRecord
from waiting import wait_until

from .machines import ANSIBLE_PLAYBOOK, PLAYBOOKS, SSHD, Machines, Recap, wheels

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(1200)]

HOSTS = 3


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not ANSIBLE_PLAYBOOK.exists():
        return "no ansible-core: make ansible"
    if not SSHD.exists():
        return "no sshd: make sysdeps (openssh-server)"
    if not wheels():
        return "no wheel: make dist"
    if not (PLAYBOOKS.parent / "systemd" / "netloom-agent.service").exists():
        return "no units in deploy/systemd"
    return None


class Deployment:
    """A lab of 3 hosts and a VM on h1 and h2, the playbook run against its hosts."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.lab = Lab.create(f"an{uuid.uuid4().hex[:5]}", root=base / "labs")
        self.machines = Machines(base / "ssh", f"{self.lab.name}-sw")
        self.first = Recap({})
        self.host_ids: dict[str, str] = {}
        self.extra: dict[str, Any] = {
            "netloom_service_manager": "process",
            "netloom_venv": str(base / "venv"),
            "netloom_install_throttle": 1,
            "netloom_wheel": str(wheels()[-1]),
            "netloom_pip_args": ["--no-index", "--find-links", str(base / "wheelhouse")],
            "zookeeper_heap_mb": 128,
            "netloom_cluster_options": {"host-timeout": 3.0},
            "netloom_tunnel_zone": self.lab.name,
            **json.loads(os.environ.get("NETLOOM_ANSIBLE_EXTRA", "{}")),
        }

    def build(self) -> None:
        # the hosts have no route to PyPI: the wheel's dependencies come from a wheelhouse
        self.machines.wheelhouse(wheels()[-1], self.base / "wheelhouse")
        lab = self.lab
        lab.build_underlay()
        hosts = [lab.add_host(i) for i in range(1, HOSTS + 1)]
        for h in hosts[:2]:
            lab.add_vm(h.name, "vm1")
        self.machines.make_keys()
        for h in hosts:
            self.machines.start_sshd(h)
        groups = {"zookeeper": hosts, "cluster": hosts[:1], "agents": hosts}
        self.inventory = self.machines.inventory(groups, self.base / "machines")

    def run(self, playbook: str = "site.yml") -> Recap:
        recap, output = self.machines.playbook(self.inventory, self.extra, playbook)
        assert len(recap.hosts) == HOSTS and recap.failed() == 0, output[-6000:]
        return recap

    def adopt_cluster(self) -> None:
        """The lab's API client pointed at the deployed cluster, the host ids the playbook
        registered recorded (and their BPF pins, for teardown); the lab's tenant network."""
        lab, h1 = self.lab, self.lab.state.hosts[0]
        lab.state.cluster = ClusterRecord(
            netns=h1.netns,
            api_url=self.api_url,
            topology=f"{h1.underlay_ip}:{TOPOLOGY_PORT}",
            store_url="zookeeper",
        )
        self.record_pins()
        for h in lab.state.hosts:
            h.host_id = self.host_ids[h.name]
        lab.save()
        lab.default_topology()

    def record_pins(self) -> None:
        """The agents' BPF pin directories (named by host id), for teardown."""
        with NetnsApiClient(self.lab.state.hosts[0].netns, self.api_url, timeout=5) as api:
            self.host_ids = {h["name"]: h["id"] for h in api.list("hosts")}
        for ident in self.host_ids.values():
            if str(PIN_ROOT / ident) not in self.lab.state.bpf_pins:
                self.lab.state.bpf_pins.append(str(PIN_ROOT / ident))
        self.lab.save()

    @property
    def api_url(self) -> str:
        return f"http://{self.lab.state.hosts[0].underlay_ip}:{API_PORT}"

    def down(self) -> None:
        if self.lab.state.hosts:
            with contextlib.suppress(NetloomError):
                self.record_pins()  # agents may have started before a failure
        namespaces = [self.lab.state.switch_netns]
        namespaces += [h.netns for h in self.lab.state.hosts]
        namespaces += [v.netns for v in self.lab.state.vms]
        self.machines.stop(namespaces)
        self.lab.down()


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="netloom-ansible-"))
    d = Deployment(base)
    try:
        d.build()
        d.first = d.run()
        d.adopt_cluster()
        yield d
    finally:
        d.down()
        shutil.rmtree(base, ignore_errors=True)


def test_deploys_and_vms_talk_across_hosts(deployment: Deployment) -> None:
    assert deployment.first.changed() > 0
    lab = deployment.lab
    a, b = lab.vm("h1-vm1"), lab.vm("h2-vm1")
    dst = b.ip
    assert dst is not None
    wait_until(lambda: ping(a.netns, dst, timeout=0.5), 30, "h1-vm1 pings h2-vm1")


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    recap = deployment.run()
    assert recap.changed() == 0, recap.hosts


def _udp_iperf(deployment: Deployment) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A UDP iperf3 from h1-vm1 to h2-vm1 at 2 Mbit/s in 1000-byte datagrams (250 a second)
    until interrupted; the server prints its per-second receive reports as JSON at the end."""
    lab = deployment.lab
    a, b = lab.vm("h1-vm1"), lab.vm("h2-vm1")
    server = subprocess.Popen(
        nsexec.nsenter_argv(b.netns, ["iperf3", "-s", "-1", "-p", "5209", "--json"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_until(
        lambda: ":5209" in nsexec.run(b.netns, ["ss", "-Hltn"], check=False).stdout,
        10,
        "iperf3 server",
    )
    argv = ["iperf3", "-c", str(b.ip), "-p", "5209", "-u", "-b", "2M", "-l", "1000", "-t", "0"]
    client = subprocess.Popen(
        nsexec.nsenter_argv(a.netns, argv), stdout=subprocess.DEVNULL, text=True
    )
    return client, server


def test_rolling_upgrade_keeps_established_flows(deployment: Deployment) -> None:
    """Every agent reinstalled and restarted in turn (upgrade.yml, serial 1) under a UDP flow
    between two hosts: the kernel flows stay pinned while an agent restarts, so no datagram is
    lost and the receiver gets datagrams in every second of the upgrade."""
    lab = deployment.lab
    a, b = lab.vm("h1-vm1"), lab.vm("h2-vm1")
    dst = b.ip
    assert dst is not None
    wait_until(lambda: ping(a.netns, dst, timeout=0.5), 30, "h1-vm1 pings h2-vm1")
    client, server = _udp_iperf(deployment)
    try:
        started = time.monotonic()
        recap = deployment.run("upgrade.yml")
        took = time.monotonic() - started
    finally:
        client.send_signal(signal.SIGINT)  # iperf3 -t 0 runs until interrupted
        client.wait(timeout=10)
        out, _ = server.communicate(timeout=30)
    assert all(v[1] > 0 for v in recap.hosts.values()), recap.hosts
    seconds = json.loads(out)["intervals"][:-1]  # the last one is cut by the interrupt
    lost = sum(i["sum"]["lost_packets"] for i in seconds)
    packets = sum(i["sum"]["packets"] for i in seconds)
    print(
        f"rolling upgrade of {HOSTS} agents in {took:.0f} s under UDP iperf3 (2 Mbit/s, "
        f"1000-byte datagrams, {len(seconds)} s): {lost} of {packets} datagrams lost"
    )
    assert len(seconds) >= took - 1
    assert all(i["sum"]["packets"] > 0 for i in seconds), "a second without datagrams"
    assert lost == 0
