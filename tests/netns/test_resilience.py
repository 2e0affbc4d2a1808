"""The real system under stress: an agent killed with SIGKILL and
restarted in the middle of an iperf3 stream resets no connection, the kernel flows forward while
no agent runs, and the new agent serves new flows (how soon is printed as a figure); a VM flooding
new flows does not stop its neighbour from opening TCP connections.

One lab for the module (2 hosts, real BPF agents):

    h1: a 10.0.1.10 (net1; the iperf3 client, then the UDP port scanner)
        b 10.0.1.11 (net1; stateful SG, so each of its connections is a new upcall)
    h2: c 10.0.2.10 (net2, routed; to-VM chain: tcp/5201, udp/5000-5100, ICMP, drop the rest,
        so a UDP scan of c makes one megaflow per destination port)
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import textwrap
import time
from collections.abc import Iterator

import pytest

from netloom.lab import nsexec
from netloom.lab.plan import AgentTuning
from waiting import wait_until

from .conftest import EchoServer, NetLab, VmSpec, netlab, ping_ok, tcp_connect

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

CHAINS = {
    "c_in": [
        {"action": "accept", "nw_proto": 6, "tp_dst": {"start": 5201, "end": 5201}},
        {"action": "accept", "nw_proto": 17, "tp_dst": {"start": 5000, "end": 5100}},
        {"action": "accept", "nw_proto": 1},
        {"action": "drop"},
    ],
    "b_out": [{"action": "accept", "match_return_flow": True}, {"action": "accept"}],
    "b_in": [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "nw_proto": 1},
        {"action": "drop"},
    ],
}


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    vms = {
        "a": VmSpec(1, 1, 10),
        "b": VmSpec(1, 1, 11, {"inbound_filter_id": "b_out", "outbound_filter_id": "b_in"}),
        "c": VmSpec(2, 2, 10, {"outbound_filter_id": "c_in"}),
    }
    # b's connections go through the agent (one upcall each), as the flood test wants
    agent_path = AgentTuning(kernel_conntrack=False)
    with netlab(2, vms, chains=CHAINS, agents=agent_path) as built:
        yield built


def _listening(ns: str, port: int) -> bool:
    out = nsexec.run(ns, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
    return bool(out.strip())


def _age(pid: int) -> float:
    """Seconds since process ``pid`` started, from its start time in clock ticks since boot
    (/proc/PID/stat field 22, proc(5)) against CLOCK_BOOTTIME: 10 ms resolution, where
    psutil's create_time() adds the whole-second rounding of the boot time."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")


def _to_c(lab: NetLab) -> int:
    """Packets a's kernel flows to c on h1 have forwarded (read from the pins, no agent)."""
    flows = lab.flows(1)
    to_c = lab.to_vm(flows, "c")
    return sum(f.packets for f in flows if f.ident in to_c)


def test_agent_kill9_restart_during_iperf3(lab: NetLab) -> None:
    c_ip = lab.ip("c")
    server = nsexec.popen(
        lab.ns("c"),
        ["iperf3", "-s", "-B", c_ip, "-p", "5201"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(lab.ns("c"), 5201), 5, "iperf3 -s to listen", 0.05)
        client = nsexec.popen(
            lab.ns("a"),
            ["iperf3", "-c", c_ip, "-p", "5201", "-t", "5", "-b", "1G", "-i", "0.5", "-J"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # the stream runs on kernel flows: a's flows to c carry more and more packets
        wait_until(lambda: _to_c(lab) > 1000, 5, "the iperf3 stream to run on kernel flows")
        assert client.poll() is None, "iperf3 ended early"
        lab.kill_agent(1)
        # forwarding goes on with no agent at all
        moved = _to_c(lab)
        wait_until(lambda: _to_c(lab) > moved + 1000, 2, "packets to flow with no agent")
        assert lab.agent_pid(1) is None
        lab.start_agents()
        pid = lab.agent_pid(1)
        assert pid is not None
        # a flow never seen before (b -> c) needs the new agent's simulation
        wait_until(lambda: ping_ok(lab.ns("b"), c_ip, 0.05), 3, "a new flow after restart", 0)
        served = _age(pid)
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0, f"iperf3 failed: {err.decode()[-500:]}"
        report = json.loads(out)
        assert "error" not in report, report.get("error")
        rates = [iv["sum"]["bits_per_second"] for iv in report["intervals"]]
        total = report["end"]["sum_received"]["bits_per_second"]
        print(
            f"figure: iperf3 across agent kill -9: {total / 1e9:.2f} Gbit/s, "
            f"slowest 0.5 s interval {min(rates) / 1e9:.2f} Gbit/s; "
            f"new flow served {served * 1000:.0f} ms after the new agent started"
        )
        assert min(rates) > 0, "the stream stalled while the agent was down"
    finally:
        server.terminate()
        server.wait(5)


SCAN = textwrap.dedent("""
    import socket, sys, time
    ip, seconds = sys.argv[1], float(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end, sent = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < end:
            for port in range(1, 65536):
                try:
                    s.sendto(b"x", (ip, port))
                    sent += 1
                except OSError:
                    pass
                if port % 512 == 0 and time.monotonic() >= end:
                    break
    except KeyboardInterrupt:  # SIGINT: the test has what it needs
        pass
    print(sent)
""")


def _limited(sample: dict[str, float]) -> float:
    """Upcalls the agent rate-limited, in a sample of its metrics."""
    return sample.get("netloom_agent_upcalls_rate_limited_total", 0.0)


def test_flooding_vm_does_not_stop_neighbour_connections(lab: NetLab) -> None:
    c_ip = lab.ip("c")
    server = EchoServer(lab.ns("c"), c_ip, 5201)
    try:
        before = lab.metrics(1)
        scan = nsexec.popen(
            lab.ns("a"),
            ["python3", "-c", SCAN, c_ip, "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_until(
                lambda: _limited(lab.metrics(1)) > _limited(before) and scan.poll() is None,
                5,
                "the scan to flood h1's agent",
            )
            setups: list[float] = []
            for _ in range(20):
                t0 = time.monotonic()
                s = tcp_connect(lab.ns("b"), c_ip, 5201, timeout=3.0)
                assert s is not None, f"b could not connect during the flood after {setups}"
                setups.append(time.monotonic() - t0)
                s.close()
            still_flooding = scan.poll() is None
        finally:
            scan.send_signal(signal.SIGINT)
        out, err = scan.communicate(timeout=20)
        assert scan.returncode == 0, err.decode()[-500:]
        sent = int(out)
        after = lab.metrics(1)
        limited = _limited(after) - _limited(before)
        installed = (
            after["netloom_agent_flows_installed_total"]
            - before["netloom_agent_flows_installed_total"]
        )
        throttled = (
            after["netloom_datapath_upcalls_throttled_total"]
            - before["netloom_datapath_upcalls_throttled_total"]
        )
        lost = (
            after["netloom_datapath_upcalls_lost_total"]
            - before["netloom_datapath_upcalls_lost_total"]
        )
        print(
            f"figure: scan sent {sent} datagrams, {throttled:.0f} upcalls throttled in the "
            f"kernel, {lost:.0f} lost, {limited:.0f} rate-limited by the agent, "
            f"{installed:.0f} flows installed; b's 20 connections: median "
            f"{statistics.median(setups) * 1000:.1f} ms, max {max(setups) * 1000:.1f} ms"
        )
        assert still_flooding, "the scan ended before b's connections were made"
        assert throttled > 0, "the scan did not hit the kernel's upcall budget"
        assert limited > 0, "the scan did not flood the agent"
        assert lost == 0, "upcalls were lost: the budget did not keep the queue from filling"
        assert installed >= 20  # every connection of b was a new upcall and a new flow
    finally:
        server.close()
