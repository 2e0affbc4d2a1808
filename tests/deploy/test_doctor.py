"""``netloom doctor``: the checks fed with facts (no host probed), and the command's output."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from netloom.deploy.doctor import (
    BPF_FEATURES,
    KERNEL_CONFIG,
    Facts,
    Finding,
    Status,
    diagnose,
    failed,
)
from netloom.deploy.packages import PACKAGES, ROLES

pytestmark = pytest.mark.unit

HEALTHY = Facts(
    role="agent",
    kernel="6.1.0-18-amd64",
    bpffs=True,
    bpf_features=dict.fromkeys(BPF_FEATURES, True),
    kernel_config=dict.fromkeys(KERNEL_CONFIG, True),
    installed=frozenset(PACKAGES["gateway"]),
    ntp_synchronized=True,
    underlay_nic="eth1",
    underlay_mtu=9000,
    agent_mtu=9000,
)


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_a_healthy_agent_host_is_all_ok() -> None:
    findings = diagnose(HEALTHY)
    assert [f.check for f in findings] == [
        "packages",
        "clock",
        "kernel",
        "bpffs",
        "bpf",
        "tc",
        "mtu",
    ]
    assert {f.status for f in findings} == {Status.OK} and not failed(findings)


@pytest.mark.parametrize(
    ("change", "check", "status", "words"),
    [
        ({"kernel": "5.10.0-28-amd64"}, "kernel", Status.MISSING, "< 5.13"),
        ({"kernel": "weird"}, "kernel", Status.WARN, "unknown"),
        ({"bpffs": False}, "bpffs", Status.MISSING, "mount -t bpf"),
        ({"bpffs": None}, "bpffs", Status.WARN, "unknown"),
        ({"bpf_features": {}}, "bpf", Status.WARN, "unknown"),
        (
            {"bpf_features": {**dict.fromkeys(BPF_FEATURES, True), "helper redirect_neigh": False}},
            "bpf",
            Status.MISSING,
            "helper redirect_neigh",
        ),
        ({"kernel_config": {"CONFIG_VXLAN": True}}, "tc", Status.MISSING, "CONFIG_NET_CLS_BPF"),
        ({"kernel_config": {}}, "tc", Status.WARN, "unknown"),
        ({"installed": frozenset({"python3"})}, "packages", Status.MISSING, "apt-get install -y"),
        ({"installed": None}, "packages", Status.WARN, "unknown"),
        ({"ntp_synchronized": False}, "clock", Status.WARN, "not synchronized"),
        ({"ntp_synchronized": None}, "clock", Status.WARN, "unknown"),
        ({"underlay_mtu": 1500}, "mtu", Status.MISSING, "ip link set eth1 mtu 9000"),
        ({"underlay_mtu": None}, "mtu", Status.WARN, "unknown"),
    ],
)
def test_each_problem_is_named_with_its_fix(
    change: dict[str, object], check: str, status: Status, words: str
) -> None:
    findings = _by_check(diagnose(replace(HEALTHY, **change)))  # type: ignore[arg-type]
    found = findings[check]
    assert found.status is status
    assert words in found.detail + " " + found.fix
    assert failed(list(findings.values())) == (status is Status.MISSING)
    assert all(f.status is Status.OK for name, f in findings.items() if name != check)


def test_mtu_names_the_vxlan_overhead() -> None:
    found = _by_check(diagnose(replace(HEALTHY, underlay_mtu=1500, agent_mtu=1500)))["mtu"]
    assert found.status is Status.OK and "VM MTU 1450 + 50 of VXLAN" in found.detail


def test_gateway_needs_bird2() -> None:
    facts = replace(HEALTHY, role="gateway", installed=frozenset(PACKAGES["agent"]))
    found = _by_check(diagnose(facts))["packages"]
    assert found.status is Status.MISSING and found.fix == "apt-get install -y bird2"


def test_cluster_checks_zookeeper_only_when_its_store_is_zookeeper() -> None:
    cluster = Facts(role="cluster", installed=frozenset(PACKAGES["cluster"]), ntp_synchronized=True)
    assert [f.check for f in diagnose(cluster)] == ["packages", "clock"]
    servers = {"10.0.0.1:2181": True, "10.0.0.2:2181": False}
    found = _by_check(diagnose(replace(cluster, zookeeper=servers)))["zookeeper"]
    assert found.status is Status.WARN and "10.0.0.2:2181 unreachable" in found.detail
    down = dict.fromkeys(servers, False)
    assert _by_check(diagnose(replace(cluster, zookeeper=down)))["zookeeper"].status is (
        Status.MISSING
    )


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netloom.cli.main", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_packages_one_per_line() -> None:
    for role in ROLES:
        r = _doctor("--role", role, "--packages")
        assert r.returncode == 0 and r.stdout.splitlines() == list(PACKAGES[role])
    assert "bird2" in PACKAGES["gateway"] and "bird2" not in PACKAGES["agent"]


def test_bad_role_and_bad_config(tmp_path: Path) -> None:
    r = _doctor("--role", "router")
    assert r.returncode == 2 and "--role must be one of agent, gateway" in r.stderr
    config = tmp_path / "netloom.toml"
    config.write_text("[cluster]\nstore = 'zookeeper:nohost'\n")
    r = _doctor("--role", "cluster", "--config", str(config))
    assert r.returncode == 2 and f"{config}:2: [cluster] store: bad zookeeper host" in r.stderr


def test_doctor_reports_every_check(tmp_path: Path) -> None:
    config = tmp_path / "netloom.toml"
    config.write_text("[cluster]\nstore = 'zookeeper:127.0.0.1:1'\n")
    r = _doctor("--role", "cluster", "--config", str(config))
    lines = r.stdout.splitlines()
    assert lines[-2].split()[:2] == ["MISSING", "zookeeper"] and "fix:" in lines[-1]
    assert r.returncode == 1
