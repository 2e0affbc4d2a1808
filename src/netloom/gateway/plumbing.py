"""A sidecar's namespace and veth: created fresh (leftovers of a crashed agent removed first),
always removed. The host side stays in the agent's namespace, where the datapath plugs it;
the sidecar side carries the uplink port's address and MAC.

Commands go through iproute2 (``ip``) as subprocesses: the agent's event loop never blocks on
them, and no helper process or thread is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from netloom.errors import GatewayError
from netloom.netns import netns_path


async def ip(*args: str, check: bool = True) -> bool:
    """Run ``ip ARGS``; False (or :class:`GatewayError` with ``check``) when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await proc.communicate()
    if proc.returncode != 0 and check:
        raise GatewayError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return proc.returncode == 0


@dataclass(frozen=True, slots=True)
class Cable:
    """A sidecar's namespace ``ns`` and its veth: ``side_if`` in ``ns``, ``host_if`` in
    ``host_ns`` (None: the caller's namespace, where the datapath is)."""

    ns: str
    host_if: str
    side_if: str
    host_ns: str | None = None

    @property
    def here(self) -> tuple[str, ...]:
        return ("-n", self.host_ns) if self.host_ns else ()


async def create(cable: Cable, address: str, mac: str, mtu: int) -> None:
    """The namespace with the sidecar side (``address``, ``mac``, ``mtu``) cabled to the
    host side, both up."""
    c = cable
    await remove(c)
    await ip("netns", "add", c.ns)
    await ip(*c.here, "link", "add", c.host_if, "mtu", str(mtu), "type", "veth",
             "peer", "name", c.side_if, "netns", c.ns)  # fmt: skip
    # IPv4 only: no IPv6 link-local chatter out of the uplink
    await ip("netns", "exec", c.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             f"net.ipv6.conf.{c.side_if}.disable_ipv6=1")  # fmt: skip
    await ip("-n", c.ns, "link", "set", c.side_if, "address", mac, "mtu", str(mtu))
    await ip("-n", c.ns, "addr", "add", address, "dev", c.side_if)
    await ip("-n", c.ns, "link", "set", "lo", "up")
    await ip("-n", c.ns, "link", "set", c.side_if, "up")
    await ip(*c.here, "link", "set", c.host_if, "up")


async def remove(cable: Cable) -> None:
    """Remove the veth and the namespace (and any process still running in it); nothing to
    remove is no error."""
    await ip(*cable.here, "link", "del", cable.host_if, check=False)
    if netns_path(cable.ns).exists():
        for pid in pids_in(cable.ns):
            kill(pid)
        await ip("netns", "del", cable.ns, check=False)


async def flush_table(ns: str, table: int) -> None:
    """Remove every route of kernel table ``table`` in ``ns``."""
    await ip("-n", ns, "route", "flush", "table", str(table), check=False)


def pids_in(ns: str) -> list[int]:
    """The processes whose network namespace is ``ns``."""
    try:
        want = os.stat(netns_path(ns))
    except FileNotFoundError:
        return []
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            out.append(int(entry.name))
    return out


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


__all__ = ["Cable", "create", "flush_table", "ip", "kill", "pids_in", "remove"]
