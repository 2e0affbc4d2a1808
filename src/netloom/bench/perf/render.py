"""``netloom bench perf``'s result as text: medians with their ranges, ratios to bare, the RR
latency, the agents' upcalls and, for a series, every run."""

from __future__ import annotations

from typing import Any

from netloom.bench.perf.summary import BASELINE
from netloom.bench.perf.workloads import LABELS
from netloom.bench.report import text_table
from netloom.lab.addressing import VXLAN_OVERHEAD

UNDERLAY_TEXT = {
    "direct": "a direct veth between the hosts",
    "switch": "the lab switch (a bridge between two veths)",
}
Res = dict[str, Any]


def _fmt(v: float | None, *, ratio: bool = False) -> str:
    if v is None:
        return "pending"
    return f"{v:.2f}" if ratio else f"{v:,.0f}"


def _short(test: str) -> str:
    return LABELS[test].split(" ")[0]


def _header(res: Res) -> list[str]:
    p, m = res["params"], res["machine"]
    mode = "back to back (series)" if p["series"] else "interleaved"
    return [
        f"netloom bench perf: {p['reps']} rep(s) {mode} x {p['duration_s']} s per test, "
        f"underlay MTU {p['mtu']} (overlay VM MTU {p['mtu'] - VXLAN_OVERHEAD}), bare and "
        f"tunnels over {UNDERLAY_TEXT[p['underlay']]}; {m['kernel']}, {m['cpus']} CPUs, "
        f"{m['cpu_model']}",
        (
            f"clients pinned to CPU {p['client_cpu']}, servers to CPU {p['server_cpu']}"
            if p.get("client_cpu") is not None
            else "clients and servers not pinned"
        )
        + (
            "; overlay VMs with stateful security groups"
            if p["sg"]
            else "; overlay VMs without security groups"
        ),
    ]


def _span(r: list[float] | None, *, ratio: bool = False) -> str:
    if not r:
        return ""
    return f" ({_fmt(r[0], ratio=ratio)} - {_fmt(r[1], ratio=ratio)})"


def _medians(res: Res) -> list[str]:
    setups: list[str] = res["params"]["setups"]
    med, rng = res["medians"], res.get("ranges") or {}
    many = res["params"]["reps"] > 1
    return [
        "",
        "medians (lowest - highest rep):" if many else "values:",
        *text_table(
            ["test", *setups],
            [
                [
                    LABELS[t],
                    *(
                        _fmt(med[s][t]) + (_span(rng.get(s, {}).get(t)) if many else "")
                        if s in med
                        else "pending"
                        for s in setups
                    ),
                ]
                for t in res["params"]["tests"]
            ],
        ),
    ]


def _ratio_tables(res: Res) -> list[str]:
    setups: list[str] = res["params"]["setups"]
    rat, spread = res["ratios"], res.get("ratio_range") or {}
    others = [s for s in setups if s != BASELINE]
    if not others or BASELINE not in res["medians"]:
        return []
    many = res["params"]["reps"] > 1
    title = "ratio to bare: median over reps of setup / bare of the same rep"
    return [
        "",
        title + (" (lowest - highest rep):" if many else ":"),
        *text_table(
            ["test", *others],
            [
                [
                    _short(t),
                    *(
                        _fmt(rat[s][t], ratio=True)
                        + (_span(spread.get(s, {}).get(t), ratio=True) if many else "")
                        if rat.get(s)
                        else "pending"
                        for s in others
                    ),
                ]
                for t in res["params"]["tests"]
            ],
        ),
    ]


def _latency_table(res: Res) -> list[str]:
    lat = res.get("rr_half_rtt_us") or {}
    if not lat:
        return []
    return [
        "",
        "TCP_RR half round trip, us (sockperf; min = the path, p50 adds the wakeup "
        "of the peer's CPU):",
        *text_table(
            ["", *lat],
            [
                [q, *(f"{lat[s][q]:.1f}" if lat[s][q] is not None else "n/a" for s in lat)]
                for q in ("min", "p50", "p99")
            ],
        ),
    ]


def _upcalls(res: Res) -> list[str]:
    per = {s: u for s, u in (res.get("upcalls_per_setup") or {}).items() if u is not None}
    if not per:
        return []
    return [
        "",
        "upcalls during TCP_CRR (both hosts' agents): "
        + "; ".join(
            f"{s} {u['total']:,} (per rep {', '.join(f'{x:,}' for x in u['per_rep'])})"
            for s, u in per.items()
        ),
    ]


def _series(res: Res) -> list[str]:
    out: list[str] = []
    for setup, by_test in (res.get("series") or {}).items():
        for test, s in by_test.items():
            out += [
                "",
                f"{setup} {_short(test)}, run by run: last / first {s['last_over_first']:.2f}",
            ]
            rows = []
            for i, rep in enumerate(res["reps"], 1):
                rec = rep[setup][test]
                a = rec.get("agents") or {}
                rows.append(
                    [
                        str(i),
                        _fmt(rec["value"]),
                        *(
                            _fmt(a.get(k)) if a else "n/a"
                            for k in ("upcalls", "flows_installed", "flows_expired", "state_pushed")
                        ),
                        _fmt(a.get("flows")) if a else "n/a",
                        f"{a['agent_rss_mb']:.1f}" if a else "n/a",
                    ]
                )
            out += text_table(
                [
                    "run",
                    LABELS[test].split(" ", 1)[1],
                    "upcalls",
                    "installed",
                    "expired",
                    "pushes",
                    "flows",
                    "agent RSS MB",
                ],
                rows,
            )
    return out


def _footer(res: Res) -> list[str]:
    cpu = ", ".join(f"{s} {v:.2f} s" for s, v in res["agent_cpu_s"].items() if v is not None)
    up = res["upcalls_during_run"]
    out = [
        "",
        f"agent CPU time over the run: {cpu or 'n/a (no setup with an agent ran)'}",
        f"upcalls during the run: {up if up is not None else 'n/a (no overlay setup ran)'}",
    ]
    check = res["crr_tool_check"]
    if check:
        c, d = check["configured"], check["doubled"]
        out.append(
            f"CRR tool on bare: {c['procs']}x{c['conc']} connections {c['rate']:,.0f}/s, "
            f"{d['procs']}x{d['conc']} {d['rate']:,.0f}/s (x{check['doubled_over_configured']:.2f}"
            f"); tool user CPU {c['tool_user_cpu_share']:.0%} of the machine, its syscalls "
            f"(kernel) {c['tool_sys_cpu_share']:.0%}"
        )
    out += [f"skipped {s}: {why}" for s, why in res["skipped"].items()]
    return out


def render(res: Res) -> str:
    """The medians table (test rows x setup columns), then the ratios and the rest."""
    return "\n".join(
        [
            *_header(res),
            *_medians(res),
            *_ratio_tables(res),
            *_latency_table(res),
            *_upcalls(res),
            *_series(res),
            *_footer(res),
        ]
    )


__all__ = ["UNDERLAY_TEXT", "render"]
