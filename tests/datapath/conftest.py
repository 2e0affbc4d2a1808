"""Fixtures of the datapath tests: throw-away namespaces, links, pins and processes.

Everything is named ``nlt-<random>`` and torn down in a finalizer, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netloom.datapath.pins import PIN_ROOT


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is truthy; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("nsenter", f"--net=/run/netns/{ns}", *cmd, check=check)


class Lab:
    """Namespaces/processes/pins created by one test, all removed by ``cleanup``."""

    def __init__(self) -> None:
        self.prefix = f"nlt-{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hosts: list[str] = []

    def ns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        in_ns(name, "ip", "link", "set", "lo", "up")
        return name

    def host_name(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        self.hosts.append(name)
        return name

    def veth(self, ns_a: str, a: str, ns_b: str, b: str, mtu: int = 1500) -> None:
        sh(
            "ip",
            "link",
            "add",
            a,
            "netns",
            ns_a,
            "mtu",
            str(mtu),
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            ns_b,
            "mtu",
            str(mtu),
        )
        in_ns(ns_a, "ip", "link", "set", a, "up")
        in_ns(ns_b, "ip", "link", "set", b, "up")

    def popen(self, ns: str, *cmd: str, **kw: Any) -> subprocess.Popen[bytes]:
        p: subprocess.Popen[bytes] = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", *cmd], **kw
        )
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        for h in self.hosts:
            shutil.rmtree(f"{PIN_ROOT}/{h}", ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lb = Lab()
    try:
        yield lb
    finally:
        lb.cleanup()


def have_bpf() -> bool:
    return os.geteuid() == 0 and shutil.which("clang") is not None
