"""Processes in lab namespaces: run a command inside one, start a daemon inside one, find the
processes living in one, and ``ethtool`` offloads (the one command-line tool the lab needs).

Commands run through ``nsenter --net=/run/netns/NAME``, not ``ip netns exec``: the latter
remounts /sys, which hides the bpffs pins the datapath relies on. ``ethtool`` is used for
offloads because its netlink family is awkward from pyroute2 and the ioctl path is what every
distribution's ethtool speaks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from netloom.errors import DatapathError, InvalidInput, NotFound
from netloom.lab.netns import check_ifname, exists, where
from netloom.netns import netns_path


def nsenter_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run inside ``ns`` (unchanged for the root namespace)."""
    if not argv:
        raise InvalidInput("empty command", field="command")
    if ns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(ns)}", "--", *argv]


def run(
    ns: str | None,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 30.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` and capture its output; with ``check``, a non-zero exit is a
    DatapathError quoting stderr."""
    if ns is not None and not exists(ns):
        raise NotFound(f"no network namespace {ns}", field="netns")
    full = nsenter_argv(ns, argv)
    try:
        done = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise NotFound(f"command not found: {argv[0]}", field="command") from None
    except subprocess.TimeoutExpired:
        raise DatapathError(f"{' '.join(argv)} in {where(ns)} timed out") from None
    if check and done.returncode != 0:
        raise DatapathError(
            f"{' '.join(argv)} in {where(ns)} exited {done.returncode}: "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    return done


def popen(ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``ns`` in its own session (so a terminal's Ctrl-C aimed at the
    CLI does not kill the lab's daemons) and return it without waiting."""
    if ns is not None and not exists(ns):
        raise NotFound(f"no network namespace {ns}", field="netns")
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(nsenter_argv(ns, argv), **kwargs)


def set_offload(ns: str | None, ifname: str, feature: str = "tx", *, on: bool = False) -> None:
    """``ethtool -K IFNAME FEATURE on|off`` inside ``ns``. ``tx off`` makes the kernel finish
    L4 checksums before a packet leaves the VM, which exposes datapath checksum bugs that
    partial checksums would hide."""
    check_ifname(ifname)
    if not re.match(r"^[a-z0-9\-]+$", feature):
        raise InvalidInput(f"bad ethtool feature {feature!r}", field="feature")
    if shutil.which("ethtool") is None:
        raise NotFound("ethtool is not installed", field="command")
    run(ns, ["ethtool", "-K", ifname, feature, "on" if on else "off"])


def offload(ns: str | None, ifname: str, feature: str) -> bool | None:
    """Current state of an ethtool feature by its long name (``tx-checksumming``)."""
    out = run(ns, ["ethtool", "-k", ifname]).stdout
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == feature:
            return value.strip().startswith("on")
    return None


def pids_in(name: str) -> list[int]:
    """PIDs of the processes whose network namespace is ``name`` (by device and inode of the
    namespace file, the only reliable identity of a namespace)."""
    try:
        target = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry))
    return sorted(found)


__all__ = ["nsenter_argv", "offload", "pids_in", "popen", "run", "set_offload"]
