"""The lab's process supervisor: start a command in a namespace and record it, know later
whether a recorded PID is still that process, stop processes, and restart the ones that died.

Identity: a PID plus its start time in clock ticks since boot (/proc/PID/stat field 22,
proc(5)). The kernel fixes that number when the process starts and no clock step moves it,
where psutil's wall-clock ``create_time`` shifts with the clock (a live agent then looked dead
and a second one was started on the same host). A recycled PID has another start time.

Restarts happen when someone looks (``netloom lab status``, ``Lab.supervise``): no supervisor
process runs between two looks. :class:`RestartPolicy` bounds them (at most ``max_restarts``
in ``window_s``, with a doubling back-off), after which the record says ``gave_up``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from netloom.errors import LabError
from netloom.lab import nsexec, plumbing
from netloom.lab.state import ProcessRecord, StateFile

# how far a legacy record's wall-clock create_time may be from psutil's (state files written
# before start_ticks)
LEGACY_CREATE_TIME_SLACK = 0.05


def start_ticks(pid: int) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot, None when there is no such
    process. The command name (field 2) may hold spaces and parentheses: fields are counted
    after its last ``)``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(rest[19])  # field 22; rest[0] is field 3


def boottime() -> float:
    """Seconds since boot (CLOCK_BOOTTIME): comparable across processes, immune to clock
    steps, and on the same clock as :func:`start_ticks`."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def record(
    pid: int,
    role: str,
    match: str,
    ns: str | None,
    log: Path | None,
    *,
    argv: Sequence[str] = (),
    restart: bool = False,
) -> ProcessRecord:
    """A record of process ``pid`` (just started by us, so not yet recyclable)."""
    ticks = start_ticks(pid)
    if ticks is None:
        # a child not yet reaped keeps its /proc entry: this only happens for a foreign pid
        raise LabError(f"no process {pid} to record as the lab's {role}")
    return ProcessRecord(
        role=role,
        pid=pid,
        start_ticks=ticks,
        match=match,
        netns=ns,
        log=str(log) if log else None,
        argv=list(argv),
        restart=restart,
        started=boottime(),
    )


def spawn(
    ns: str, argv: Sequence[str], role: str, match: str, log: Path, *, restart: bool = False
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``argv`` in ``ns`` with its output appended to ``log``; the caller saves the
    record."""
    with log.open("ab") as out:
        proc = nsexec.popen(ns, argv, stdout=out, stderr=subprocess.STDOUT)
    return proc, record(proc.pid, role, match, ns, log, argv=argv, restart=restart)


def same_process(rec: ProcessRecord) -> bool:
    """Whether ``rec.pid`` is still the process that was recorded (same start time)."""
    if rec.start_ticks is not None:
        return start_ticks(rec.pid) == rec.start_ticks
    if rec.create_time is None:
        return False
    try:
        created = float(psutil.Process(rec.pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return abs(created - rec.create_time) <= LEGACY_CREATE_TIME_SLACK


def still_ours(rec: ProcessRecord) -> psutil.Process | None:
    """The recorded process if it is still the one we started (same start time, command line
    still containing our marker), else None: a recycled PID is never signalled."""
    if not same_process(rec):
        return None
    try:
        p = psutil.Process(rec.pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return p  # ours, dead, maybe still to be reaped
        if rec.match not in " ".join(p.cmdline()):
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(rec: ProcessRecord) -> bool:
    p = still_ours(rec)
    try:
        return p is not None and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def terminate(procs: Sequence[psutil.Process], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    left = wait_gone(procs, grace)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    wait_gone(left, grace)


def wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; returns those still running at the deadline.

    A zombie counts as gone (it holds no socket or namespace), and our own children are reaped
    on the way. psutil.wait_procs is not used: for processes that are not our children it can
    block well past their exit."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        still = []
        for p in left:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p.pid, os.WNOHANG)
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    still.append(p)
            except psutil.NoSuchProcess:
                pass
        left = still
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return left


def stop_all(sf: StateFile) -> list[str]:
    """Recorded processes (checked to still be ours), then any process still living in one
    of the lab's namespaces: it can only have been started there by the lab (or by
    ``lab exec``) and would keep the lab's sockets alive."""
    state = sf.state
    removed: list[str] = []
    roles = ["agent", "cluster", "zookeeper"]  # users before what they use
    roles += sorted({r.role for r in state.processes} - set(roles))
    for role in roles:
        group = [
            (r, p) for r in state.processes if r.role == role and (p := still_ours(r)) is not None
        ]
        terminate([p for _, p in group])
        removed += [f"{r.role} pid {r.pid}" for r, _ in group]
    me = os.getpid()
    strays: list[psutil.Process] = []
    for ns in state.netns:
        for pid in nsexec.pids_in(ns):
            if pid not in (me, 1):
                with contextlib.suppress(psutil.NoSuchProcess):
                    strays.append(psutil.Process(pid))
    terminate(strays)
    removed += [f"process pid {p.pid} (in a lab netns)" for p in strays]
    return removed


@dataclass(frozen=True)
class RestartPolicy:
    """At most ``max_restarts`` restarts within ``window_s`` seconds; the n-th restart in the
    window waits ``backoff_s * 2**n`` (capped at ``backoff_max_s``) after the last start."""

    max_restarts: int = 5
    window_s: float = 120.0
    backoff_s: float = 0.5
    backoff_max_s: float = 15.0

    def decide(self, rec: ProcessRecord, now: float) -> str:
        """``restart``, ``wait`` (backing off) or ``give-up`` for the dead process ``rec``."""
        recent = [t for t in rec.restarts if now - t < self.window_s]
        if len(recent) >= self.max_restarts:
            return "give-up"
        delay = min(self.backoff_s * 2 ** len(recent), self.backoff_max_s)
        return "restart" if now - rec.started >= delay else "wait"


def supervise(sf: StateFile, policy: RestartPolicy | None = None) -> list[str]:
    """Restart every dead process recorded with ``restart`` set, as far as ``policy`` allows;
    returns what was done (``restarted agent pid 12 -> 34``, ``gave up on ...``)."""
    policy = policy or RestartPolicy()
    done: list[str] = []
    state = sf.state
    for i, rec in enumerate(state.processes):
        if not rec.restart or rec.gave_up or not rec.argv or rec.netns is None or alive(rec):
            continue
        now = boottime()
        decision = policy.decide(rec, now)
        if decision == "give-up":
            rec.gave_up = True
            done.append(f"gave up on {rec.role} in {rec.netns} ({len(rec.restarts)} restarts)")
        elif decision == "restart":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(rec.pid, os.WNOHANG)  # reap it if it was our child
            log = Path(rec.log) if rec.log else Path(os.devnull)
            if rec.role == "agent":  # what the dead agent left: its successor starts clean
                done += plumbing.remove_sidecars(rec.netns)
            _, new = spawn(rec.netns, rec.argv, rec.role, rec.match, log, restart=True)
            new.restarts = [t for t in rec.restarts if now - t < policy.window_s] + [now]
            state.processes[i] = new
            done.append(f"restarted {rec.role} in {rec.netns}: pid {rec.pid} -> {new.pid}")
        sf.save()
    return done


__all__ = [
    "RestartPolicy",
    "alive",
    "boottime",
    "record",
    "same_process",
    "spawn",
    "start_ticks",
    "still_ours",
    "stop_all",
    "supervise",
    "terminate",
    "wait_gone",
]
