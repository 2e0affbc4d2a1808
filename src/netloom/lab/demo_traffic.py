"""The demo's traffic steps: ping across hosts, the security group's verdicts, an iperf3
stream, tenant isolation, a what-if trace of the same flow, and the agents' metrics."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
from typing import TYPE_CHECKING, Any

from netloom.errors import DemoStepFailed, LabError
from netloom.lab import nsexec, probes
from netloom.lab.demo_dhcp import stop
from netloom.lab.demo_plan import CONNECT_TIMEOUT, IPERF_PORT, IPERF_SECONDS, SSH_PORT
from netloom.lab.demo_report import PingResult, VmResult, scrape_agent
from netloom.sim import render_json
from netloom.sim.trace import trace_from_json

if TYPE_CHECKING:
    from netloom.lab.demo import Demo


def ping(demo: Demo, src: str, dst: str, path: str, count: int) -> PingResult:
    s, d = demo.vms[src], demo.vms[dst]
    first: float | None = None
    for _ in range(3):  # the first packet is an upcall: the agent may still load topology
        rtts = probes.ping(s.netns, d.expected_ip, timeout=2.0)
        if rtts:
            first = rtts[0] * 1000
            break
    if first is None:
        raise DemoStepFailed(
            f"{s.name} ({s.expected_ip}) gets no echo reply from "
            f"{d.name} ({d.expected_ip}) [{path}]"
        )
    rtts = [r * 1000 for r in probes.ping(s.netns, d.expected_ip, count=count, timeout=1.0)]
    res = PingResult(s.name, d.name, d.expected_ip, path, round(first, 3), count, len(rtts))
    if rtts:
        res.min_ms = round(min(rtts), 3)
        res.avg_ms = round(statistics.fmean(rtts), 3)
        res.max_ms = round(max(rtts), 3)
    if len(rtts) < count:
        raise DemoStepFailed(
            f"{s.name} -> {d.name}: {count - len(rtts)} of {count} echo requests lost"
        )
    demo.summary.pings.append(res)
    return res


def step_ping(demo: Demo) -> str:
    a1, a2, a3, a4 = (demo.vms[k] for k in ("a1", "a2", "a3", "a4"))
    checks = [
        ("a1", "a4", f"routed {a1.host}->{a4.host}", 20),
        ("a1", "a2", f"bridged {a1.host}->{a2.host}", 5),
        (
            "a2",
            "a3",
            f"routed on {a2.host}" if a2.host == a3.host else f"routed {a2.host}->{a3.host}",
            5,
        ),
    ]
    lines = []
    for src, dst, path, count in checks:
        r = ping(demo, src, dst, path, count)
        lines.append(
            f"{r.src} -> {r.dst} {r.dst_ip} ({path}): first echo "
            f"{r.first_ms:.2f} ms (ARP + upcalls), then {r.received}/{r.sent} "
            f"replies, rtt min/avg/max {r.min_ms:.3f}/{r.avg_ms:.3f}/"
            f"{r.max_ms:.3f} ms"
        )
    return "\n".join(lines)


def step_security_group(demo: Demo) -> str:
    """Listeners on both ports inside a4, connects from a1: the SG, not a closed port, is
    what stops tcp/22 (a closed port would answer RST, "refused"; a drop times out)."""
    a1, a4 = demo.vms["a1"], demo.vms["a4"]
    results = {}
    with probes.listening(a4.netns, IPERF_PORT), probes.listening(a4.netns, SSH_PORT):
        for port in (IPERF_PORT, SSH_PORT):
            results[f"tcp/{port}"] = probes.tcp_connect(
                a1.netns, a4.expected_ip, port, CONNECT_TIMEOUT
            )
    demo.summary.security_group = results
    if results[f"tcp/{IPERF_PORT}"] != "connected":
        raise DemoStepFailed(
            f"tcp/{IPERF_PORT} a1 -> a4 should connect, it {results[f'tcp/{IPERF_PORT}']}"
        )
    if results[f"tcp/{SSH_PORT}"] != "timeout":
        raise DemoStepFailed(
            f"tcp/{SSH_PORT} a1 -> a4 should be dropped (time out), it {results[f'tcp/{SSH_PORT}']}"
        )
    return (
        f"a1 -> a4:{IPERF_PORT} connected; a1 -> a4:{SSH_PORT} no answer within "
        f"{CONNECT_TIMEOUT:.0f} s (dropped by the SG; a listener was there)"
    )


def step_iperf(demo: Demo) -> str:
    a1, a4 = demo.vms["a1"], demo.vms["a4"]
    server = nsexec.popen(
        a4.netns,
        ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        try:
            probes.wait_listening(a4.netns, IPERF_PORT, server)
        except LabError as exc:
            raise DemoStepFailed(exc.message) from None
        done = nsexec.run(
            a1.netns,
            [
                "iperf3",
                "-c",
                a4.expected_ip,
                "-p",
                str(IPERF_PORT),
                "-t",
                str(IPERF_SECONDS),
                "-J",
            ],
            check=False,
            timeout=IPERF_SECONDS + 20,
        )
    finally:
        stop(server)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise DemoStepFailed(
            f"iperf3 exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
        ) from None
    if "error" in report or done.returncode != 0:
        raise DemoStepFailed(f"iperf3: {report.get('error', done.stderr.strip())}")
    end = report["end"]
    recv, sent = end["sum_received"], end["sum_sent"]
    demo.summary.iperf3 = {
        "from": a1.name,
        "to": a4.name,
        "to_ip": a4.expected_ip,
        "port": IPERF_PORT,
        "seconds": round(recv["seconds"], 2),
        "gbit_s": round(recv["bits_per_second"] / 1e9, 2),
        "retransmits": sent.get("retransmits"),
        "mss": _mss(report),
    }
    r = demo.summary.iperf3
    if r["gbit_s"] <= 0:
        raise DemoStepFailed("iperf3 moved no data")
    return (
        f"{r['gbit_s']:.2f} Gbit/s received over {r['seconds']} s, "
        f"{r['retransmits']} retransmits, MSS {r['mss']} ({a1.host} -> {a4.host}, "
        f"VXLAN between hosts, VM MTU {demo.lab.vm_mtu})"
    )


def step_isolation(demo: Demo) -> str:
    a1, a2, a4, b1 = (demo.vms[k] for k in ("a1", "a2", "a4", "b1"))
    checks: list[dict[str, Any]] = []

    def probe(src: VmResult, dst_ip: str, what: str, expect: bool) -> None:
        got = bool(probes.ping(src.netns, dst_ip, count=2, timeout=1.0))
        checks.append(
            {
                "from": src.name,
                "to": dst_ip,
                "what": what,
                "expected": expect,
                "reply": got,
                "ok": got == expect,
            }
        )

    probe(b1, demo.nets["B-net"].gateway, "B's own router", True)
    probe(b1, a2.expected_ip, "A's a2: same prefix, other tenant", False)
    probe(b1, a4.expected_ip, "A's a4: A's other subnet", False)
    probe(a2, a1.expected_ip, "10.0.1.10 is a1 in A and b1 in B", True)
    neigh = _neighbour_mac(a2.netns, a1.expected_ip)
    checks.append(
        {
            "from": a2.name,
            "to": a1.expected_ip,
            "what": "who answered 10.0.1.10",
            "expected": a1.mac,
            "reply": neigh,
            "ok": neigh == a1.mac,
        }
    )
    demo.summary.isolation = checks
    lines = [
        f"{'ok ' if c['ok'] else 'BAD'} {c['from']} -> {c['to']} ({c['what']}): "
        f"{_describe(c['reply'])}"
        for c in checks
    ]
    bad = [c for c in checks if not c["ok"]]
    if bad:
        raise DemoStepFailed(
            "isolation: "
            + "; ".join(
                f"{c['from']} -> {c['to']} ({c['what']}) expected {_describe(c['expected'])}, "
                f"got {_describe(c['reply'])}"
                for c in bad
            )
        )
    return "\n".join(lines)


def step_trace(demo: Demo) -> str:
    """The what-if trace of the iperf3 flow and of the same flow to ssh, run by the cluster
    (``POST /api/v1/trace``, what ``netloom trace`` asks)."""
    a1, a4 = demo.vms["a1"], demo.vms["a4"]
    api = demo.lab.api()

    def trace(dport: int) -> dict[str, Any]:
        probe = {"from_port": a1.port_id, "dst_ip": a4.expected_ip, "proto": "tcp"}
        body: dict[str, Any] = api.request(
            "POST", "/trace", json_body={**probe, "sport": 40000, "dport": dport}
        )
        return body

    iperf, ssh = trace(IPERF_PORT), trace(SSH_PORT)
    rule = trace_from_json(ssh["trace"]).decided_by()
    text = render_json(iperf)
    demo.summary.trace = {
        "flow": f"{a1.name} {a1.expected_ip}:40000 -> {a4.expected_ip}:{IPERF_PORT} tcp",
        "verdict": iperf["verdict"],
        "text": text,
        "assumed": iperf["assumed"],
        "ssh_verdict": ssh["verdict"],
        "ssh_decided_by": f"rule {rule.name}: {rule.decision}" if rule else "",
    }
    return (
        f"netloom trace --from-port {a1.name} --dst-ip {a4.expected_ip} --proto tcp "
        f"--dport {IPERF_PORT}\n{text}\n(the same flow to tcp/{SSH_PORT}: verdict "
        f"{ssh['verdict']}, decided by {demo.summary.trace['ssh_decided_by'] or '?'})"
    )


def step_metrics(demo: Demo) -> str:
    lines = []
    for h in demo.lab.state.hosts:
        try:
            m = scrape_agent(h.netns)
        except OSError as exc:
            lines.append(f"{h.name}: metrics unreachable ({exc})")
            continue
        demo.summary.agents[h.name] = m
        lines.append(
            f"{h.name}: {m['upcalls']:.0f} upcalls, {m['simulations']:.0f} "
            f"simulations, {m['flows_installed']:.0f} flows installed, "
            f"{m['flows']:.0f} installed now, {m['flows_invalidated']:.0f} "
            f"invalidated, {m['state_pushed']:.0f} flow-state entries pushed"
        )
    return "\n".join(lines)


def _neighbour_mac(ns: str, ip: str) -> str | None:
    out = nsexec.run(ns, ["ip", "-j", "neigh", "show", ip]).stdout
    entries = json.loads(out or "[]")
    return next((e.get("lladdr") for e in entries if e.get("lladdr")), None)


def _describe(value: Any) -> str:
    if value is True:
        return "replies"
    if value is False:
        return "no reply"
    return str(value)


def _mss(report: dict[str, Any]) -> int | None:
    with contextlib.suppress(KeyError, IndexError, TypeError):
        return int(report["start"]["tcp_mss_default"])
    return None


__all__ = [
    "ping",
    "step_iperf",
    "step_isolation",
    "step_metrics",
    "step_ping",
    "step_security_group",
    "step_trace",
]
