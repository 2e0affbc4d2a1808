"""Network namespaces, low level: where a namespace's file is, and running a block of code in
one (this thread only) via setns(2).

Why not ``ip netns exec``: it remounts /sys, which hides the bpffs pins. setns on the calling
thread changes only the network namespace: sockets and netlink handles created inside stay bound
to it after we switch back, and BPF objects are namespace-agnostic.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netloom.errors import InvalidInput, NotFound

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def netns_path(name: str) -> Path:
    """The file of namespace ``name``: ``name`` itself if it is an absolute path, else
    ``/run/netns/<name>`` (a plain file name there: no ``/``, not ``.`` or ``..``)."""
    if name.startswith("/"):
        return Path(name)
    if not name or "/" in name or name in (".", ".."):
        raise InvalidInput(f"bad network namespace name {name!r}", field="netns")
    return NETNS_DIR / name


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Enter netns ``name`` (None: stay) for the duration of the block."""
    if name is None:
        yield
        return
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"no network namespace {name}", field="netns") from exc
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


__all__ = ["NETNS_DIR", "entered", "netns_path"]
