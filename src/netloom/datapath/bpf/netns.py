"""Run a block of code in another network namespace (this thread only), via setns(2).

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

from netloom.errors import NotFound

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def netns_path(name: str) -> str:
    return name if name.startswith("/") else f"/run/netns/{name}"


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
    own = os.open(f"/proc/self/task/{_gettid()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def _gettid() -> int:
    return threading.get_native_id()


__all__ = ["entered", "netns_path"]
