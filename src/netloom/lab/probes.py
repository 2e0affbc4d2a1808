"""Probes run from inside lab namespaces: TCP listeners and handshakes, waiting for a server
to listen, and reading an agent's Prometheus metrics. Shared by the demo and the benchmarks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping

from netloom.errors import LabError
from netloom.lab import netns


@contextlib.contextmanager
def listening(ns: str, port: int) -> Iterator[socket.socket]:
    """A TCP listener inside ``ns`` (the VM's kernel completes handshakes by itself)."""
    with netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(8)
        yield s
    finally:
        s.close()


def tcp_connect(ns: str, ip: str, port: int, timeout: float) -> str:
    """A TCP handshake from inside ``ns``: ``connected``, ``timeout`` (SYN dropped),
    ``refused`` (RST: reached, nothing listening) or the error."""
    with netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return "connected"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
    finally:
        s.close()


def wait_listening(ns: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Until something listens on ``port`` in ``ns``, read from the kernel with no probe
    connection (``iperf3 -s -1`` serves exactly one client). Raises LabError if ``proc`` exits
    or nothing listens in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"server for port {port} exited {proc.returncode} in {ns}")
        if netns.run(ns, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise LabError(f"nothing listened on port {port} in {ns} within {timeout:.0f} s")


def fetch_metrics(ns: str, port: int) -> str:
    """The Prometheus text an agent serves on 127.0.0.1:``port`` inside ``ns`` (the socket is
    opened there: the agent's metrics are not reachable from the root namespace)."""
    with netns.entered(ns):
        s = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    with s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if status.split()[1:2] != ["200"]:
        raise LabError(f"metrics endpoint in {ns} answered {status!r}")
    return body.decode()


def metric_totals(text: str, families: Mapping[str, str]) -> dict[str, float]:
    """``{key: sum over labels of family}`` for each ``key: family`` of ``families``."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = dict.fromkeys(families, 0.0)
    by_family = {v: k for k, v in families.items()}
    for fam in text_string_to_metric_families(text):
        key = by_family.get(fam.name)
        if key is None:
            continue
        for sample in fam.samples:
            if sample.name in (fam.name, f"{fam.name}_total"):
                totals[key] += sample.value
    return totals


__all__ = ["fetch_metrics", "listening", "metric_totals", "tcp_connect", "wait_listening"]
