"""Wire protocol between the topology service (cluster side) and its agents.

Why a protocol of our own: agents never watch the NSDB (interest-based fan-out, after
MidoNet's topology API and Calico's Typha). One cluster process holds ONE store watch and
streams to each agent only what that agent asked for, so NSDB load does not grow with the
number of agents and agent memory does not grow with the size of the cloud.

Transport: plain TCP. Each frame is a 4-byte big-endian length followed by a msgpack body
(msgspec tagged structs, encoded as arrays to keep them small). Frames larger than
:data:`MAX_FRAME` end the connection.

Conversation (client = agent, server = topology service)::

    C: Hello(host, since, objects, filters, have)     first frame, also on every reconnect
    S: Welcome(rev, heartbeat_s, mode)                mode: "fresh" | "history" | "diff"
    S: Batch(rev, changes)...                          resume deltas (history / diff modes)
    C: Sub(req, kind, id | field+value)               subscribe: one object, or kind-wide filter
    S: Snap(req, rev, items)                           the objects matching now, at revision rev
    S: Batch(rev, changes)                             then, per store revision, the changes of
                                                       objects in this agent's view, in order
    C: Unsub(kind, id | field+value)
    C: Ping()  every heartbeat_s       S: Pong(rev)   also says "you have all changes <= rev"
    S: Error(req, code, message)                       bad request (code from netloom.errors)

Reports (agent -> cluster; the only writes an agent makes, each about its own host)::

    C: Routes(port, routes)        the full set learned on one of this host's uplinks, replacing
                                   the last one ([(dst, next_hop, peer_id)]); sent again on
                                   every reconnect (idempotent)
    C: Status(peer, port, state, since, routes, bfd_up)   a BGP session's state
    C: Lease(req, device, ip)      a SNAT port block of (router, NAT address) for this host
    S: Leased(req, device, ip, start, end)                 the block, ports start..end
    S: Error(req, ...)             a refused report (req 0) or lease
    C: SimBatch(entries)           simulation-log entries (:mod:`netloom.model.simlog`),
                                   appended to the cluster's log; never answered

An object is *in the agent's view* while it matches one of the agent's subscriptions (an
object subscription by id, or a filter ``data[field] == value``; for a list-valued field the
filter means membership, ``value in data[field]``). A change is sent to an agent
when the object is in its view after the change (the new data), or was in its view before and
no longer is: then the agent gets the object with ``data = None`` ("deleted or no longer of
interest": e.g. a port re-bound away from this host). Changes carry the store revision; every
revision an agent sees is complete (one Batch per revision), so a revision the agent has is a
safe resume point.

Resume: ``Hello.since`` is the last revision the agent has applied and ``have`` lists what it
holds (kind, id, version). If the server's bounded per-revision history still covers
``since``, it replays just the matching changes after it ("history"); otherwise (history too
short, or the server restarted) it compares ``have`` with its current view and sends only the
objects whose version differs plus removals ("diff") -- never a blind full resend.

Liveness: ``Hello`` marks the host alive; a host whose last Hello/Ping is older than the
server's host timeout is marked down. ``heartbeat_s`` in Welcome is timeout/3.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import msgspec

from netloom.model.simlog import SimEntry

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")

Scalar = str | int | bool | None
# (kind, id, version, data); data None: deleted or out of the agent's view
Obj = tuple[str, str, int, dict[str, Any] | None]
Key = tuple[str, str]
FilterKey = tuple[str, str, Scalar]


class Hello(msgspec.Struct, tag="hello", array_like=True):
    host: str
    since: int | None = None
    objects: list[Key] = []
    filters: list[FilterKey] = []
    have: list[tuple[str, str, int]] = []


class Sub(msgspec.Struct, tag="sub", array_like=True):
    req: int
    kind: str
    id: str | None = None
    field: str | None = None
    value: Scalar = None


class Unsub(msgspec.Struct, tag="unsub", array_like=True):
    kind: str
    id: str | None = None
    field: str | None = None
    value: Scalar = None


class Ping(msgspec.Struct, tag="ping", array_like=True):
    pass


class Routes(msgspec.Struct, tag="routes", array_like=True):
    port: str
    routes: list[tuple[str, str, str]]  # (dst, next_hop, peer_id)


class Status(msgspec.Struct, tag="status", array_like=True):
    peer: str
    port: str
    state: str
    since: float
    routes: int
    bfd_up: bool | None = None


class Arp(msgspec.Struct, tag="arp", array_like=True):
    """An ARP entry learned on one of the host's uplinks (:mod:`netloom.model.neighbors`)."""

    router: str
    ip: str
    mac: str
    port: str
    expires: float  # wall clock


class Wired(msgspec.Struct, tag="wired", array_like=True):
    """A port bound to the host: its interface plugged into the datapath (``up``) or not."""

    port: str
    up: bool


class Lease(msgspec.Struct, tag="lease", array_like=True):
    req: int
    device: str
    ip: str


class SimBatch(msgspec.Struct, tag="simlog", array_like=True):
    """Entries of the host's simulation log, oldest first (wall-clock times)."""

    entries: list[SimEntry]


class Welcome(msgspec.Struct, tag="welcome", array_like=True):
    rev: int
    heartbeat_s: float
    mode: Literal["fresh", "history", "diff"]


class Snap(msgspec.Struct, tag="snap", array_like=True):
    req: int
    rev: int
    items: list[Obj]


class Batch(msgspec.Struct, tag="batch", array_like=True):
    rev: int
    changes: list[Obj]


class Pong(msgspec.Struct, tag="pong", array_like=True):
    rev: int


class Leased(msgspec.Struct, tag="leased", array_like=True):
    req: int
    device: str
    ip: str
    start: int
    end: int


class Error(msgspec.Struct, tag="error", array_like=True):
    req: int
    code: str
    message: str
    field: str | None = None


ClientMsg = Hello | Sub | Unsub | Ping | Routes | Status | Arp | Wired | Lease | SimBatch
ServerMsg = Welcome | Snap | Batch | Pong | Leased | Error

_encoder = msgspec.msgpack.Encoder()


def frame(msg: msgspec.Struct) -> bytes:
    """Encode one message as a length-prefixed frame (encode once, write to many)."""
    body = _encoder.encode(msg)
    return _LEN.pack(len(body)) + body


def raw_frame(cls: type[msgspec.Struct], n: int, items: bytes) -> bytes:
    """The frame of a tagged array-like message whose one field is a list of ``n`` values
    already encoded end to end in ``items`` (the simulation log's entries), not re-encoded."""
    # msgpack: a fixarray of 2, the tag, then an array 32 header and the items
    head = b"\x92" + _encoder.encode(cls.__struct_config__.tag) + b"\xdd" + n.to_bytes(4, "big")
    return _LEN.pack(len(head) + len(items)) + head + items


def decode_frames(data: bytes, cls: type[T]) -> Iterator[T]:
    """The messages of concatenated frames (a file of them); a torn last frame is ignored."""
    dec = msgspec.msgpack.Decoder(cls)
    pos = 0
    while len(data) - pos >= 4:
        (size,) = _LEN.unpack_from(data, pos)
        if len(data) - pos - 4 < size:
            return
        yield dec.decode(data[pos + 4 : pos + 4 + size])
        pos += 4 + size


class FrameProtocol(asyncio.Protocol):
    """Splits a TCP byte stream into decoded messages.

    An asyncio Protocol rather than streams: a thousand connections per process (the fan-out
    benchmark) should not each cost a reader task and a StreamReader copy per frame.
    """

    def __init__(
        self,
        decoder: msgspec.msgpack.Decoder[Any],
        on_message: Callable[[Any], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self._decoder = decoder
        self._on_message = on_message
        self._on_lost = on_lost
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed_here = False  # this side closed it (not the peer's EOF or reset)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > MAX_FRAME:
                self._fail(f"frame of {size} bytes exceeds {MAX_FRAME}")
                return
            if end - pos - 4 < size:
                break
            body = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            try:
                msg = self._decoder.decode(body)
            except msgspec.DecodeError as exc:
                self._fail(f"undecodable frame: {exc}")
                return
            self._on_message(msg)
            if self.transport is None or self.transport.is_closing():
                return
        if pos:
            del buf[:pos]

    def _fail(self, why: str) -> None:
        log.warning("topology connection: %s; closing", why)
        self.drop()

    def drop(self, *, abort: bool = True) -> None:
        """Close from this side: at once (``abort``) or once what is buffered is sent."""
        self.closed_here = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost(exc)


def client_decoder() -> msgspec.msgpack.Decoder[ServerMsg]:
    """Decoder for frames a client receives."""
    return msgspec.msgpack.Decoder(ServerMsg)


def server_decoder() -> msgspec.msgpack.Decoder[ClientMsg]:
    """Decoder for frames the server receives."""
    return msgspec.msgpack.Decoder(ClientMsg)


def value_key(value: Any) -> tuple[bool, Any]:
    """A hashable key for a filter value that keeps ``True`` apart from ``1`` (Python says
    they are equal; JSON documents do not). Raises TypeError for unhashable values."""
    hash(value)
    return (isinstance(value, bool), value)


def _same(have: Any, value: Scalar) -> bool:
    return bool(have == value) and isinstance(have, bool) == isinstance(value, bool)


def matches(data: dict[str, Any] | None, field: str, value: Scalar) -> bool:
    """True when ``data`` satisfies the kind-wide filter on ``field``: equality for a scalar
    field, membership for a list field (``port_group_ids`` contains ``value``: the ports of a
    port group)."""
    if data is None or field not in data:
        return False
    have = data[field]
    if isinstance(have, list):
        return any(_same(h, value) for h in have)
    return _same(have, value)


def value_keys(data: dict[str, Any], field: str) -> list[tuple[bool, Any]]:
    """The filter-index keys ``data[field]`` is found under: one for a scalar, one per element
    of a list (a list-valued field is indexed by membership). Unhashable values and a missing
    field give none: no scalar filter value can match them."""
    if field not in data:
        return []
    have = data[field]
    out: list[tuple[bool, Any]] = []
    for v in have if isinstance(have, list) else (have,):
        try:
            out.append(value_key(v))
        except TypeError:
            continue
    return out


__all__ = [
    "MAX_FRAME",
    "Arp",
    "Batch",
    "ClientMsg",
    "Error",
    "FilterKey",
    "FrameProtocol",
    "Hello",
    "Key",
    "Lease",
    "Leased",
    "Obj",
    "Ping",
    "Pong",
    "Routes",
    "Scalar",
    "ServerMsg",
    "SimBatch",
    "Snap",
    "Status",
    "Sub",
    "Unsub",
    "Welcome",
    "Wired",
    "client_decoder",
    "decode_frames",
    "frame",
    "matches",
    "raw_frame",
    "server_decoder",
    "value_key",
    "value_keys",
]
