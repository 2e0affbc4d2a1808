"""Fixtures of the topology fan-out tests: an in-memory store, a running server, helpers.

No pytest-asyncio in the project: each test writes one ``async def`` scenario and runs it with
``asyncio.run`` (through :func:`run`), which also guarantees a fresh loop per test.
"""

from __future__ import annotations

import asyncio
import builtins
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from netloom.store.base import ChangeCallback, Put
from netloom.store.memory import MemoryStore
from netloom.topology.protocol import ClientMsg, ServerMsg, client_decoder, frame
from netloom.topology.server import TopologyServer


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


class CountingStore(MemoryStore):
    """A MemoryStore that counts the watches opened on it (the fan-out must open one)."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    def watch(self, since: int, callback: ChangeCallback) -> Any:
        self.watches += 1
        return super().watch(since, callback)


def put(store: MemoryStore, kind: str, id: str, **data: Any) -> int:
    return store.commit([Put(kind, id, {"id": id, **data})])


@asynccontextmanager
async def serving(store: MemoryStore, **kw: Any) -> AsyncIterator[tuple[TopologyServer, int]]:
    server = TopologyServer(store, **kw)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.stop()


class RawAgent:
    """A hand-driven protocol peer: sends what the test says, reads only when asked.

    Used where the real client would hide the behaviour under test (no heartbeats, never
    reading)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = client_decoder()

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> RawAgent:
        import socket

        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, msg: ClientMsg) -> None:
        self.writer.write(frame(msg))

    async def recv(self) -> ServerMsg:
        (size,) = struct.unpack(">I", await self.reader.readexactly(4))
        return self._decoder.decode(await self.reader.readexactly(size))

    async def recv_until(self, pred: Callable[[ServerMsg], bool]) -> builtins.list[ServerMsg]:
        out = []
        while True:
            msg = await self.recv()
            out.append(msg)
            if pred(msg):
                return out

    def close(self) -> None:
        self.writer.transport.abort()


__all__ = ["CountingStore", "RawAgent", "put", "run", "serving"]
