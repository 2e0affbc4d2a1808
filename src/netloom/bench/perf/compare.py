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
  thermal, TIME_WAIT build-up) hit all setups alike; 5 reps by default, each figure printed
  as its median and its range (lowest - highest rep);
* a setup's ratio for a test is the median over reps of ``setup / bare`` **of the same rep**
  (:mod:`netloom.bench.perf.summary`): pairing removes the rep-to-rep drift that a ratio of
  medians would keep;
* agent CPU time, upcalls and the agents' flow counters around each test
  (:mod:`netloom.bench.perf.live`), summed over the run; ``upcalls_per_setup`` are those of
  the TCP_CRR runs (total and per rep): with flows in the kernel they stay small next to the
  connections made;
* bare is host to host over the same cable as the two-host setups' tunnels: one veth
  (``--underlay direct``) or the lab's switch (``--underlay switch``), so a ratio measures
  the overlay and nothing else;
* the overlay VMs' ports carry stateful security groups as a cloud port would (Neutron's
  default group on the client, the test ports open on the server); ``--no-sg`` leaves them
  without filters;
* ``--series``: no interleaving; each setup runs each test ``--reps`` times back to back and
  the output shows every run with the agents' counters and last / first, the check that a
  setup does not slow down as connections accumulate;
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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from netloom.bench.perf import summary
from netloom.bench.perf.catalog import SETUPS, make_setup
from netloom.bench.perf.live import Live, measure
from netloom.bench.perf.render import render
from netloom.bench.perf.setups import UNDERLAYS
from netloom.bench.perf.summary import BASELINE
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
)
from netloom.bench.procs import Progress, machine, run_and_print
from netloom.errors import InvalidInput, SetupUnavailable

DEFAULT_SETUPS = ("bare", "kernel-vxlan", "overlay", "overlay-fip")
DEFAULT_REPS = 5
MTU_MIN, MTU_MAX = 1280, 9000  # 1280: the IPv6 minimum link MTU (RFC 8200 §5); 9000: jumbo


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Options:
    reps: int = DEFAULT_REPS
    mtu: int = 1500
    duration: int = 5
    underlay: str = "direct"
    setups: tuple[str, ...] = DEFAULT_SETUPS
    tests: tuple[str, ...] = TESTS
    crr: CrrParams = field(default_factory=CrrParams)
    tool_check: bool = True
    pin: Pin = field(default_factory=Pin.two_machines)
    sg: bool = True  # stateful security groups on the overlay VMs' ports
    series: bool = False  # back to back per setup instead of interleaved reps

    def validate(self) -> None:
        self._validate_names()
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

    def _validate_names(self) -> None:
        unknown = [s for s in self.setups if s not in SETUPS]
        if unknown:
            raise InvalidInput(
                f"unknown setup(s) {', '.join(unknown)}; known: {', '.join(SETUPS)}", field="setups"
            )
        if not self.series and BASELINE not in self.setups:
            raise InvalidInput(
                "the setups must include 'bare': every ratio is to bare (or use --series)",
                field="setups",
            )
        if len(set(self.setups)) != len(self.setups):
            raise InvalidInput("a setup is listed twice", field="setups")
        bad = [t for t in self.tests if t not in TESTS]
        if bad or not self.tests or len(set(self.tests)) != len(self.tests):
            raise InvalidInput(
                f"--tests takes each of {', '.join(TESTS)} at most once, "
                f"not {','.join(self.tests)!r}",
                field="tests",
            )

    @property
    def checks_tool(self) -> bool:
        """The CRR tool's headroom is measured on bare, when there is a CRR test."""
        return self.tool_check and BASELINE in self.setups and "tcp_crr" in self.tests


@contextlib.contextmanager
def setups_up(
    opts: Options, skipped: dict[str, str], namespaces: list[str], progress: Progress
) -> Iterator[dict[str, Live]]:
    """Bring every setup up (skipping the unavailable ones), yield them, and tear all of them
    down on the way out, whatever happens (an exception, Ctrl-C, SIGTERM)."""
    live: dict[str, Live] = {}
    with contextlib.ExitStack() as stack:
        for name in opts.setups:
            try:
                setup = make_setup(name, opts.mtu, opts.underlay, sg=opts.sg)
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
            live[name] = Live(setup, ep, servers, upcalls=None)
        yield live


def _tool_check(bare: Live, opts: Options, progress: Progress) -> dict[str, Any]:
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


Reps = list[dict[str, dict[str, Any]]]


def _interleaved(live: dict[str, Live], opts: Options, progress: Progress) -> Reps:
    """Each rep runs every test on every setup in turn."""
    reps: Reps = []
    for rep in range(opts.reps):
        results: dict[str, dict[str, Any]] = {n: {} for n in live}
        for test in opts.tests:
            for name, lv in live.items():
                progress(f"rep {rep + 1}/{opts.reps} {test} {name}")
                results[name][test] = measure(lv, test, opts.duration, opts.crr)
        reps.append(results)
    return reps


def _back_to_back(live: dict[str, Live], opts: Options, progress: Progress) -> Reps:
    """Each setup runs each test ``reps`` times in a row; run *i* of every setup is rep *i*."""
    reps: Reps = [{n: {} for n in live} for _ in range(opts.reps)]
    for name, lv in live.items():
        for test in opts.tests:
            for i in range(opts.reps):
                rec = measure(lv, test, opts.duration, opts.crr)
                progress(f"run {i + 1}/{opts.reps} {test} {name}: {rec['value']:,.0f}")
                reps[i][name][test] = rec
    return reps


def run(opts: Options, progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Build the setups, run the reps (interleaved, or back to back with ``series``), tear
    everything down; every figure."""
    opts.validate()
    skipped: dict[str, str] = {}
    namespaces: list[str] = []
    started = time.time()
    with setups_up(opts, skipped, namespaces, progress) as live:
        names = list(live)
        check = _tool_check(live[BASELINE], opts, progress) if opts.checks_tool else None
        reps = (_back_to_back if opts.series else _interleaved)(live, opts, progress)
        agent_cpu = {n: live[n].agent_cpu_s for n in names}
        upcalls = {n: live[n].upcalls for n in names}
    return {
        "machine": machine(),
        "params": _params(opts),
        "units": {t: LABELS[t].split(" ", 1)[1] for t in opts.tests},
        **_figures(reps, names, opts),
        "agent_cpu_s": agent_cpu,
        "upcalls": upcalls,
        "upcalls_during_run": _total(upcalls.values()),
        "skipped": skipped,
        "crr_tool_check": check,
        "reps": reps,
        "namespaces": namespaces,
        "elapsed_s": time.time() - started,
    }


def _total(values: Any) -> int | None:
    counted = [u for u in values if u is not None]
    return sum(counted) if counted else None


def _params(opts: Options) -> dict[str, Any]:
    return {
        "reps": opts.reps,
        "mtu": opts.mtu,
        "duration_s": opts.duration,
        "underlay": opts.underlay,
        "setups": list(opts.setups),
        "tests": list(opts.tests),
        "sg": opts.sg,
        "series": opts.series,
        "crr_procs": opts.crr.procs,
        "crr_conc": opts.crr.conc,
        "rr_msg_bytes": SOCKPERF_MSG,
        "client_cpu": opts.pin.client_cpu,
        "server_cpu": opts.pin.server_cpu,
    }


def _figures(reps: Reps, names: list[str], opts: Options) -> dict[str, Any]:
    tests = opts.tests
    paired = BASELINE in names
    ratios = summary.ratios(reps, names, tests) if paired else {}
    return {
        "medians": summary.medians(reps, names, tests),
        "ranges": summary.value_ranges(reps, names, tests),
        "ratios": {n: ratios.get(n) for n in opts.setups if n != BASELINE},
        "ratio_range": summary.ratio_ranges(reps, names, tests) if paired else {},
        "rr_half_rtt_us": summary.rr_latency(reps, names) if "tcp_rr" in tests else {},
        "upcalls_per_setup": summary.upcalls_per_setup(reps, names) if "tcp_crr" in tests else {},
        "series": _series(reps, names, tests) if opts.series else None,
    }


def _series(reps: Reps, names: list[str], tests: tuple[str, ...]) -> dict[str, Any]:
    """Per setup and test: every run's value and last / first."""
    out: dict[str, Any] = {}
    for n in names:
        out[n] = {}
        for t in tests:
            values = [r[n][t]["value"] for r in reps]
            out[n][t] = {"values": values, "last_over_first": values[-1] / values[0]}
    return out


# -- CLI ---------------------------------------------------------------------------------------


def split_setups(text: str) -> tuple[str, ...]:
    """``--setups a,b,c`` as a tuple (blanks dropped; validation is the options' job)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("perf")
    def perf_cmd(
        reps: Annotated[
            int, typer.Option(min=1, help="interleaved repetitions (with --series: runs)")
        ] = DEFAULT_REPS,
        mtu: Annotated[int, typer.Option(help="underlay MTU (1500 or 9000)")] = 1500,
        duration: Annotated[int, typer.Option(min=1, help="seconds per test")] = 5,
        underlay: Annotated[
            str,
            typer.Option(
                help="the cable between the two hosts, bare's and the tunnels': 'direct' (one "
                "veth) or 'switch' (through a lab switch's bridge)"
            ),
        ] = "direct",
        setups: Annotated[str, typer.Option(help="comma-separated setups")] = ",".join(
            DEFAULT_SETUPS
        ),
        tests: Annotated[str, typer.Option(help="comma-separated tests")] = ",".join(TESTS),
        sg: Annotated[
            bool,
            typer.Option(help="stateful security groups on the overlay VMs' ports (--no-sg: none)"),
        ] = True,
        series: Annotated[
            bool,
            typer.Option(
                help="run each test --reps times back to back per setup, each run printed with "
                "the agents' counters and last / first (bare not required)"
            ),
        ] = False,
        crr_procs: Annotated[int, typer.Option(min=1, help="CRR processes per side")] = 2,
        crr_conc: Annotated[int, typer.Option(min=1, help="CRR connections per process")] = 16,
        tool_check: Annotated[bool, typer.Option(help="measure the CRR tool's headroom")] = True,
        pin: Annotated[
            bool,
            typer.Option(help="clients on the first CPU, servers on the last ('two machines')"),
        ] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """TCP_STREAM / MAERTS / RR / CRR of bare host to host, kernel bridge+VXLAN and the
        netloom overlay (with and without floating IP), interleaved; medians, ranges and
        ratios to bare, and the agents' upcalls."""
        if os.geteuid() != 0:
            typer.echo("bench perf needs root (network namespaces)", err=True)
            raise typer.Exit(2)
        opts = Options(
            reps=reps,
            mtu=mtu,
            duration=duration,
            underlay=underlay,
            setups=split_setups(setups),
            tests=split_setups(tests),
            crr=CrrParams(crr_procs, crr_conc),
            tool_check=tool_check,
            pin=Pin.two_machines() if pin else Pin(),
            sg=sg,
            series=series,
        )
        run_and_print(lambda progress: run(opts, progress), render, as_json)


__all__ = [
    "BASELINE",
    "DEFAULT_SETUPS",
    "Options",
    "register",
    "render",
    "run",
    "setups_up",
    "split_setups",
]
