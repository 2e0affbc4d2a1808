"""systemd's readiness and watchdog protocol (``Type=notify``, ``WatchdogSec=``): one datagram
of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (sd_notify(3)).

A few lines of socket code, so no dependency (python-systemd, sdnotify) is needed. Outside
systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path  # "@name": an abstract socket


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``READY=1``...) to systemd; False when not run by it or the socket
    refused (the service goes on either way)."""
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC`` (as sd_watchdog_enabled(3)
    advises), None when no watchdog is asked of this process (``$WATCHDOG_PID`` another's)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def _watchdog(period: float) -> None:
    while True:
        notify(WATCHDOG)
        await asyncio.sleep(period)


def start_watchdog() -> asyncio.Task[None] | None:
    """Ping systemd's watchdog from the running event loop (a blocked loop stops the pings and
    systemd restarts the service); None when no watchdog is asked."""
    period = watchdog_period()
    if period is None:
        return None
    return asyncio.get_running_loop().create_task(_watchdog(period), name="sd-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    """Stop the pings (the process is stopping: systemd is told so)."""
    notify(STOPPING)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "READY",
    "STOPPING",
    "WATCHDOG",
    "notify",
    "start_watchdog",
    "stop_watchdog",
    "watchdog_period",
]
