"""Probes run from inside lab namespaces: ICMP echo, TCP listeners and handshakes, waiting for
a server to listen, and reading an agent's Prometheus metrics. Shared by the demo and the
benchmarks."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping

from netloom.errors import InvalidInput, LabError
from netloom.lab import nsexec
from netloom.netns import entered
from netloom.packet.checksum import checksum


@contextlib.contextmanager
def listening(ns: str, port: int) -> Iterator[socket.socket]:
    """A TCP listener inside ``ns`` (the VM's kernel completes handshakes by itself)."""
    with entered(ns):
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
    with entered(ns):
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
        if nsexec.run(ns, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise LabError(f"nothing listened on port {port} in {ns} within {timeout:.0f} s")


def fetch_metrics(ns: str, port: int) -> str:
    """The Prometheus text an agent serves on 127.0.0.1:``port`` inside ``ns`` (the socket is
    opened there: the agent's metrics are not reachable from the root namespace)."""
    with entered(ns):
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


def ping(
    ns: str | None,
    dst: str,
    *,
    count: int = 1,
    timeout: float = 1.0,
    df_size: int | None = None,
) -> list[float]:
    """ICMP echo (RFC 792) from inside ``ns`` to ``dst``: the round-trip times in seconds of
    the replies that came back within ``timeout`` each (an empty list: unreachable).

    Done in-process with a raw socket opened inside the namespace, because the lab machines
    have no ``ping`` binary (iputils is not installed) and a socket created after setns stays
    in that namespace. ``df_size``: probes of that many payload bytes with DF set, to probe the
    path MTU (a probe larger than the link MTU gets no reply); else 56 bytes, fragmentable."""
    try:
        target = str(ipaddress.IPv4Address(dst))
    except ValueError as exc:
        raise InvalidInput(f"bad address {dst!r}: {exc}", field="address") from None
    with entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    rtts: list[float] = []
    ident = os.getpid() & 0xFFFF
    try:
        # IP_MTU_DISCOVER: PROBE sets DF without consulting the PMTU cache; DONT fragments
        sock.setsockopt(socket.IPPROTO_IP, 10, 0 if df_size is None else 3)
        for seq in range(1, count + 1):
            payload = os.urandom(56 if df_size is None else df_size)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq)
            start = time.monotonic()
            try:
                sock.sendto(packet + payload, (target, 0))
            except OSError as exc:
                if exc.errno in (errno.EMSGSIZE, errno.ENETUNREACH, errno.EHOSTUNREACH):
                    continue
                raise
            rtt = _await_echo(sock, target, packet[4:] + payload, start + timeout)
            if rtt is not None:
                rtts.append(rtt - start)
    finally:
        sock.close()
    return rtts


def _await_echo(sock: socket.socket, src: str, echo: bytes, deadline: float) -> float | None:
    """Wait for the echo reply from ``src`` that carries ``echo`` (identifier, sequence number
    and payload of the request); its arrival time."""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        data, (addr, _) = sock.recvfrom(65535)
        ihl = (data[0] & 0x0F) * 4
        icmp = data[ihl:]
        if addr != src or len(icmp) < 8:
            continue
        if icmp[0] == 0 and icmp[4:] == echo:  # type 0: echo reply
            return time.monotonic()
    return None


# -- the outside world (a lab with gateways) ------------------------------------------------------


def seen_source(
    client_ns: str, server_ns: str, dst: str, port: int, timeout: float = 2.0
) -> tuple[str, str | None]:
    """A TCP handshake from ``client_ns`` to ``dst``:``port`` answered by a listener in
    ``server_ns``: the handshake's outcome (as :func:`tcp_connect`) and the source address the
    server saw (after any NAT on the way), or None when nothing arrived."""
    with listening(server_ns, port) as server:
        outcome = tcp_connect(client_ns, dst, port, timeout)
        server.settimeout(0.5 if outcome == "connected" else 0.0)
        try:
            conn, (peer, _) = server.accept()
        except (TimeoutError, BlockingIOError):
            return outcome, None
        conn.close()
        return outcome, str(peer)


def route_nexthops(ns: str, prefix: str) -> list[str]:
    """The gateways of the route to ``prefix`` in ``ns``'s main table (one per path of a
    multipath route; [] when there is no such route)."""
    out = nsexec.run(ns, ["ip", "-j", "route", "show", "exact", prefix]).stdout
    hops: list[str] = []
    for r in json.loads(out or "[]"):
        hops += [h["gateway"] for h in r.get("nexthops", []) if "gateway" in h]
        if "gateway" in r:
            hops.append(r["gateway"])
    return hops


def route_choices(ns: str, dst: str, src: str, iif: str, flows: int) -> Counter[str]:
    """How ``ns``'s kernel spreads ``flows`` TCP flows from ``src`` (arriving on ``iif``) to
    ``dst``, source ports 40000 on: its route lookup (``ip route get``, the same multipath
    hash as forwarding) per flow to port 80, counted by gateway."""
    chosen: Counter[str] = Counter()
    for sport in range(40000, 40000 + flows):
        argv = ["ip", "-j", "route", "get", dst, "from", src, "iif", iif]
        argv += ["ipproto", "tcp", "sport", str(sport), "dport", "80"]
        got = json.loads(nsexec.run(ns, argv).stdout or "[{}]")
        chosen[str(got[0].get("gateway", "-"))] += 1
    return chosen


def bird_protocols(socket_path: str) -> dict[str, tuple[str, str, str]]:
    """``birdc show protocols`` of the bird behind ``socket_path``, parsed
    (:func:`parse_bird_protocols`)."""
    done = nsexec.run(None, ["birdc", "-s", socket_path, "show", "protocols"], check=False)
    if done.returncode != 0:
        raise LabError(f"birdc -s {socket_path}: {(done.stderr or done.stdout).strip()}")
    return parse_bird_protocols(done.stdout)


def parse_bird_protocols(text: str) -> dict[str, tuple[str, str, str]]:
    """name -> (protocol, state, info) of bird's protocol table, e.g. ``gw1 -> ("BGP", "up",
    "Established")`` (the columns: Name Proto Table State Since Info)."""
    found: dict[str, tuple[str, str, str]] = {}
    for line in text.splitlines():
        cols = line.split(None, 5)
        if len(cols) >= 5 and cols[0] not in ("BIRD", "Name"):
            info = " ".join(cols[5].split()) if len(cols) > 5 else ""
            found[cols[0]] = (cols[1], cols[3], info)
    return found


__all__ = [
    "bird_protocols",
    "fetch_metrics",
    "listening",
    "metric_totals",
    "parse_bird_protocols",
    "ping",
    "route_choices",
    "route_nexthops",
    "seen_source",
    "tcp_connect",
    "wait_listening",
]
