"""TCP_CRR load generator: connect, 1-byte request, 1-byte response, close; per second.

netperf's TCP_CRR is not packaged by Debian (non-free) and sockperf has no connection-per-
transaction mode, so this is a small tool of our own, written to stay out of the way of the
kernel it measures:

* plain level-triggered ``select.epoll`` (no asyncio: its per-event Python machinery costs
  several times the syscalls it wraps), one ``dict`` lookup per event;
* ``--procs`` processes on each side, each with ``--conc`` connections in flight, so a
  process waiting on the scheduler never leaves its CPU idle; the server side uses
  one ``SO_REUSEPORT`` listener per process so the kernel spreads connections without a shared
  accept queue (``SO_REUSEPORT``: Linux 3.9);
* the exchange is netperf's: the client closes first after reading the response, the server
  closes when it reads end-of-file, so every transaction is the full 3-way handshake, two
  1-byte segments and the 4-way close (RFC 9293 §3.5, §3.6). The client's TIME_WAIT sockets
  are reused by ``net.ipv4.tcp_tw_reuse=1`` in the client namespace (set by the harness); the
  tool's source ports (10000-49999) stay outside the namespace's ephemeral range, which the
  harness sets to 50000-65535, so other clients never run out of ports after a CRR run.

The client prints one JSON line: ``{"transactions", "errors", "seconds", "rate",
"user_s", "sys_s"}``; user/sys are the CPU times of the client processes, which the harness
reports so one can see how much of the machine the tool itself took.

Usage (inside a namespace)::

    python -m netloom.bench.tools.crr server --bind 10.0.0.2 --port 5301 --procs 2
    python -m netloom.bench.tools.crr client --host 10.0.0.2 --port 5301 --procs 2 \\
        --conc 16 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import NoReturn

BIND_TRIES = 64
# Client source ports, split between the processes. Keep them out of the namespace's
# ip_local_port_range (the harness sets 50000-65535 there): a port this tool bind()s keeps an
# explicitly bound bucket while its TIME_WAIT lasts (60 s), and connect()'s automatic port
# choice never takes such a port, so overlapping ranges leave iperf3 "Cannot assign
# requested address" after a CRR run.
PORT_FIRST, PORT_LAST = 10000, 49999
REQUEST = b"q"
RESPONSE = b"r"
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_BAD = select.EPOLLERR | select.EPOLLHUP


def _listener(bind: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((bind, port))
    s.listen(4096)
    s.setblocking(False)
    return s


def serve(listener: socket.socket) -> NoReturn:
    """Answer every request byte with one response byte; close on end-of-file. Forever."""
    ep = select.epoll()
    lfd = listener.fileno()
    ep.register(lfd, _IN)
    conns: dict[int, socket.socket] = {}
    while True:
        for fd, _ev in ep.poll():
            if fd == lfd:
                while True:
                    try:
                        c, _ = listener.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), _IN)
                continue
            c = conns[fd]
            try:
                data = c.recv(64)
            except OSError:
                data = b""
            if data:
                try:
                    c.send(RESPONSE)
                    continue
                except OSError:
                    pass
            ep.unregister(fd)
            del conns[fd]
            c.close()


class _Ports:
    """This process's slice of the client port range, handed out round-robin.

    Binding the source port ourselves (as netperf does) instead of letting ``connect()`` pick
    one matters here: the kernel's ephemeral-port search walks past every port that still has
    a TIME_WAIT socket, and with tens of thousands of them its cost grows through the run and
    the measured rate sinks with it. Cycling through a fixed slice reuses each port's
    TIME_WAIT (``tcp_tw_reuse``, RFC 6191 timestamps) in constant time."""

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count, self.i = first, count, 0

    def next(self) -> int:
        self.i = (self.i + 1) % self.count
        return self.first + self.i


def _open(
    ep: select.epoll, conns: dict[int, socket.socket], addr: tuple[str, int], ports: _Ports
) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setblocking(False)
    for attempt in range(BIND_TRIES):  # a port held by someone else's socket: take the next
        try:
            s.bind(("0.0.0.0", ports.next()))
            break
        except OSError:
            if attempt == BIND_TRIES - 1:
                s.close()
                raise
    rc = s.connect_ex(addr)
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(rc, os.strerror(rc))
    fd = s.fileno()
    conns[fd] = s
    ep.register(fd, _OUT)


def _refill(
    ep: select.epoll,
    conns: dict[int, socket.socket],
    addr: tuple[str, int],
    ports: _Ports,
    conc: int,
) -> int:
    """Open connections until ``conc`` are in flight; the number of failed attempts (at most
    one round, so a persistent failure such as EADDRNOTAVAIL cannot spin the loop)."""
    failed = 0
    for _ in range(conc - len(conns)):
        try:
            _open(ep, conns, addr, ports)
        except OSError:
            failed += 1
    return failed


def client_loop(
    addr: tuple[str, int], conc: int, duration: float, ports: _Ports
) -> tuple[int, int]:
    """Keep ``conc`` transactions in flight for ``duration`` s; (completed, errors)."""
    ep = select.epoll()
    conns: dict[int, socket.socket] = {}
    done = 0
    deadline = time.monotonic() + duration
    errors = _refill(ep, conns, addr, ports, conc)
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        # with nothing in flight (every open failed) wait a little before the next round
        for fd, ev in ep.poll(min(deadline - now, 0.01) if not conns else deadline - now):
            s = conns[fd]
            if ev & _BAD and not ev & _IN:  # refused / reset during connect
                errors += 1
            elif ev & _IN:  # the response (or an error surfacing as a short read)
                try:
                    if s.recv(1) == RESPONSE:
                        done += 1
                    else:
                        errors += 1
                except OSError:
                    errors += 1
            else:  # connected: send the request, wait for the response
                try:
                    s.send(REQUEST)
                    ep.modify(fd, _IN)
                    continue
                except OSError:
                    errors += 1
            ep.unregister(fd)
            del conns[fd]
            s.close()
        if len(conns) < conc:
            errors += _refill(ep, conns, addr, ports, conc)
    for s in conns.values():
        s.close()
    return done, errors


def run_client(host: str, port: int, procs: int, conc: int, duration: float) -> dict[str, float]:
    addr = (host, port)
    children: list[tuple[int, int]] = []
    start = time.monotonic()
    span = (PORT_LAST - PORT_FIRST + 1) // procs
    for k in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            code = 0
            try:
                done, errors = client_loop(
                    addr, conc, duration, _Ports(PORT_FIRST + k * span, span)
                )
                os.write(w, f"{done} {errors}".encode())
            except BaseException:  # report, never return into the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    total = errs = 0
    failed = 0
    for pid, r in children:
        with os.fdopen(r, "rb") as f:
            out = f.read().split()
        _, status = os.waitpid(pid, 0)
        if status != 0 or len(out) != 2:
            failed += 1
            continue
        total += int(out[0])
        errs += int(out[1])
    seconds = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "transactions": total,
        "errors": errs,
        "failed_procs": failed,
        "seconds": seconds,
        "rate": total / seconds if seconds > 0 else 0.0,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
    }


def run_server(bind: str, port: int, procs: int) -> NoReturn:
    """Fork ``procs`` servers (each its own SO_REUSEPORT listener), print ``ready``, wait.

    The parent stays as the process the harness stops: SIGTERM to it is passed on to the
    children, so stopping one pid stops them all."""
    listeners = [_listener(bind, port) for _ in range(procs)]
    pids: list[int] = []
    for ls in listeners:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(ls)
        pids.append(pid)
    for ls in listeners:
        ls.close()

    def stop(_sig: int, _frame: object) -> None:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
        for p in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    while True:
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crr", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = p.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--bind", default="0.0.0.0")
    srv.add_argument("--port", type=int, default=5301)
    srv.add_argument("--procs", type=int, default=2)
    cli = sub.add_parser("client")
    cli.add_argument("--host", required=True)
    cli.add_argument("--port", type=int, default=5301)
    cli.add_argument("--procs", type=int, default=2)
    cli.add_argument("--conc", type=int, default=16)
    cli.add_argument("--duration", type=float, default=5.0)
    a = p.parse_args(argv)
    if a.role == "server":
        run_server(a.bind, a.port, a.procs)
    res = run_client(a.host, a.port, a.procs, a.conc, a.duration)
    print(json.dumps(res), flush=True)
    return 0 if res["failed_procs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
