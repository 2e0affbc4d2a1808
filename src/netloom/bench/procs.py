"""Process plumbing the benchmarks share: the machine they ran on, CPU time of PIDs, stopping
a process group, SIGTERM unwinding like Ctrl-C, and running a job then printing its result."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import typer

from netloom.errors import NetloomError

Progress = Callable[[str], None]
IPERF_PORT = 5201  # iperf3's own default port
AGENT_ALIVE_TIMEOUT_S = 30.0  # a lab's agents heartbeating to the cluster after their start


def machine() -> dict[str, Any]:
    """Kernel, CPU count and model: the figures are meaningless without them."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
    }


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (all their threads) from ``/proc/<pid>/stat``; a PID that is
    gone counts 0 (the delta then under-reports, it never goes negative by much)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after "(comm)", which may itself contain spaces: state is field 3
        rest = stat[stat.rindex(")") + 2 :].split()
        total += int(rest[11]) + int(rest[12])  # fields 14 and 15
    return total / _TICK


def stop_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 3.0
) -> None:
    """Stop a process we started in its own session, its whole process group: ``sig``, then
    SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


_MAIN_PID = os.getpid()


def _sigterm(_sig: int, _frame: FrameType | None) -> None:
    """SIGTERM in the CLI process unwinds through every ``down()``, like Ctrl-C.

    Only there: pyroute2 forks helpers (to enter namespaces) that inherit this handler and
    are themselves ended with SIGTERM; unwinding *their* copy of our stack would run our
    teardown a second time from a child. A child just dies."""
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signal.SIGTERM)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM to this process unwinds like Ctrl-C (every ``down()`` runs)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_and_print(
    job: Callable[[Progress], dict[str, Any]],
    render_fn: Callable[[dict[str, Any]], str],
    as_json: bool,
) -> None:
    """Run a bench job (progress on stderr; SIGTERM and Ctrl-C tear everything down), then
    print its result as JSON or as text; a NetloomError exits 1 with its message."""
    try:
        with sigterm_unwinds():
            res = job(lambda m: typer.echo(m, err=True))
    except NetloomError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: everything was torn down", err=True)
        raise typer.Exit(130) from None
    typer.echo(json.dumps(res) if as_json else render_fn(res))


__all__ = [
    "AGENT_ALIVE_TIMEOUT_S",
    "IPERF_PORT",
    "Progress",
    "cpu_seconds",
    "machine",
    "run_and_print",
    "sigterm_unwinds",
    "stop_group",
]
