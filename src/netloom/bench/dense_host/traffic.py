"""The traffic ``netloom bench agent100`` sends through the agent: a ping mesh, a security
group probe and parallel iperf3 streams; each writes its figures and check into the report."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from netloom.bench.dense_host.plan import BLOCKED_PORT, VmSpec, path_of
from netloom.bench.dense_host.report import DenseHostReport
from netloom.bench.procs import IPERF_PORT, stop_group
from netloom.bench.stats import summary
from netloom.lab import nsexec, probes
from netloom.lab.lab import Lab

PING_TRIES = 3
PING_TIMEOUT = 2.0
Pairs = list[tuple[VmSpec, VmSpec]]


def ping_mesh(lab: Lab, pairs: Pairs, res: DenseHostReport) -> None:
    """Every pair must answer; the first echo's RTT per pair (its first packets are upcalls)."""
    first_ms: list[float] = []
    by_path: dict[str, list[int]] = {}
    first_try = 0
    for src, dst in pairs:
        kind = path_of(src, dst)
        counts = by_path.setdefault(kind, [0, 0])
        counts[0] += 1
        rtt, tries = _ping(lab, src, dst)
        if rtt is None:
            res.ping_failures.append(
                {"src": src.name, "dst": dst.name, "dst_ip": dst.ip, "path": kind}
            )
            continue
        counts[1] += 1
        first_try += tries == 1
        first_ms.append(rtt * 1000)
    answered = sum(c[1] for c in by_path.values())
    res.pings = {
        "pairs": len(pairs),
        "answered": answered,
        "first_try": first_try,
        "by_path": {k: {"pairs": c[0], "answered": c[1]} for k, c in by_path.items()},
        **summary("rtt_first_ms", first_ms),
    }
    res.checks["ping_mesh"] = answered == len(pairs)


def _ping(lab: Lab, src: VmSpec, dst: VmSpec) -> tuple[float | None, int]:
    """RTT of the first echo that came back and the try it took."""
    ns = lab.vm(src.name).netns
    for attempt in range(1, PING_TRIES + 1):
        rtts = probes.ping(ns, dst.ip, timeout=PING_TIMEOUT)
        if rtts:
            return rtts[0], attempt
    return None, PING_TRIES


def security_group_check(
    lab: Lab, specs: list[VmSpec], res: DenseHostReport, say: Callable[[str], None]
) -> None:
    """A listener on tcp/22 in a VM, a connect from another VM: the group must drop the
    SYN (time out), while tcp/5201 to the same VM connects."""
    local = [s for s in specs if s.host == 1]
    src, dst = local[0], local[1]
    dst_ns = lab.vm(dst.name).netns
    src_ns = lab.vm(src.name).netns
    with probes.listening(dst_ns, BLOCKED_PORT), probes.listening(dst_ns, IPERF_PORT):
        allowed = probes.tcp_connect(src_ns, dst.ip, IPERF_PORT, 3.0)
        blocked = probes.tcp_connect(src_ns, dst.ip, BLOCKED_PORT, 2.0)
    res.security_group = {
        "from": src.name,
        "to": dst.name,
        f"tcp/{IPERF_PORT}": allowed,
        f"tcp/{BLOCKED_PORT}": blocked,
    }
    res.checks["security_group"] = allowed == "connected" and blocked == "timeout"
    say(f"security group: tcp/{IPERF_PORT} {allowed}, tcp/{BLOCKED_PORT} {blocked}")


def iperf3(lab: Lab, pairs: Pairs, seconds: int, res: DenseHostReport) -> None:
    """One iperf3 stream per pair, all at once; Gbit/s per stream and in total."""
    servers: list[subprocess.Popen[bytes]] = []
    clients: list[subprocess.Popen[bytes]] = []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        for _, dst in pairs:
            ns = lab.vm(dst.name).netns
            servers.append(nsexec.popen(ns, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], **quiet))
            probes.wait_listening(ns, IPERF_PORT, servers[-1])
        for src, dst in pairs:
            argv = ["iperf3", "-c", dst.ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
            clients.append(
                nsexec.popen(
                    lab.vm(src.name).netns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        outs = [c.communicate(timeout=seconds + 30) for c in clients]
    finally:
        for p in servers + clients:
            stop_group(p)  # nsexec.popen starts each in its own session
    for (src, dst), (out, err), proc in zip(pairs, outs, clients, strict=True):
        res.iperf3.append(_stream(src, dst, out, err, proc.returncode))
    res.iperf3_total_gbit_s = round(sum(s["gbit_s"] for s in res.iperf3), 2)
    res.checks["iperf3"] = bool(res.iperf3) and all(
        s["gbit_s"] > 0 and s["error"] is None for s in res.iperf3
    )


def _stream(src: VmSpec, dst: VmSpec, out: bytes, err: bytes, rc: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "from": src.name,
        "to": dst.name,
        "to_ip": dst.ip,
        "path": path_of(src, dst),
        "gbit_s": 0.0,
        "retransmits": None,
        "error": None,
    }
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        row["error"] = f"iperf3 exited {rc}: {err.decode(errors='replace').strip()[-200:]}"
        return row
    if "error" in report or rc != 0:
        row["error"] = str(report.get("error", f"exit {rc}"))
        return row
    end = report["end"]
    row["gbit_s"] = round(end["sum_received"]["bits_per_second"] / 1e9, 2)
    row["retransmits"] = end["sum_sent"].get("retransmits")
    return row


__all__ = ["iperf3", "ping_mesh", "security_group_check"]
