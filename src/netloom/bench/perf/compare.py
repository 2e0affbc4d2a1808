"""``netloom bench perf``: the whitepaper's performance table, overlay vs bare metal, side by side.

Setups (:mod:`netloom.bench.perf.setups`): ``bare`` (two namespaces on a veth), ``kernel-vxlan``
(Linux bridge + VXLAN between two host namespaces, the reference a user would otherwise pick),
``overlay`` and ``overlay-fip`` (netloom: two VMs on two hosts, different bridges, through a
netloom router; by private IP, and by the server's floating IP). Tests
(:mod:`netloom.bench.perf.workloads`): TCP_STREAM, TCP_MAERTS (iperf3), TCP_RR (sockperf
ping-pong), TCP_CRR (:mod:`netloom.bench.tools.crr`).

Method, and why:

* every setup is built first and stays up for the whole run; each rep runs every test on every
  setup in turn (A B C D, A B C D, ...), so slow drifts of a shared machine (other tenants,
  thermal, TIME_WAIT build-up) hit all setups alike;
* a setup's ratio for a test is the median over reps of ``setup / bare`` **of the same rep**:
  pairing removes the rep-to-rep drift that a ratio of medians would keep;
* agent CPU time is the delta of ``utime + stime`` (``/proc/<pid>/stat`` fields 14 and 15)
  of the setup's agent PIDs around each test; upcalls are the delta of the setup's upcall
  counter around each test. Both are summed over the run; "flows must be in the kernel"
  means ``upcalls_during_run`` stays small next to the packets moved.
* the two-host setups get the same cable between their hosts as bare's two namespaces (one
  veth; ``--underlay direct``), so a ratio measures the overlay, not the lab's switch;
  ``--underlay switch`` sends the tunnels through the lab switch's bridge instead;
* CRR tool headroom: before the reps, the CRR tool runs on ``bare`` at its configured
  concurrency and at twice it; the output shows both rates and the share of the machine's CPU
  the tool spent in user space, so a reader can check the tool is not what bounds TCP_CRR.

A :class:`~netloom.bench.perf.setups.Setup` has ``name``,
``up() -> Endpoints(client_netns, server_netns, server_ip)`` (build hosts, agents, topology;
remove everything and raise on failure), ``down()`` (idempotent, removes everything),
``agent_pids() -> list[int]`` and ``upcalls() -> int | None`` (a monotonic counter). A setup
that cannot be built here raises SetupUnavailable and is skipped with a note in the output
(``null`` ratios in ``--json``), not an error.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from netloom.bench.perf.catalog import SETUPS, make_setup
from netloom.bench.perf.setups import UNDERLAYS, Endpoints, Setup
from netloom.bench.perf.workloads import (
    LABELS,
    SOCKPERF_MSG,
    TESTS,
    CrrParams,
    Measurement,
    Pin,
    Servers,
    crr,
    prepare_client,
    run_test,
)
from netloom.bench.procs import Progress, cpu_seconds, machine, run_and_print
from netloom.bench.report import text_table
from netloom.bench.stats import median
from netloom.errors import InvalidInput, SetupUnavailable
from netloom.lab.addressing import VXLAN_OVERHEAD

DEFAULT_SETUPS = ("bare", "kernel-vxlan", "overlay", "overlay-fip")
UNDERLAY_TEXT = {
    "direct": "a direct veth between the hosts",
    "switch": "the lab switch (a bridge between two veths)",
}
BASELINE = "bare"
MTU_MIN, MTU_MAX = 1280, 9000  # 1280: the IPv6 minimum link MTU (RFC 8200 §5); 9000: jumbo


# -- the run -----------------------------------------------------------------------------------


@dataclass
class _Live:
    """A setup that is up, with its servers."""

    setup: Setup
    ep: Endpoints
    servers: Servers
    agent_cpu_s: float | None = None  # None: the setup has no agent
    upcalls: int | None = None  # None: the setup has no upcall counter


@dataclass
class Options:
    reps: int = 3
    mtu: int = 1500
    duration: int = 5
    underlay: str = "direct"
    setups: tuple[str, ...] = DEFAULT_SETUPS
    crr: CrrParams = field(default_factory=CrrParams)
    tool_check: bool = True
    pin: Pin = field(default_factory=Pin.two_machines)

    def validate(self) -> None:
        unknown = [s for s in self.setups if s not in SETUPS]
        if unknown:
            raise InvalidInput(
                f"unknown setup(s) {', '.join(unknown)}; known: {', '.join(SETUPS)}", field="setups"
            )
        if BASELINE not in self.setups:
            raise InvalidInput(
                "the setups must include 'bare': every ratio is to bare", field="setups"
            )
        if len(set(self.setups)) != len(self.setups):
            raise InvalidInput("a setup is listed twice", field="setups")
        if self.underlay not in UNDERLAYS:
            raise InvalidInput(
                f"--underlay must be one of {', '.join(UNDERLAYS)}, not {self.underlay!r}",
                field="underlay",
            )
        if self.reps < 1:
            raise InvalidInput("--reps must be at least 1", field="reps")
        if self.duration < 1:
            raise InvalidInput("--duration must be at least 1 s", field="duration")
        if not MTU_MIN <= self.mtu <= MTU_MAX:
            raise InvalidInput(f"--mtu must be within {MTU_MIN}..{MTU_MAX}", field="mtu")
        if self.crr.procs < 1 or self.crr.conc < 1:
            raise InvalidInput("CRR processes and concurrency must be at least 1", field="crr")


@contextlib.contextmanager
def setups_up(
    opts: Options, skipped: dict[str, str], namespaces: list[str], progress: Progress
) -> Iterator[dict[str, _Live]]:
    """Bring every setup up (skipping the unavailable ones), yield them, and tear all of them
    down on the way out, whatever happens (an exception, Ctrl-C, SIGTERM)."""
    live: dict[str, _Live] = {}
    with contextlib.ExitStack() as stack:
        for name in opts.setups:
            try:
                setup = make_setup(name, opts.mtu, opts.underlay)
            except SetupUnavailable as exc:
                skipped[name] = exc.message
                progress(f"skip {name}: {exc.message}")
                continue
            stack.callback(setup.down)
            try:
                progress(f"up {name}")
                ep = setup.up()
            except SetupUnavailable as exc:
                skipped[name] = exc.message
                progress(f"skip {name}: {exc.message}")
                continue
            made = list(getattr(setup, "namespaces", [ep.client_netns, ep.server_netns]))
            namespaces.extend(made)
            progress(f"{name} is up: {' '.join(made)}")
            prepare_client(ep.client_netns)
            servers = Servers(ep, opts.crr, opts.pin)
            stack.callback(servers.stop)
            servers.start()
            live[name] = _Live(setup, ep, servers, upcalls=None)
        yield live


def _measure(lv: _Live, test: str, opts: Options) -> dict[str, Any]:
    pids = lv.setup.agent_pids()
    cpu0, up0 = cpu_seconds(pids), lv.setup.upcalls()
    m = run_test(test, lv.ep, opts.duration, opts.crr, lv.servers)
    cpu = cpu_seconds(pids) - cpu0 if pids else None
    up1 = lv.setup.upcalls()
    upcalls = up1 - up0 if up0 is not None and up1 is not None else None
    if cpu is not None:
        lv.agent_cpu_s = (lv.agent_cpu_s or 0.0) + cpu
    if upcalls is not None:
        lv.upcalls = (lv.upcalls or 0) + upcalls
    return {"value": m.value, "agent_cpu_s": cpu, "upcalls": upcalls, **m.detail}


def _tool_check(bare: _Live, opts: Options, progress: Progress) -> dict[str, Any]:
    """The CRR tool at its concurrency and at twice it, on bare, with its CPU shares."""
    out: dict[str, Any] = {"cpus": os.cpu_count(), "duration_s": opts.duration}
    for key, conc in (("configured", opts.crr.conc), ("doubled", 2 * opts.crr.conc)):
        params = CrrParams(opts.crr.procs, conc)
        progress(f"CRR tool check on bare: {params.procs} procs x {conc} connections")
        m: Measurement = crr(bare.ep, opts.duration, params, bare.servers)
        d = m.detail
        budget = d["seconds"] * (os.cpu_count() or 1)
        out[key] = {
            "procs": params.procs,
            "conc": conc,
            "rate": m.value,
            "errors": d["errors"],
            "tool_user_cpu_share": (d["client_user_s"] + d["server_user_s"]) / budget,
            "tool_sys_cpu_share": (d["client_sys_s"] + d["server_sys_s"]) / budget,
        }
    out["doubled_over_configured"] = out["doubled"]["rate"] / out["configured"]["rate"]
    return out


def _summarize(
    reps: list[dict[str, dict[str, Any]]], names: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    medians = {
        n: {t: statistics.median(r[n][t]["value"] for r in reps) for t in TESTS} for n in names
    }
    ratios = {
        n: {
            t: statistics.median(r[n][t]["value"] / r[BASELINE][t]["value"] for r in reps)
            for t in TESTS
        }
        for n in names
        if n != BASELINE
    }
    return medians, ratios


def _ratio_range(
    reps: list[dict[str, dict[str, Any]]], names: list[str]
) -> dict[str, dict[str, list[float]]]:
    """Lowest and highest same-rep ratio per setup and test: how far single reps scatter
    around the median on this machine (a reader's gauge of the noise)."""
    out: dict[str, dict[str, list[float]]] = {}
    for n in names:
        if n == BASELINE:
            continue
        out[n] = {}
        for t in TESTS:
            r = [rep[n][t]["value"] / rep[BASELINE][t]["value"] for rep in reps]
            out[n][t] = [min(r), max(r)]
    return out


def _rr_latency(
    reps: list[dict[str, dict[str, Any]]], names: list[str]
) -> dict[str, dict[str, float | None]]:
    """TCP_RR half round trip per setup: median over reps of sockperf's min / p50 / p99."""
    out: dict[str, dict[str, float | None]] = {}
    for n in names:
        row: dict[str, float | None] = {}
        for q in ("min", "p50", "p99"):
            vals = [r[n]["tcp_rr"].get(f"half_rtt_{q}_us") for r in reps]
            got = [v for v in vals if v is not None]
            row[q] = median(got)
        out[n] = row
    return out


def run(opts: Options, progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Build the setups, run the interleaved reps, tear everything down; every figure."""
    opts.validate()
    skipped: dict[str, str] = {}
    namespaces: list[str] = []
    reps: list[dict[str, dict[str, Any]]] = []
    started = time.time()
    with setups_up(opts, skipped, namespaces, progress) as live:
        names = list(live)
        check = _tool_check(live[BASELINE], opts, progress) if opts.tool_check else None
        for rep in range(opts.reps):
            results: dict[str, dict[str, Any]] = {n: {} for n in names}
            for test in TESTS:
                for name in names:
                    progress(f"rep {rep + 1}/{opts.reps} {test} {name}")
                    results[name][test] = _measure(live[name], test, opts)
            reps.append(results)
        agent_cpu = {n: live[n].agent_cpu_s for n in names}
        upcalls = {n: live[n].upcalls for n in names}
    medians, ratios = _summarize(reps, names)
    counted = [u for u in upcalls.values() if u is not None]
    return {
        "machine": machine(),
        "params": {
            "reps": opts.reps,
            "mtu": opts.mtu,
            "duration_s": opts.duration,
            "underlay": opts.underlay,
            "setups": list(opts.setups),
            "crr_procs": opts.crr.procs,
            "crr_conc": opts.crr.conc,
            "rr_msg_bytes": SOCKPERF_MSG,
            "client_cpu": opts.pin.client_cpu,
            "server_cpu": opts.pin.server_cpu,
        },
        "units": {t: LABELS[t].split(" ", 1)[1] for t in TESTS},
        "medians": medians,
        "ratios": {n: ratios.get(n) for n in opts.setups if n != BASELINE},
        "ratio_range": _ratio_range(reps, names),
        "rr_half_rtt_us": _rr_latency(reps, names),
        "agent_cpu_s": agent_cpu,
        "upcalls": upcalls,
        "upcalls_during_run": sum(counted) if counted else None,
        "skipped": skipped,
        "crr_tool_check": check,
        "reps": reps,
        "namespaces": namespaces,
        "elapsed_s": time.time() - started,
    }


# -- output ------------------------------------------------------------------------------------


def _fmt(v: float | None, ratio: bool = False) -> str:
    if v is None:
        return "pending"
    return f"{v:.2f}" if ratio else f"{v:,.0f}"


def _header(res: dict[str, Any]) -> list[str]:
    p, m = res["params"], res["machine"]
    return [
        f"netloom bench perf: {p['reps']} rep(s) x {p['duration_s']} s per test, underlay "
        f"MTU {p['mtu']} (overlay VM MTU {p['mtu'] - VXLAN_OVERHEAD}), tunnels over "
        f"{UNDERLAY_TEXT.get(p.get('underlay', 'switch'), '?')}; {m['kernel']}, "
        f"{m['cpus']} CPUs, {m['cpu_model']}",
        (
            f"clients pinned to CPU {p['client_cpu']}, servers to CPU {p['server_cpu']}"
            if p.get("client_cpu") is not None
            else "clients and servers not pinned"
        ),
    ]


def _ratio_tables(res: dict[str, Any]) -> list[str]:
    setups: list[str] = res["params"]["setups"]
    rat = res["ratios"]
    out: list[str] = []
    others = [s for s in setups if s != BASELINE]
    if others:
        out += ["", "ratio to bare (median over reps of setup / bare of the same rep):"]
        out += text_table(
            ["test", *others],
            [
                [
                    LABELS[t].split(" ")[0],
                    *(_fmt(rat[s][t], True) if rat.get(s) else "pending" for s in others),
                ]
                for t in TESTS
            ],
        )
    spread = res.get("ratio_range") or {}
    if spread and res["params"]["reps"] > 1:
        out += ["", "lowest - highest ratio of a single rep (this machine's scatter):"]
        out += text_table(
            ["test", *spread],
            [
                [
                    LABELS[t].split(" ")[0],
                    *(f"{spread[s][t][0]:.2f} - {spread[s][t][1]:.2f}" for s in spread),
                ]
                for t in TESTS
            ],
        )
    return out


def _latency_table(res: dict[str, Any]) -> list[str]:
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


def _footer(res: dict[str, Any]) -> list[str]:
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


def render(res: dict[str, Any]) -> str:
    """The medians table (test rows x setup columns), then the ratios and the rest."""
    setups: list[str] = res["params"]["setups"]
    med = res["medians"]
    medians = text_table(
        ["test", *setups],
        [[LABELS[t], *(_fmt(med[s][t]) if s in med else "pending" for s in setups)] for t in TESTS],
    )
    return "\n".join(
        [
            *_header(res),
            "",
            "medians:",
            *medians,
            *_ratio_tables(res),
            *_latency_table(res),
            *_footer(res),
        ]
    )


# -- CLI ---------------------------------------------------------------------------------------


def split_setups(text: str) -> tuple[str, ...]:
    """``--setups a,b,c`` as a tuple (blanks dropped; validation is the options' job)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("perf")
    def perf_cmd(
        reps: Annotated[int, typer.Option(min=1, help="interleaved repetitions")] = 3,
        mtu: Annotated[int, typer.Option(help="underlay MTU (1500 or 9000)")] = 1500,
        duration: Annotated[int, typer.Option(min=1, help="seconds per test")] = 5,
        underlay: Annotated[
            str,
            typer.Option(
                help="the two hosts' tunnel cable: 'direct' (one veth, like bare's) or 'switch' "
                "(through the lab's bridge)"
            ),
        ] = "direct",
        setups: Annotated[str, typer.Option(help="comma-separated setups")] = ",".join(
            DEFAULT_SETUPS
        ),
        crr_procs: Annotated[int, typer.Option(min=1, help="CRR processes per side")] = 2,
        crr_conc: Annotated[int, typer.Option(min=1, help="CRR connections per process")] = 16,
        tool_check: Annotated[bool, typer.Option(help="measure the CRR tool's headroom")] = True,
        pin: Annotated[
            bool,
            typer.Option(help="clients on the first CPU, servers on the last ('two machines')"),
        ] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """TCP_STREAM / MAERTS / RR / CRR of bare veth, kernel bridge+VXLAN and the netloom
        overlay (with and without floating IP), interleaved; medians and ratios to bare."""
        if os.geteuid() != 0:
            typer.echo("bench perf needs root (network namespaces)", err=True)
            raise typer.Exit(2)
        opts = Options(
            reps=reps,
            mtu=mtu,
            duration=duration,
            underlay=underlay,
            setups=split_setups(setups),
            crr=CrrParams(crr_procs, crr_conc),
            tool_check=tool_check,
            pin=Pin.two_machines() if pin else Pin(),
        )
        run_and_print(lambda progress: run(opts, progress), render, as_json)


__all__ = [
    "BASELINE",
    "Options",
    "register",
    "render",
    "run",
    "setups_up",
    "split_setups",
]
