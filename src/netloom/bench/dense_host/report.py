"""What ``netloom bench agent100`` measured, and its text table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from netloom.bench.dense_host.plan import BLOCKED_PORT
from netloom.bench.procs import IPERF_PORT
from netloom.bench.report import key_values

RSS_GOAL_MB = 80.0  # the goal for the 100-VM agent (reported, not a failed check)


@dataclass
class DenseHostReport:
    """Every figure of one run (``--json`` prints it as is)."""

    lab: str
    vms: int
    remote_vms: int
    bridges: int
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    bindings_active: int = 0
    pings: dict[str, Any] = field(default_factory=dict)
    ping_failures: list[dict[str, Any]] = field(default_factory=list)
    security_group: dict[str, str] = field(default_factory=dict)
    iperf3: list[dict[str, Any]] = field(default_factory=list)
    iperf3_total_gbit_s: float = 0.0
    agent: dict[str, Any] = field(default_factory=dict)
    agent_h2: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    ok: bool = False
    error: str | None = None
    cleaned_up: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _bring_up_rows(res: DenseHostReport) -> list[tuple[str, str]]:
    t = res.timings
    n = res.vms + res.remote_vms
    return [
        ("lab", f"{res.lab}: h1 {res.vms} VMs, h2 {res.remote_vms} VMs, {res.bridges} bridges"),
        ("VM namespaces + veths + addresses", f"{t.get('vms_up_s', '-')} s for {n} VMs"),
        ("ports provisioned (API)", f"{t.get('provision_s', '-')} s"),
        (
            "all bindings active (BPF attached)",
            f"{res.bindings_active}/{n} after {t.get('all_active_s', '-')} s",
        ),
    ]


def _traffic_rows(res: DenseHostReport) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    p = res.pings
    if p:
        paths = ", ".join(f"{k} {v['answered']}/{v['pairs']}" for k, v in p["by_path"].items())
        out += [
            (
                "ping mesh",
                f"{p['answered']}/{p['pairs']} answered ({paths}); "
                f"{p['first_try']} at the first try",
            ),
            (
                "first echo rtt p50 / p99 / max",
                f"{p['rtt_first_ms_p50']} / {p['rtt_first_ms_p99']} / {p['rtt_first_ms_max']} ms",
            ),
        ]
    if res.security_group:
        sg = res.security_group
        allowed, blocked = f"tcp/{IPERF_PORT}", f"tcp/{BLOCKED_PORT}"
        out.append(("security group", f"{allowed} {sg[allowed]}, {blocked} {sg[blocked]}"))
    for s in res.iperf3:
        out.append(
            (
                f"iperf3 {s['from']} -> {s['to']} ({s['path']})",
                f"{s['gbit_s']} Gbit/s" + (f" ERROR {s['error']}" if s["error"] else ""),
            )
        )
    if res.iperf3:
        out.append(("iperf3 total", f"{res.iperf3_total_gbit_s} Gbit/s"))
    return out


def _agent_rows(res: DenseHostReport) -> list[tuple[str, str]]:
    a = res.agent
    out: list[tuple[str, str]] = []
    if a:
        out += [
            (
                "agent h1 RSS (bound / end)",
                f"{a.get('rss_bound_mb')} / {a.get('rss_end_mb')} MB (goal <= {RSS_GOAL_MB:.0f})",
            ),
            (
                "agent h1 upcalls / simulations",
                f"{a.get('upcalls_end')} / {a.get('simulations_end')}",
            ),
            (
                "agent h1 flows installed (total / now)",
                f"{a.get('flows_installed_end')} / {a.get('flows_now_end')}",
            ),
        ]
    if res.agent_h2:
        out.append(("agent h2 RSS", f"{res.agent_h2.get('rss_end_mb')} MB"))
    return out


def rows(res: DenseHostReport) -> list[tuple[str, str]]:
    """The table: one (figure, value) per line."""
    out = [*_bring_up_rows(res), *_traffic_rows(res), *_agent_rows(res)]
    out += [(f"check {k}", "ok" if v else "FAILED") for k, v in res.checks.items()]
    if res.error:
        out.append(("error", res.error))
    verdict = "PASS" if res.ok else "FAIL"
    removed = len(res.cleaned_up)
    out.append(("result", f"{verdict} in {res.seconds} s, {removed} lab items removed"))
    return out


def render(res: DenseHostReport) -> str:
    return key_values(rows(res))


__all__ = ["RSS_GOAL_MB", "DenseHostReport", "render", "rows"]
