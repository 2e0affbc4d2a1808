"""The four netperf-style tests of ``netloom bench perf``, run inside the setups' namespaces.

* ``tcp_stream``: iperf3 client -> server, Mbit/s received (``end.sum_received`` of ``-J``).
* ``tcp_maerts``: the same reversed (``iperf3 -R``: the server sends), Mbit/s.
* ``tcp_rr``: request/response transactions per second on one TCP connection, sockperf
  ping-pong (``--tcp``; Nagle off, its default). sockperf's smallest message is 14 bytes (its
  header), not netperf's 1 byte: both are one small segment each way, so the rate measures the
  same thing (per-packet latency); the rate is ReceivedMessages / RunTime of its "Valid
  Duration" (sockperf drops its own warm-up).
* ``tcp_crr``: connect / 1-byte request / 1-byte response / close per second with
  :mod:`netloom.bench.tools.crr` (netperf's TCP_CRR is not in Debian main).

All commands run through ``nsenter --net=/run/netns/NAME`` (never ``ip netns exec``, which
remounts /sys and hides bpffs pins). Servers listen on all addresses so a
floating IP (DNAT before the server) works the same as a private one, and stay up for the whole
run; every one is started in its own session and stopped by its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import psutil

from netloom.bench.perf.setups import Endpoints
from netloom.bench.procs import IPERF_PORT, stop_group
from netloom.errors import DatapathError, LabError
from netloom.lab import nsexec, probes

TESTS = ("tcp_stream", "tcp_maerts", "tcp_rr", "tcp_crr")
LABELS = {
    "tcp_stream": "TCP_STREAM Mbit/s",
    "tcp_maerts": "TCP_MAERTS Mbit/s",
    "tcp_rr": "TCP_RR trans/s",
    "tcp_crr": "TCP_CRR trans/s",
}
SOCKPERF_PORT = 11111
CRR_PORT = 5301
TEST_PORTS = (IPERF_PORT, SOCKPERF_PORT, CRR_PORT)  # what the servers listen on
SOCKPERF_MSG = 14  # sockperf's minimum message size (its header)
READY_TIMEOUT_S = 10.0
CLIENT_SYSCTLS = {
    # the CRR client closes first, so its side holds TIME_WAIT (RFC 9293 §3.6); let a new
    # connection reuse a TIME_WAIT 4-tuple older than 1 s (safe with timestamps, RFC 6191)
    "net.ipv4.tcp_tw_reuse": "1",
}


@dataclass(frozen=True)
class CrrParams:
    """Load of the CRR tool: ``procs`` processes per side, ``conc`` connections each."""

    procs: int = 2
    conc: int = 16


@dataclass(frozen=True)
class Pin:
    """CPUs the client and the server side run on (``taskset``); None: wherever the scheduler
    likes.

    Pinned by default, clients on the first CPU and servers on the last, "two machines" on
    one: unpinned, the scheduler sometimes puts a ping-pong's two ends on one CPU (a wake-up
    is then a cheap local switch) and sometimes on two (an inter-processor interrupt), and
    TCP_RR on a veth swings between ~17k and ~65k trans/s from run to run on this machine
    kind. Pinned, every setup gets the same placement, and the cross-CPU one is what two real
    hosts see (every wake-up crosses a CPU), which is the whitepaper's regime (~16.6k)."""

    client_cpu: int | None = None
    server_cpu: int | None = None

    @classmethod
    def two_machines(cls) -> Pin:
        """First and last CPU when there are at least two; else no pinning."""
        cpus = sorted(os.sched_getaffinity(0))
        return cls(cpus[0], cpus[-1]) if len(cpus) >= 2 else cls()

    @staticmethod
    def wrap(cpu: int | None, argv: Sequence[str]) -> list[str]:
        return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)

    def client(self, argv: Sequence[str]) -> list[str]:
        return self.wrap(self.client_cpu, argv)

    def server(self, argv: Sequence[str]) -> list[str]:
        return self.wrap(self.server_cpu, argv)


@dataclass
class Measurement:
    """One figure (``value``, the unit of :data:`LABELS`) and what else the tool reported."""

    value: float
    detail: dict[str, Any] = field(default_factory=dict)


def _crr_argv(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "netloom.bench.tools.crr", role, *args]


class Servers:
    """iperf3, sockperf and CRR servers in one setup's server namespace."""

    def __init__(self, ep: Endpoints, crr: CrrParams, pin: Pin | None = None) -> None:
        self.ep = ep
        self.crr = crr
        self.pin = pin or Pin()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.errs: list[IO[bytes]] = []

    def start(self) -> None:
        # The CRR tool opens and closes tens of thousands of connections a rep; left in
        # TIME_WAIT they exhaust the client's local ports and the next iperf3 connect fails
        # ("Cannot assign requested address", seen in full runs). Reusing TIME_WAIT sockets
        # for outgoing connections (safe with timestamps, RFC 7323) is set alike on every
        # setup's client, so no setup gains from it.
        nsexec.run(self.ep.client_netns, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], timeout=10.0)
        # The CRR tool binds its own source ports (10000-49999, tools/crr.py): ephemeral
        # ports for iperf3 and sockperf come from a range it never touches.
        nsexec.run(
            self.ep.client_netns,
            ["sysctl", "-qw", "net.ipv4.ip_local_port_range=50000 65535"],
            timeout=10.0,
        )
        try:
            self._spawn("iperf3", ["iperf3", "-s", "-p", str(IPERF_PORT)], IPERF_PORT)
            self._spawn(
                "sockperf",
                ["sockperf", "server", "--tcp", "-i", "0.0.0.0", "-p", str(SOCKPERF_PORT)],
                SOCKPERF_PORT,
            )
            self._spawn(
                "crr",
                _crr_argv("server", "--port", str(CRR_PORT), "--procs", str(self.crr.procs)),
                CRR_PORT,
            )
        except BaseException:
            self.stop()
            raise

    def _spawn(self, role: str, argv: list[str], port: int) -> None:
        # stderr to a file, not a pipe: nobody reads it during the run and a full pipe would
        # block the server
        err = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        self.errs.append(err)
        self.procs[role] = nsexec.popen(
            self.ep.server_netns, self.pin.server(argv), stdout=subprocess.DEVNULL, stderr=err
        )
        _wait_listening(self.ep.server_netns, port, self.procs[role], role, err)

    def crr_cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the CRR server processes so far."""
        proc = self.procs.get("crr")
        if proc is None:
            return 0.0, 0.0
        return _tree_cpu(proc.pid)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)
        self.procs.clear()
        for err in self.errs:
            err.close()
        self.errs.clear()


def _tree_cpu(pid: int) -> tuple[float, float]:
    user = system = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                user += t.user
                system += t.system
    except psutil.Error:
        pass
    return user, system


def _wait_listening(
    ns: str, port: int, proc: subprocess.Popen[bytes], role: str, err: IO[bytes]
) -> None:
    """Until the server listens (:func:`netloom.lab.probes.wait_listening`); if it exits
    first, the error carries its stderr."""
    try:
        probes.wait_listening(ns, port, proc, timeout=READY_TIMEOUT_S)
    except LabError:
        if proc.poll() is None:
            raise DatapathError(f"{role} server in {ns} is not listening on port {port}") from None
        err.seek(0)
        msg = err.read().decode(errors="replace").strip()
        raise DatapathError(f"{role} server in {ns} exited {proc.returncode}: {msg}") from None


def prepare_client(ns: str) -> None:
    """Per-namespace sysctls the CRR client needs (they change nothing outside ``ns``)."""
    nsexec.run(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in CLIENT_SYSCTLS.items())])


def _client(ns: str, argv: Sequence[str], duration: float) -> str:
    return nsexec.run(ns, argv, timeout=duration + 30.0).stdout


def iperf3(ep: Endpoints, duration: int, *, reverse: bool, pin: Pin) -> Measurement:
    argv = ["iperf3", "-c", ep.server_ip, "-p", str(IPERF_PORT), "-t", str(duration), "-J"]
    if reverse:
        argv.append("-R")
    doc = json.loads(_client(ep.client_netns, pin.client(argv), duration))
    if "error" in doc:
        raise DatapathError(f"iperf3 in {ep.client_netns}: {doc['error']}")
    end = doc["end"]
    return Measurement(
        end["sum_received"]["bits_per_second"] / 1e6,
        {
            "retransmits": end["sum_sent"].get("retransmits"),
            "sender_cpu_pct": end["cpu_utilization_percent"].get("host_total"),
        },
    )


_SOCKPERF_VALID = re.compile(
    r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)"
)
_SOCKPERF_AVG = re.compile(r"avg-latency=([\d.]+)")
# "---> percentile 50.000 =   25.733" and "---> <MIN> observation =   18.922" (microseconds)
_SOCKPERF_PCT = re.compile(r"percentile (50|99)\.000 =\s*([\d.]+)")
_SOCKPERF_MIN = re.compile(r"<MIN> observation =\s*([\d.]+)")


def sockperf_rr(ep: Endpoints, duration: int, pin: Pin) -> Measurement:
    out = _client(
        ep.client_netns,
        pin.client(
            [
                "sockperf",
                "ping-pong",
                "--tcp",
                "-i",
                ep.server_ip,
                "-p",
                str(SOCKPERF_PORT),
                "-t",
                str(duration),
                "-m",
                str(SOCKPERF_MSG),
            ]
        ),
        duration,
    )
    return parse_sockperf(out)


def parse_sockperf(out: str) -> Measurement:
    """Transactions per second from sockperf ping-pong's summary."""
    m = _SOCKPERF_VALID.search(out)
    if m is None or float(m.group(1)) <= 0:
        raise DatapathError(f"sockperf printed no valid-duration summary: {out[-300:]!r}")
    runtime, received = float(m.group(1)), int(m.group(3))
    avg = _SOCKPERF_AVG.search(out)
    pct = {p: float(v) for p, v in _SOCKPERF_PCT.findall(out)}
    low = _SOCKPERF_MIN.search(out)
    # The minimum is the path with a cheap wakeup; the median adds the typical cost of waking
    # the blocked peer on the other CPU (see docs/benchmarks.md on TCP_RR).
    return Measurement(
        received / runtime,
        {
            "messages": received,
            "runtime_s": runtime,
            "msg_bytes": SOCKPERF_MSG,
            "half_rtt_avg_us": float(avg.group(1)) if avg else None,
            "half_rtt_min_us": float(low.group(1)) if low else None,
            "half_rtt_p50_us": pct.get("50"),
            "half_rtt_p99_us": pct.get("99"),
        },
    )


def crr(ep: Endpoints, duration: int, params: CrrParams, servers: Servers) -> Measurement:
    s_user0, s_sys0 = servers.crr_cpu()
    out = _client(
        ep.client_netns,
        servers.pin.client(
            _crr_argv(
                "client",
                "--host",
                ep.server_ip,
                "--port",
                str(CRR_PORT),
                "--procs",
                str(params.procs),
                "--conc",
                str(params.conc),
                "--duration",
                str(duration),
            )
        ),
        duration,
    )
    s_user1, s_sys1 = servers.crr_cpu()
    res = json.loads(out.strip().splitlines()[-1])
    if res["transactions"] <= 0:
        raise DatapathError(f"CRR in {ep.client_netns}: no transaction completed: {res}")
    return Measurement(
        res["rate"],
        {
            "procs": params.procs,
            "conc": params.conc,
            "errors": res["errors"],
            "client_user_s": res["user_s"],
            "client_sys_s": res["sys_s"],
            "server_user_s": s_user1 - s_user0,
            "server_sys_s": s_sys1 - s_sys0,
            "seconds": res["seconds"],
        },
    )


def run_test(
    test: str, ep: Endpoints, duration: int, params: CrrParams, servers: Servers
) -> Measurement:
    if test == "tcp_stream":
        return iperf3(ep, duration, reverse=False, pin=servers.pin)
    if test == "tcp_maerts":
        return iperf3(ep, duration, reverse=True, pin=servers.pin)
    if test == "tcp_rr":
        return sockperf_rr(ep, duration, servers.pin)
    if test == "tcp_crr":
        return crr(ep, duration, params, servers)
    raise ValueError(test)


__all__ = [
    "LABELS",
    "TESTS",
    "TEST_PORTS",
    "CrrParams",
    "Measurement",
    "Pin",
    "Servers",
    "crr",
    "parse_sockperf",
    "prepare_client",
    "run_test",
]
