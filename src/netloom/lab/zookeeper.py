"""A throw-away ZooKeeper ensemble on loopback, for tests and labs.

Runs Debian's ``zookeeper`` package directly (no systemd, no /etc/zookeeper): every member gets
its own directory with ``zoo.cfg`` and ``myid``, three unique free loopback ports (client,
quorum, leader election) and one JVM started with ``QuorumPeerMain``. The jar's manifest
``Class-Path`` already names its dependencies (netty, jute, metrics...); only an SLF4J binding is
missing, so the class path is ``zookeeper.jar`` + ``slf4j-simple.jar`` (logging to each member's
``zookeeper.log``).

Tuned for speed, not durability: a short ``tickTime`` makes leader loss detected and an election
won in well under a second, ``forceSync=no`` skips the fsync per transaction (a lab ensemble dies
with its directory anyway), the admin HTTP server (port 8080 by default, which would collide
between members) is off, and the JVM heap is capped so three members fit on a small machine.

Usage::

    with ZooKeeperEnsemble(size=3) as zk:
        store = ZooKeeperStore(zk.connect_string + "/test")
        zk.kill(zk.leader())
        ...
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from netloom.errors import StoreError

JAVA_DIR = Path("/usr/share/java")
CLASSPATH = (JAVA_DIR / "zookeeper.jar", JAVA_DIR / "slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGKILL it when the thread that forked it
    dies (prctl(2) PR_SET_PDEATHSIG), so a killed test run leaves no JVM behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel reports free right now on ``host``.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the same
    port twice; another process may still grab one before the JVM binds it (tiny window)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``ruok``, ``srvr``, ``mntr``...) and return the
    reply; the server closes the connection after answering."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks: list[bytes] = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@dataclass
class Member:
    """One ensemble member: its id (``myid``, 1-based), ports and running JVM (if any)."""

    myid: int
    client_port: int
    quorum_port: int
    election_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ZooKeeperEnsemble:
    """Start ``size`` ZooKeeper members on loopback; ``stop()`` kills all and removes the dir."""

    def __init__(
        self,
        size: int = 3,
        base_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        tick_ms: int = 200,
        heap_mb: int = 128,
        java: str = "java",
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("an ensemble needs at least one member")
        for jar in CLASSPATH:
            if not jar.exists():
                raise StoreError(f"{jar} is missing: install Debian's zookeeper package")
        self.host = host
        self.size = size
        self.tick_ms = tick_ms
        self.heap_mb = heap_mb
        self.java = java
        self.start_timeout = start_timeout
        # PR_SET_PDEATHSIG follows the forking *thread*: start members from a long-lived
        # thread (or pass False and call stop() yourself)
        self.die_with_parent = die_with_parent
        self._own_dir = base_dir is None
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="netloom-zk-") if base_dir is None else base_dir
        )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3 * size, host)
        self.members = [
            Member(
                i + 1,
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2],
                directory=self.base_dir / f"zk{i + 1}",
            )
            for i in range(size)
        ]
        self._started = False

    # -- configuration -------------------------------------------------------------------

    @property
    def connect_string(self) -> str:
        """``HOST:PORT,HOST:PORT,...`` of every member (kazoo / ZooKeeperStore format)."""
        return ",".join(f"{self.host}:{m.client_port}" for m in self.members)

    def _config(self, member: Member) -> str:
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=20",
            "syncLimit=5",
            f"dataDir={member.directory / 'data'}",
            f"clientPort={member.client_port}",
            f"clientPortAddress={self.host}",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "forceSync=no",
            "autopurge.purgeInterval=0",
        ]
        if self.size > 1:
            lines += [
                f"server.{m.myid}={self.host}:{m.quorum_port}:{m.election_port}"
                for m in self.members
            ]
        return "\n".join(lines) + "\n"

    def _prepare(self, member: Member) -> Path:
        data = member.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{member.myid}\n")
        cfg = member.directory / "zoo.cfg"
        cfg.write_text(self._config(member))
        return cfg

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, member: Member | int | None = None, *, wait: bool = True) -> None:
        """Start every member (``member=None``) or one (by object or myid) and, with ``wait``,
        return once the started members answer as part of a serving quorum."""
        targets = self.members if member is None else [self._member(member)]
        for m in targets:
            if m.running:
                continue
            cfg = self._prepare(m)
            m.log = (m.directory / "zookeeper.log").open("ab")
            m.process = subprocess.Popen(
                [
                    self.java,
                    f"-Xmx{self.heap_mb}m",
                    "-Xss512k",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-cp",
                    ":".join(str(j) for j in CLASSPATH),
                    MAIN_CLASS,
                    str(cfg),
                ],
                stdin=subprocess.DEVNULL,
                stdout=m.log,
                stderr=subprocess.STDOUT,
                cwd=m.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self._started = True
        if wait:
            self.wait_serving(targets)

    def wait_serving(
        self, members: list[Member] | None = None, timeout: float | None = None
    ) -> None:
        """Block until each member reports a mode (leader/follower/standalone) via ``srvr``,
        i.e. it has joined a quorum and accepts clients. Raises StoreError on timeout or when a
        JVM exits (its log is quoted)."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        pending = list(self.members if members is None else members)
        while pending:
            m = pending[0]
            if m.process is not None and m.process.poll() is not None:
                raise StoreError(f"zookeeper member {m.myid} exited: {self._tail(m)}")
            if self.mode(m) is not None:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"zookeeper member {m.myid} not serving: {self._tail(m)}")
            time.sleep(0.05)

    def mode(self, member: Member | int) -> str | None:
        """``leader``, ``follower``, ``standalone`` or None (down, or no quorum yet)."""
        m = self._member(member)
        try:
            reply = four_letter_word(self.host, m.client_port, "srvr", timeout=0.5)
        except OSError:
            return None
        for line in reply.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def leader(self) -> Member:
        """The current leader (the member a standalone server counts as)."""
        for m in self.members:
            if self.mode(m) in ("leader", "standalone"):
                return m
        raise StoreError("the ensemble has no leader")

    def kill(self, member: Member | int, sig: int = signal.SIGKILL) -> None:
        """Kill one member's JVM (SIGKILL by default: a crash, not a clean shutdown)."""
        m = self._member(member)
        if m.process is not None:
            with contextlib.suppress(ProcessLookupError):
                m.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.process.wait(timeout=10)
            if m.process.poll() is None:
                m.process.kill()
                m.process.wait()
            m.process = None
        if m.log is not None:
            m.log.close()
            m.log = None

    def stop(self) -> None:
        """Kill every member this object started and remove the ensemble's directory (if this
        object created it)."""
        for m in self.members:
            self.kill(m)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            for m in self.members:
                shutil.rmtree(m.directory, ignore_errors=True)

    def _member(self, member: Member | int) -> Member:
        if isinstance(member, Member):
            return member
        for m in self.members:
            if m.myid == member:
                return m
        raise ValueError(f"no member with myid {member}")

    @staticmethod
    def _tail(member: Member, lines: int = 15) -> str:
        try:
            text = (member.directory / "zookeeper.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ZooKeeperEnsemble:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["Member", "ZooKeeperEnsemble", "four_letter_word", "free_ports"]
