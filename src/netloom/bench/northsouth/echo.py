"""The failover test's traffic: long-lived echo streams and a connection loop, in threads of
this process with their sockets opened inside the lab's namespaces (a socket stays in the
namespace it was created in).

* :class:`EchoServer`: listeners in the target VMs; every accepted connection's bytes are sent
  back.
* :class:`Streams`: client connections from the external host; every ``TICK_S`` each sends a
  small message, and the arrival time of each echo is recorded.
* :class:`ConnectLoop`: TCP handshakes one after the other (kernel-chosen source ports, so they
  hash over every gateway), each with its start, end and outcome.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from netloom.errors import DatapathError
from netloom.lab import probes
from netloom.netns import entered

MESSAGE = b"netloom!"
TICK_S = 0.01
CONNECT_TIMEOUT_S = 5.0


class EchoServer:
    """Echo listeners on ``port`` in each namespace of ``netns``, served by one thread."""

    def __init__(self, netns: Sequence[str], port: int) -> None:
        self.sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        for ns in netns:
            with entered(ns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(1024)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, "listen")
        self.thread = threading.Thread(target=self._serve, name="echo-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if key.data == "listen":
                    with contextlib.suppress(OSError):
                        conn, _ = s.accept()
                        conn.setblocking(False)
                        self.sel.register(conn, selectors.EVENT_READ, "conn")
                    continue
                try:
                    data = s.recv(65536)
                    if data:
                        s.sendall(data)
                        continue
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                self.sel.unregister(s)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5.0)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()


@dataclass
class Stream:
    """One client connection: its source port, which gateway the upstream sends it by (0:
    not known), and its echoes."""

    sport: int
    sock: socket.socket
    gateway: int = 0
    arrivals: list[float] = field(default_factory=list)
    closed_at: float | None = None


class Streams:
    """Echo streams from ``netns`` (see the module docstring), driven by one thread."""

    def __init__(self, netns: str, dst: str, port: int, count: int) -> None:
        self.streams: list[Stream] = []
        for _ in range(count):
            with entered(netns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(CONNECT_TIMEOUT_S)
            try:
                s.connect((dst, port))
            except OSError as exc:
                s.close()
                for st in self.streams:
                    st.sock.close()
                raise DatapathError(f"echo stream to {dst}:{port}: {exc}") from None
            s.setblocking(False)
            self.streams.append(Stream(s.getsockname()[1], s))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="echo-streams", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for st in self.streams:
            sel.register(st.sock, selectors.EVENT_READ, st)
        next_tick = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                for st in self.streams:
                    if st.closed_at is None:
                        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                            st.sock.send(MESSAGE)
                next_tick = now + TICK_S
            for key, _ in sel.select(max(0.0, next_tick - time.monotonic())):
                st = key.data
                try:
                    got = st.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    got = b""
                if got:
                    st.arrivals.append(time.monotonic())
                else:
                    st.closed_at = time.monotonic()
                    sel.unregister(st.sock)
        sel.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5.0)
        for st in self.streams:
            st.sock.close()


@dataclass(frozen=True)
class Attempt:
    start: float
    end: float
    outcome: str


class ConnectLoop:
    """Handshakes from ``netns`` to ``dst``:``port`` back to back until closed."""

    def __init__(self, netns: str, dst: str, port: int, timeout: float) -> None:
        self.attempts: list[Attempt] = []
        self._args = (netns, dst, port, timeout)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="connect-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        netns, dst, port, timeout = self._args
        while not self._stop.is_set():
            start = time.monotonic()
            outcome = probes.tcp_connect(netns, dst, port, timeout)
            self.attempts.append(Attempt(start, time.monotonic(), outcome))
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5.0)


__all__ = ["Attempt", "ConnectLoop", "EchoServer", "Stream", "Streams"]
