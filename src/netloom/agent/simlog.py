"""The agent's simulation log: every simulation of a real packet and every flow event.

Two halves, so that the upcall path stays cheap and does no I/O. :class:`SimLog` (sans-IO, in
the core) encodes each entry at once, in one msgspec call, as the msgpack array form of a
:class:`~netloom.model.simlog.SimEntry`, appending it to one growing buffer: no object per
entry is kept, so nothing of the simulation stays alive and the garbage collector has nothing
new to scan. An entry holds what the simulation made anyway (its raw trace steps, the
packet's key as integers); nothing is rendered or derived (the host is the connection's, the
output ports are the trace's "output" steps). Times are the agent's clock plus
``wall_offset`` (the driver keeps it current). Past ``max_bytes`` new entries are dropped
(counted in ``dropped``) until the next drain.

The driver drains the buffer every tick into :class:`SimLogOutlet`: the buffer becomes, as
is, the body of one :class:`~netloom.topology.protocol.SimBatch` frame; the same bytes are
appended to the log file (:class:`SimLogFile`, rotated by size) and sent to the cluster over
the topology connection.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from netloom.flows.model import FIELD_NAMES, Flow, FlowKey
from netloom.model import simlog as k
from netloom.model.simlog import SimEntry
from netloom.sim import Result
from netloom.topology.protocol import SimBatch, decode_frames, raw_frame

DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # per file
DEFAULT_KEEP = 3  # rotated files kept besides the current one
DEFAULT_PENDING_BYTES = 16 * 1024 * 1024  # recorded between two drains at most
FILE_NAME = "simlog.msgpack"
_SIM = k.SIM


class Outcome(NamedTuple):
    """What came of a simulation besides its result: the installed flow's cookie (0: none)
    and tags, the hosts the packet is tunnelled to, the trace id of a traced packet."""

    flow: int = 0
    tags: Sequence[str] = ()
    hosts: Sequence[str] = ()
    trace: str | None = None


NOTHING = Outcome()


class SimLog:
    """The log's in-memory half (see the module docstring). ``enabled`` False: nothing is
    recorded."""

    __slots__ = ("_buf", "_enc", "_max", "count", "dropped", "enabled", "wall_offset")

    def __init__(self, *, enabled: bool = True, max_bytes: int = DEFAULT_PENDING_BYTES) -> None:
        self.enabled = enabled
        self.wall_offset = 0.0  # wall clock - the agent's clock
        self._buf = bytearray()
        self._max = max_bytes
        self._enc = msgspec.msgpack.Encoder().encode_into
        self.count = 0  # entries in the buffer
        self.dropped = 0

    def __len__(self) -> int:
        return self.count

    def sim(self, now: float, port: str, reason: str, r: Result, o: Outcome = NOTHING) -> None:
        """Record a simulation of a packet from ``port`` (``reason``: the upcall's)."""
        if not self.enabled:
            return
        if len(self._buf) >= self._max:
            self.dropped += 1
            return
        if o is NOTHING:  # the trailing fields are left out: the decoder takes their defaults
            e: tuple[object, ...] = (now + self.wall_offset, "", _SIM, port, r.key, r.read, reason,
                                     r.trace.raw, r.verdict)  # fmt: skip
        else:
            e = (now + self.wall_offset, "", _SIM, port, r.key, r.read, reason, r.trace.raw,
                 r.verdict, o.flow, o.tags, (), o.hosts, "", o.trace)  # fmt: skip
        self._enc(e, self._buf, -1)
        self.count += 1

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
        if len(self._buf) >= self._max:
            self.dropped += 1
            return
        key = _fields(flow.key) if flow is not None else ()
        read = _mask_bits(flow) if flow is not None else 0
        cookie = flow.cookie if flow is not None else 0
        self._enc((now + self.wall_offset, "", kind, port, key, read, "", (), "", cookie, (), (),
                   (), detail, None), self._buf, -1)  # fmt: skip
        self.count += 1

    def take(self) -> tuple[int, bytes]:
        """Everything recorded since the last take: (entries, their encodings end to end)."""
        out = (self.count, bytes(self._buf))
        self._buf.clear()
        self.count = 0
        return out

    def take_entries(self) -> list[SimEntry]:
        """:meth:`take`, decoded (tests, tools)."""
        n, data = self.take()
        return [e for b in decode_frames(raw_frame(SimBatch, n, data), SimBatch) for e in b.entries]


def _fields(key: FlowKey) -> tuple[int, ...]:
    return tuple(getattr(key, n) for n in FIELD_NAMES)


def _mask_bits(flow: Flow) -> int:
    """The F_* bits of the fields the flow matches on (in_port at least)."""
    return sum(1 << i for i, m in enumerate(_fields(flow.mask)) if m) or 1


class SimLogFile:
    """``directory``/simlog.msgpack: the shipped frames, appended; rotated when a file passes
    ``max_bytes`` (simlog.msgpack.1 is the previous file, up to ``keep`` of them)."""

    def __init__(
        self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self.keep = keep
        self._f = self.path.open("ab")
        self._size = self._f.tell()

    def write(self, data: bytes) -> None:
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
    """Where drained rows go (the driver's side): encoded in frames of ``batch`` entries, each
    written to the log file, if any, then sent to the cluster. Frames not yet sent wait while
    the topology connection is down, the oldest going first past ``pending`` frames (counted
    in ``unshipped_dropped``)."""

    def __init__(self, file: SimLogFile | None, *, batch: int = 1000, pending: int = 64) -> None:
        self.file = file
        self.batch = batch
        self._unshipped: deque[bytes] = deque()
        self._max = pending
        self.shipped = 0  # frames
        self.unshipped_dropped = 0

    @property
    def pending(self) -> int:
        """Frames waiting to be shipped."""
        return len(self._unshipped)

    def drain(self, taken: tuple[int, bytes], send: Callable[[bytes], bool]) -> None:
        """Frame what :meth:`SimLog.take` gave, write, ship."""
        q = self._unshipped
        n, body = taken
        if n:
            data = raw_frame(SimBatch, n, body)
            if self.file is not None:
                self.file.write(data)
            if len(q) >= self._max:
                q.popleft()
                self.unshipped_dropped += 1
            q.append(data)
        while q:
            if not send(q[0]):
                return
            q.popleft()
            self.shipped += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read_entries(path: Path) -> Iterator[SimEntry]:
    """The entries of one log file, oldest first (tests, offline reading)."""
    for msg in decode_frames(path.read_bytes(), SimBatch):
        yield from msg.entries


__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PENDING_BYTES",
    "FILE_NAME",
    "NOTHING",
    "Outcome",
    "SimLog",
    "SimLogFile",
    "SimLogOutlet",
    "read_entries",
]
