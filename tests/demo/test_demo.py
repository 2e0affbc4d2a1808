"""`netloom demo`: everything the demo shows, as assertions, on a real lab (BPF agents), plus
the pure parts (plan, metrics parsing, bad input) without privileges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netloom.agent.metrics import AgentMetrics
from netloom.cli.main import app
from netloom.errors import InvalidInput
from netloom.lab import demo_dhcp, netns, probes
from netloom.lab.cluster import netloom_argv
from netloom.lab.demo import Demo
from netloom.lab.demo_plan import plan_vms
from netloom.lab.demo_report import Summary, parse_metrics
from netloom.lab.state import state_path

# -- pure ---------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("hosts", [2, 3, 9])
def test_plan_spreads_each_bridge_over_two_hosts(hosts: int) -> None:
    plan = {p.key: p for p in plan_vms(hosts)}
    assert plan["a1"].net == plan["a2"].net and plan["a1"].host != plan["a2"].host
    assert plan["a3"].net == plan["a4"].net and plan["a3"].host != plan["a4"].host
    assert plan["a1"].host != plan["a4"].host  # the routed iperf3/ping pair crosses hosts
    # tenant B: same address and same host as a1, different tenant
    assert (plan["b1"].ip, plan["b1"].host) == (plan["a1"].ip, plan["a1"].host)
    assert plan["b1"].tenant != plan["a1"].tenant
    assert all(1 <= p.host <= hosts for p in plan.values())
    assert [p.key for p in plan.values() if p.sg] == ["a4"]


@pytest.mark.unit
@pytest.mark.parametrize("hosts", [0, 1, 10, -3])
def test_bad_host_count_is_refused_before_anything_exists(hosts: int) -> None:
    with pytest.raises(InvalidInput, match="--hosts"):
        Demo(hosts, name="tdbad")
    assert not state_path("tdbad").exists()


@pytest.mark.unit
@pytest.mark.parametrize("gateways", [0, 7])
def test_bad_gateway_count_is_refused_before_anything_exists(gateways: int) -> None:
    with pytest.raises(InvalidInput, match="--gateways"):
        Demo(3, gateways=gateways, name="tdbad")
    assert not state_path("tdbad").exists()


@pytest.mark.unit
def test_cli_bad_hosts_exits_1_and_creates_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("the command checks for root first")
    result = CliRunner().invoke(app, ["demo", "--hosts", "1", "--name", "tdcli"])
    assert result.exit_code == 1
    assert "--hosts must be 2..9" in result.output
    assert not state_path("tdcli").exists()
    assert netns.list_netns("tdcli-") == []


@pytest.mark.unit
def test_parse_metrics_reads_what_the_agent_exposes() -> None:
    m = AgentMetrics()
    m.upcalls.labels(reason="miss").inc(5)
    m.upcalls.labels(reason="dhcp").inc(2)
    m.flows_installed.inc(4)
    m.flows_invalidated.inc(1)
    m.flows.set(3)
    m.simulations.labels(verdict="forward").inc(6)
    got = parse_metrics(m.render().decode())
    assert got == {
        "upcalls": 7.0,
        "simulations": 6.0,
        "flows_installed": 4.0,
        "flows_invalidated": 1.0,
        "flows": 3.0,
        "state_pushed": 0.0,
    }


# -- the real thing -------------------------------------------------------------------------------


def _check_summary(s: Summary, hosts: int) -> None:
    """Everything the demo claims, checked against what it measured."""
    assert s.ok, f"{s.failed_step}: {s.error}"
    assert len(s.hosts) == hosts + 2 and all(h["agent_pid"] for h in s.hosts)
    vms = {v.key: v for v in s.vms}
    assert set(vms) == {"a1", "a2", "a3", "a4", "b1"}
    for v in vms.values():  # udhcpc got the port's address, the subnet's MTU and gateway
        assert v.dhcp_ip == v.expected_ip
        assert v.mtu == 1450
        assert v.dhcp["router"] == ("10.0.2.1" if v.network == "A-net2" else "10.0.1.1")
    assert vms["b1"].dhcp_ip == vms["a1"].dhcp_ip  # B reuses A's addresses
    assert len(s.pings) == 3
    for p in s.pings:
        assert p.received == p.sent and p.first_ms and p.avg_ms and p.avg_ms > 0
    assert s.pings[0].src == vms["a1"].name and s.pings[0].dst == vms["a4"].name
    assert s.iperf3["gbit_s"] > 0.1 and s.iperf3["to"] == vms["a4"].name
    assert s.security_group == {"tcp/5201": "connected", "tcp/22": "timeout"}
    assert s.isolation and all(c["ok"] for c in s.isolation)
    assert s.trace["verdict"] == "forward" and s.trace["ssh_verdict"] == "drop"
    assert "sg-ingress" in s.trace["text"]
    # north-south: every gateway's session up, one upstream path per gateway, a1 reached by its
    # floating IP from the external host, a2 seen by it as tenant A's SNAT address
    gateways = [h for h in s.hosts if "-gw" in h["name"]]
    assert len(gateways) == 2
    assert s.northsouth["bgp"] == {"gw1": "Established", "gw2": "Established"}
    assert s.northsouth["upstream_nexthops"] == ["198.19.1.2", "198.19.2.2"]
    assert set(s.northsouth["spread"]) == {"198.19.1.2", "198.19.2.2"}
    assert s.northsouth["floating_ip"]["vm_saw"] == "198.18.0.10"
    assert s.northsouth["floating_ip"]["ping_replies"] == 3
    assert s.northsouth["snat"] == {
        "vm": vms["a2"].name,
        "tcp": "connected",
        "external_saw": "203.0.113.1",
    }
    assert set(s.agents) == {h["name"] for h in s.hosts}
    assert sum(m["flows_installed"] for m in s.agents.values()) > 0
    assert sum(m["upcalls"] for m in s.agents.values()) > 0


def _gone(name: str, pins: list[str], pids: list[int]) -> None:
    assert netns.list_netns(f"{name}-") == []
    assert not state_path(name).exists()
    assert [p for p in pins if Path(p).exists()] == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"agent {pid} still runs"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.slow
def test_demo_three_hosts_end_to_end_then_gone(demo_name: str) -> None:
    lines: list[str] = []
    demo = Demo(3, name=demo_name, say=lines.append)
    summary = demo.run()
    _check_summary(summary, 3)
    n = len(demo.steps())
    assert any(f"[{n}/{n}]" in line for line in lines)  # the last step ran
    _gone(demo_name, list(demo.lab.state.bpf_pins), [h["agent_pid"] for h in summary.hosts])


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.slow
def test_failed_step_is_reported_and_cleaned_up(
    demo_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DHCP hook that configures nothing: the DHCP step fails with what went wrong, the
    later steps do not run, and the lab is removed."""
    monkeypatch.setattr(demo_dhcp, "UDHCPC_SCRIPT", "#!/bin/sh\nexit 0\n")
    lines: list[str] = []
    demo = Demo(2, name=demo_name, say=lines.append)
    summary = demo.run()
    assert not summary.ok
    assert summary.failed_step is not None and summary.failed_step.startswith("DHCP")
    assert summary.error is not None and "without a lease" in summary.error
    assert not summary.pings and not summary.iperf3
    assert any(line.startswith("FAILED: DHCP") for line in lines)
    assert summary.logs is not None
    logs = Path(summary.logs)
    try:
        assert {p.name for p in logs.iterdir()} >= {"cluster.log", f"agent-{demo_name}-h1.log"}
    finally:
        shutil.rmtree(logs)
    _gone(demo_name, list(demo.lab.state.bpf_pins), [h["agent_pid"] for h in summary.hosts])


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.slow
def test_cli_keep_json_two_hosts_leaves_a_working_lab(demo_name: str) -> None:
    """`netloom demo --hosts 2 --keep --json`: JSON summary on stdout, the lab still forwards
    after the command exited (agents keep running), `lab down` removes it."""
    done = subprocess.run(
        [*netloom_argv(), "demo", "--hosts", "2", "--keep", "--json", "--name", demo_name],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    body = json.loads(done.stdout)
    assert body["kept"] is True and body["lab"] == demo_name
    assert f"netloom lab down --name {demo_name}" in done.stderr
    vms = {v["key"]: v for v in body["vms"]}
    assert body["ok"], body["error"]
    assert body["security_group"] == {"tcp/5201": "connected", "tcp/22": "timeout"}
    # the lab outlives the command: VM to VM across hosts through the router, then the status
    assert probes.ping(vms["a1"]["netns"], vms["a4"]["expected_ip"], count=3, timeout=1.0)
    status = subprocess.run(
        [*netloom_argv(), "lab", "status", "--name", demo_name, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    st = json.loads(status.stdout)
    assert st["phase"] == "up"
    assert all(h["alive"] for h in st["hosts"])
    assert {v["ip"] for v in st["vms"]} >= {"10.0.1.10/24", "10.0.2.11/24"}
    pins = [h["bpf_pin_dir"] for h in st["hosts"] if h["bpf_pin_dir"]]
    down = subprocess.run(
        [*netloom_argv(), "lab", "down", "--name", demo_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 0, down.stderr
    _gone(demo_name, pins, [h["agent_pid"] for h in body["hosts"]])
