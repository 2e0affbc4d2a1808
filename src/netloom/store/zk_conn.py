"""The ZooKeeper store's connection: address parsing, the kazoo client, retrying calls, paths.

Layout under the chroot: ``objects/<kind>/<id>`` (documents), ``log/<token>-<seq>`` (one node
per commit) and ``meta/floor`` (the highest revision trimmed from the log).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry, RetryFailedError

from netloom.errors import InvalidInput, StoreError

T = TypeVar("T")

DEFAULT_CHROOT = "/netloom"
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.:@\-]+$")
TRANSIENT = (KazooException, RetryFailedError, InterruptedError)


def parse_hosts(spec: str) -> tuple[str, str]:
    """Split ``HOST:PORT,HOST:PORT[/chroot]`` into the kazoo hosts string and the chroot
    (``/netloom`` when none is given). Raises InvalidInput on anything else."""
    hosts, _, chroot_part = spec.partition("/")
    hosts = hosts.strip()
    if not hosts:
        raise InvalidInput(f"bad zookeeper address {spec!r}: no hosts", field="store")
    for host in hosts.split(","):
        m = _HOST_RE.match(host.strip())
        if not m or not 0 < int(m.group(2)) < 65536:
            raise InvalidInput(
                f"bad zookeeper host {host!r} in {spec!r}: want HOST:PORT", field="store"
            )
    segments = [s for s in chroot_part.split("/") if s]
    for seg in segments:
        if not _SEGMENT_RE.match(seg) or seg in (".", "..", "zookeeper"):
            raise InvalidInput(f"bad zookeeper chroot segment {seg!r} in {spec!r}", field="store")
    chroot = "/" + "/".join(segments) if segments else DEFAULT_CHROOT
    return ",".join(h.strip() for h in hosts.split(",")), chroot


def check_name(what: str, value: str) -> None:
    """Kinds and ids become znode names: refuse what ZooKeeper would mangle or reject."""
    if not value or "/" in value or value in (".", "..") or any(ord(c) < 32 for c in value):
        raise InvalidInput(
            f"{what} {value!r} cannot be stored (empty, '/', '.' or control characters)", field=what
        )


class ZkConnection:
    """One kazoo client on ``hosts`` (``HOST:PORT,...[/chroot]``), started and laid out."""

    def __init__(
        self, hosts: str, *, timeout: float, session_timeout: float, randomize_hosts: bool
    ) -> None:
        self.hosts, self.chroot = parse_hosts(hosts)
        self.timeout = timeout
        self.objects = f"{self.chroot}/objects"
        self.log = f"{self.chroot}/log"
        self.floor = f"{self.chroot}/meta/floor"
        self.closed = False
        self.client = KazooClient(
            hosts=self.hosts,
            timeout=session_timeout,
            randomize_hosts=randomize_hosts,
            connection_retry={
                "max_tries": -1,
                "delay": 0.05,
                "backoff": 1.5,
                "max_delay": 1.0,
                "max_jitter": 0.1,
            },
        )
        try:
            self.client.start(timeout=timeout)
        except Exception as exc:  # KazooTimeoutError, socket errors
            self.client.close()
            raise StoreError(f"cannot reach zookeeper at {self.hosts}: {exc}") from exc
        try:
            self._layout()
        except BaseException:
            self.client.stop()
            self.client.close()
            raise

    def _layout(self) -> None:
        self.call(self.client.ensure_path, self.objects)
        self.call(self.client.ensure_path, self.log)
        if self.call(self.client.exists, self.floor) is None:
            with contextlib.suppress(NodeExistsError):
                self.call(self.client.create, self.floor, b"0", makepath=True)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an idempotent kazoo call, retrying through connection loss until ``timeout``;
        anything else kazoo raises becomes StoreError (NoNode is the caller's business)."""
        if self.closed:
            raise StoreError(f"zookeeper store {self.hosts}{self.chroot} is closed")
        retry = KazooRetry(
            max_tries=-1,
            delay=0.05,
            backoff=1.5,
            max_delay=0.5,
            max_jitter=0.05,
            deadline=self.timeout,
            ignore_expire=True,
            interrupt=lambda: self.closed,
        )
        try:
            result: T = retry(fn, *args, **kwargs)
            return result
        except (NoNodeError, NodeExistsError):
            raise
        except TRANSIENT as exc:
            raise StoreError(f"zookeeper {self.hosts}: {type(exc).__name__} {exc}") from exc

    def path(self, kind: str, id: str) -> str:
        return f"{self.objects}/{kind}/{id}"

    def read_floor(self) -> int:
        data, _ = self.call(self.client.get, self.floor)
        return int(data)

    @property
    def connected(self) -> bool:
        return bool(self.client.state == KazooState.CONNECTED)

    @property
    def server(self) -> str | None:
        """``host:port`` of the member this client is talking to now (diagnostics; kazoo has
        no public accessor, so this peeks at its connection and may return None)."""
        sock = getattr(getattr(self.client, "_connection", None), "_socket", None)
        try:
            host, port = sock.getpeername()[:2] if sock is not None else (None, None)
        except OSError:
            return None
        return None if host is None else f"{host}:{port}"

    def close(self) -> None:
        self.closed = True
        self.client.stop()
        self.client.close()


__all__ = ["DEFAULT_CHROOT", "TRANSIENT", "ZkConnection", "check_name", "parse_hosts"]
