"""``netloom bench profile``: where the CPU goes per transaction, each setup side by side.

``netloom bench perf`` says *how much* slower the overlay is; this says *where*. It builds the
same setups (:mod:`netloom.bench.perf.setups`), then runs one test on each in turn, the
whole machine sampled by ``perf record -a -g -e cpu-clock`` (this VM has no hardware counters)
while the test runs. The samples are split into the stages of the packet path
(:mod:`netloom.bench.perf.stages`) and divided by the work done: microseconds of CPU per
transaction for TCP_CRR / TCP_RR, per megabyte for TCP_STREAM / TCP_MAERTS.

Reading it: ``busy`` (all but idle) per transaction is what bounds a CPU-bound test such as
TCP_CRR, so ``bare busy / setup busy`` predicts the setup's ratio; the per-stage difference to
bare is what the overlay adds and where. The recording starts just before the test's client
and stops just after it, so the client's start-up is inside the window: the same small cost on
every setup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from netloom.bench.perf import stages
from netloom.bench.perf.compare import BASELINE, Options, setups_up, split_setups
from netloom.bench.perf.render import UNDERLAY_TEXT
from netloom.bench.perf.workloads import (
    LABELS,
    TESTS,
    CrrParams,
    Measurement,
    run_test,
)
from netloom.bench.procs import Progress, machine, run_and_print, stop_group
from netloom.bench.report import text_table
from netloom.errors import DatapathError, InvalidInput

DEFAULT_SETUPS = ("bare", "overlay")
SAMPLE_HZ = 4000
PERF_START_S = 0.5  # perf record's own start-up before the client begins


@dataclass(frozen=True)
class ProfileOptions:
    test: str = "tcp_crr"
    duration: int = 3
    reps: int = 2
    mtu: int = 1500
    underlay: str = "direct"
    setups: tuple[str, ...] = DEFAULT_SETUPS

    def validate(self) -> None:
        if self.test not in TESTS:
            raise InvalidInput(f"--test must be one of {', '.join(TESTS)}", field="test")
        if self.duration < 1:
            raise InvalidInput("--duration must be at least 1 s", field="duration")
        if self.reps < 1:
            raise InvalidInput("--reps must be at least 1", field="reps")
        self.as_perf_options().validate()

    def as_perf_options(self) -> Options:
        return Options(
            reps=1,
            mtu=self.mtu,
            duration=self.duration,
            underlay=self.underlay,
            setups=self.setups,
            tool_check=False,
        )


def perf_binary() -> str:
    """``perf`` if it is installed and can sample the whole machine, else DatapathError."""
    found = shutil.which("perf")
    if found is None:
        raise DatapathError("perf is not installed (Debian: linux-perf)")
    probe = subprocess.run(
        [found, "record", "-a", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        raise DatapathError(f"perf cannot record here: {probe.stderr.strip()[-300:]}")
    return found


@contextlib.contextmanager
def recording(perf: str, out: Path) -> Iterator[None]:
    """``perf record -a -g`` into ``out`` for the duration of the block (SIGINT ends it)."""
    proc = subprocess.Popen(
        [perf, "record", "-a", "-g", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(PERF_START_S)
        if proc.poll() is not None:
            raise DatapathError(
                f"perf record exited: {proc.stderr.read().decode()[-300:]}"
                if proc.stderr
                else "perf record exited"
            )
        yield
    finally:
        stop_group(proc, signal.SIGINT, grace=60.0)  # SIGINT: perf writes its data and exits


def stages_of(perf: str, data: Path) -> dict[str, int]:
    """Nanoseconds of CPU per stage in a recording."""
    proc = subprocess.Popen(
        [perf, "script", "-i", str(data), "-F", "comm,period,ip,sym,dso"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        return stages.breakdown(stages.parse(proc.stdout))
    finally:
        proc.stdout.close()
        proc.wait()


def work_done(test: str, m: Measurement, duration: int) -> tuple[float, str]:
    """(amount, unit) the CPU time is divided by: transactions, or megabytes moved."""
    if test == "tcp_crr":
        return m.value * float(m.detail.get("seconds", duration)), "transaction"
    if test == "tcp_rr":
        return float(m.detail.get("messages", m.value * duration)), "transaction"
    return m.value * duration / 8, "MB"


def per_unit(ns: dict[str, int], amount: float) -> dict[str, float]:
    """Microseconds of CPU per unit of work, per stage, plus ``busy`` (all but idle)."""
    us = {k: v / 1e3 / amount for k, v in ns.items()}
    us["busy"] = sum(v for k, v in us.items() if k != stages.IDLE)
    return us


def _add(acc: dict[str, Any], value: float, amount: float, ns: dict[str, int]) -> None:
    """Sum a rep into a setup's totals (CPU and work add up; the rate is kept per rep)."""
    acc["values"].append(value)
    acc["amount"] += amount
    for k, v in ns.items():
        acc["cpu_ns"][k] = acc["cpu_ns"].get(k, 0) + v


def _compare_to_bare(
    setups: dict[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, float]]:
    """Per setup: its median rate and CPU per unit; against bare: the extra CPU per unit per
    stage, the rate ratio bare's busy CPU predicts, and the rate ratio measured."""
    for s in setups.values():
        s["value"] = statistics.median(s["values"])
        s["per_unit_us"] = per_unit(s["cpu_ns"], s["amount"])
    base = setups.get(BASELINE)
    if base is None:
        return {}, {}, {}
    others = {n: s for n, s in setups.items() if n != BASELINE}
    extra = {
        n: {k: v - base["per_unit_us"][k] for k, v in s["per_unit_us"].items()}
        for n, s in others.items()
    }
    predicted = {
        n: base["per_unit_us"]["busy"] / s["per_unit_us"]["busy"]
        for n, s in others.items()
        if s["per_unit_us"]["busy"] > 0
    }
    measured = {n: s["value"] / base["value"] for n, s in others.items() if base["value"] > 0}
    return extra, predicted, measured


def run(opts: ProfileOptions, progress: Progress = lambda _m: None) -> dict[str, Any]:
    opts.validate()
    perf = perf_binary()
    skipped: dict[str, str] = {}
    namespaces: list[str] = []
    setups: dict[str, dict[str, Any]] = {}
    popts = opts.as_perf_options()
    with (
        tempfile.TemporaryDirectory(prefix="nl-profile-") as tmp,
        setups_up(popts, skipped, namespaces, progress) as live,
    ):
        for rep in range(opts.reps):  # interleaved, as in bench perf: drifts hit all alike
            for name, lv in live.items():
                data = Path(tmp) / f"{name}-{rep}.data"
                progress(f"rep {rep + 1}/{opts.reps} profile {opts.test} {name}")
                with recording(perf, data):
                    m = run_test(opts.test, lv.ep, opts.duration, CrrParams(), lv.servers)
                amount, unit = work_done(opts.test, m, opts.duration)
                _add(
                    setups.setdefault(
                        name, {"values": [], "amount": 0.0, "unit": unit, "cpu_ns": {}}
                    ),
                    m.value,
                    amount,
                    stages_of(perf, data),
                )
                data.unlink()
    extra, predicted, measured = _compare_to_bare(setups)
    return {
        "machine": machine(),
        "params": {
            "test": opts.test,
            "duration_s": opts.duration,
            "reps": opts.reps,
            "mtu": opts.mtu,
            "underlay": opts.underlay,
            "setups": list(opts.setups),
            "sample_hz": SAMPLE_HZ,
        },
        "stages": [*stages.STAGE_NAMES, stages.OTHER, stages.USER, stages.IDLE],
        "setups": setups,
        "extra_over_bare_us": extra,
        "ratio_measured": measured,
        "ratio_predicted_by_busy_cpu": predicted,
        "skipped": skipped,
        "namespaces": namespaces,
    }


def render(res: dict[str, Any]) -> str:
    p, setups = res["params"], res["setups"]
    names = list(setups)
    unit = next(iter(setups.values()))["unit"] if setups else "transaction"
    out = [
        f"netloom bench profile: {LABELS[p['test']]}, {p['reps']} rep(s) x "
        f"{p['duration_s']} s per setup, "
        f"MTU {p['mtu']}, tunnels over {UNDERLAY_TEXT.get(p['underlay'], '?')}; "
        f"{res['machine']['kernel']}, {res['machine']['cpus']} CPUs",
        f"CPU per {unit}, us (perf record -a -g -e cpu-clock -F {p['sample_hz']}; "
        "each sample charged to the innermost stage on its stack)",
        "",
    ]
    others = [n for n in names if n != BASELINE and n in res["extra_over_bare_us"]]
    head = ["stage", *names, *(f"{n} - bare" for n in others)]
    rows = []
    for stage in [*res["stages"], "busy"]:
        rows.append(
            [
                stage,
                *(f"{setups[n]['per_unit_us'][stage]:.1f}" for n in names),
                *(f"{res['extra_over_bare_us'][n][stage]:+.1f}" for n in others),
            ]
        )
    out += [*text_table(head, rows), ""]
    for n in others:
        meas, pred = res["ratio_measured"].get(n), res["ratio_predicted_by_busy_cpu"].get(n)
        out.append(
            f"{n}: measured {meas:.2f} of bare (median rates); bare busy / {n} busy = {pred:.2f}"
            if meas is not None and pred is not None
            else f"{n}: no ratio"
        )
    out += [f"rate: {n} " + ", ".join(f"{v:,.0f}" for v in setups[n]["values"]) for n in names]
    out += [f"skipped {s}: {why}" for s, why in res["skipped"].items()]
    return "\n".join(out)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("profile")
    def profile_cmd(
        test: Annotated[
            str, typer.Option(help="tcp_crr, tcp_rr, tcp_stream or tcp_maerts")
        ] = "tcp_crr",
        duration: Annotated[int, typer.Option(min=1, help="seconds per setup and rep")] = 3,
        reps: Annotated[int, typer.Option(min=1, help="interleaved repetitions")] = 2,
        mtu: Annotated[int, typer.Option(help="underlay MTU (1500 or 9000)")] = 1500,
        underlay: Annotated[str, typer.Option(help="'direct' or 'switch'")] = "direct",
        setups: Annotated[str, typer.Option(help="comma-separated setups")] = ",".join(
            DEFAULT_SETUPS
        ),
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """CPU per transaction by stage of the packet path (perf), bare vs the overlay."""
        if os.geteuid() != 0:
            typer.echo("bench profile needs root (namespaces, perf -a)", err=True)
            raise typer.Exit(2)
        opts = ProfileOptions(
            test=test,
            duration=duration,
            reps=reps,
            mtu=mtu,
            underlay=underlay,
            setups=split_setups(setups),
        )
        run_and_print(lambda progress: run(opts, progress), render, as_json)


__all__ = ["ProfileOptions", "register", "render", "run", "work_done"]
