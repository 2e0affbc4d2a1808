"""The agent's simulation log: every simulation of a real packet and every flow event.

Two halves, so that the upcall path stays cheap and does no I/O: :class:`SimLog` (sans-IO, in
the core) fills :class:`~netloom.model.simlog.SimEntry` values into a bounded buffer (the raw
trace steps the simulation already keeps, the packet's key as integers: nothing is rendered
here); the driver drains it every tick into :class:`SimLogFile` (JSON lines under the agent's
state dir, rotated by size) and ships the same entries to the cluster in batches over the
topology connection. When the buffer is full the oldest entries go (counted in ``dropped``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from netloom.flows.model import FIELD_NAMES, Flow, FlowKey
from netloom.model import simlog as k
from netloom.model.simlog import SimEntry
from netloom.sim import Result
from netloom.topology.protocol import SimBatch

DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # per file
DEFAULT_KEEP = 3  # rotated files kept besides the current one
DEFAULT_PENDING = 50_000  # entries between two drains at most
FILE_NAME = "simlog.jsonl"


class SimLog:
    """The log's in-memory half (see the module docstring). ``enabled`` False: nothing is
    recorded."""

    __slots__ = ("_buf", "dropped", "enabled", "host")

    def __init__(self, host: str, *, enabled: bool = True, pending: int = DEFAULT_PENDING) -> None:
        self.host = host
        self.enabled = enabled
        self._buf: deque[SimEntry] = deque(maxlen=pending)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf)

    def _add(self, e: SimEntry) -> None:
        buf = self._buf
        if len(buf) == buf.maxlen:
            self.dropped += 1
        buf.append(e)

    def sim(
        self, now: float, port: str, reason: str, r: Result, trace: str | None = None
    ) -> SimEntry | None:
        """Record a simulation (the caller fills ``flow``/``tags``/``hosts`` once known)."""
        if not self.enabled:
            return None
        e = SimEntry(
            t=now,
            host=self.host,
            kind=k.SIM,
            port=port,
            key=r.key,
            read=r.read,
            reason=reason,
            steps=r.trace.raw,
            verdict=r.verdict.value,
            out=list(r.outputs),
            trace=trace,
        )
        self._add(e)
        return e

    def event(
        self,
        now: float,
        kind: str,
        port: str | None = None,
        *,
        flow: Flow | None = None,
        detail: str = "",
    ) -> None:
        """Record a flow-table, parking or rate-limit event."""
        if not self.enabled:
            return
        key: tuple[int, ...] = _fields(flow.key) if flow is not None else ()
        read = _mask_bits(flow) if flow is not None else 0
        self._add(
            SimEntry(
                t=now,
                host=self.host,
                kind=kind,
                port=port,
                key=key,
                read=read,
                flow=flow.cookie if flow is not None else 0,
                detail=detail,
            )
        )

    def take(self) -> list[SimEntry]:
        """Everything recorded since the last take, oldest first."""
        out = list(self._buf)
        self._buf.clear()
        return out


def _fields(key: FlowKey) -> tuple[int, ...]:
    return tuple(getattr(key, n) for n in FIELD_NAMES)


def _mask_bits(flow: Flow) -> int:
    """The F_* bits of the fields the flow matches on (in_port at least)."""
    return sum(1 << i for i, m in enumerate(_fields(flow.mask)) if m) or 1


class SimLogFile:
    """JSON lines in ``directory``/simlog.jsonl, rotated when a file passes ``max_bytes``:
    simlog.jsonl.1 is the previous file, up to ``keep`` of them."""

    def __init__(
        self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self.keep = keep
        self._enc = msgspec.json.Encoder()
        self._f = self.path.open("ab")
        self._size = self._f.tell()

    def write(self, entries: list[SimEntry]) -> None:
        if not entries:
            return
        data = self._enc.encode_lines(entries)
        self._f.write(data)
        self._f.flush()
        self._size += len(data)
        if self._size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{FILE_NAME}.{i - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{FILE_NAME}.{i}"))
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self._f = self.path.open("ab")
        self._size = 0

    def close(self) -> None:
        self._f.close()


class SimLogOutlet:
    """Where drained entries go (the driver's side): the log file, if any, then the cluster in
    batches of ``batch`` entries. Entries not yet shipped wait while the topology connection
    is down, the oldest going first past ``pending`` (counted in ``unshipped_dropped``)."""

    def __init__(
        self, file: SimLogFile | None, *, batch: int = 1000, pending: int = DEFAULT_PENDING
    ) -> None:
        self.file = file
        self.batch = batch
        self._unshipped: deque[SimEntry] = deque(maxlen=pending)
        self.shipped = 0
        self.unshipped_dropped = 0

    @property
    def pending(self) -> int:
        """Entries waiting to be shipped."""
        return len(self._unshipped)

    def drain(
        self, entries: list[SimEntry], wall_offset: float, send: Callable[[SimBatch], bool]
    ) -> None:
        """Stamp ``entries`` with wall-clock times (``t + wall_offset``), write, ship."""
        for e in entries:
            e.t += wall_offset
        if self.file is not None:
            self.file.write(entries)
        q = self._unshipped
        over = len(q) + len(entries) - (q.maxlen or 0)
        if over > 0:
            self.unshipped_dropped += over
        q.extend(entries)
        while q:
            chunk = [q.popleft() for _ in range(min(self.batch, len(q)))]
            if not send(SimBatch(chunk)):
                q.extendleft(reversed(chunk))
                return
            self.shipped += len(chunk)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read_entries(path: Path) -> list[SimEntry]:
    """The entries of one log file (tests, offline reading)."""
    dec = msgspec.json.Decoder(SimEntry)
    return [dec.decode(line) for line in path.read_bytes().splitlines() if line]


__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PENDING",
    "FILE_NAME",
    "SimLog",
    "SimLogFile",
    "SimLogOutlet",
    "read_entries",
]
