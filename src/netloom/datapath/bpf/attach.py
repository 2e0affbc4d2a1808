"""Interfaces of the datapath's namespace, and attaching programs to them with tc.

A port is attached with a classic clsact qdisc and a cls_bpf direct-action filter referring to
the pinned program: the attachment belongs to the interface, not to our process, so forwarding
goes on while the agent is gone (kill -9 included). ``tc``/``ip`` run under ``nsenter --net``
(never ``ip netns exec``, which hides the bpffs pins).
"""

from __future__ import annotations

import fcntl
import socket
import struct
import subprocess
from pathlib import Path

from netloom.errors import DatapathError, NotFound
from netloom.netns import entered, netns_path

SIOCGIFMTU = 0x8921
_FILTER = ("ingress", "prio", "1", "handle", "1", "bpf")


class Plumbing:
    """Commands and interface look-ups in one namespace (None: this process's)."""

    def __init__(self, netns: str | None, pin_dir: Path) -> None:
        self.netns, self.pin_dir = netns, pin_dir

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if self.netns is not None:
            full = ["nsenter", f"--net={netns_path(self.netns)}", *full]
        r = subprocess.run(full, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise DatapathError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return r

    def ifindex(self, ifname: str) -> int:
        with entered(self.netns):
            try:
                return socket.if_nametoindex(ifname)
            except OSError as exc:
                raise NotFound(f"no interface {ifname}", field="ifname") from exc

    def ifname(self, ifindex: int) -> str | None:
        with entered(self.netns):
            try:
                return socket.if_indextoname(ifindex)
            except OSError:
                return None

    def mtu(self, ifname: str) -> int:
        with entered(self.netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16si12x", ifname.encode(), 0)
            return int(struct.unpack_from("16si", fcntl.ioctl(s, SIOCGIFMTU, req))[1])

    def attach(self, ifname: str, prog: str) -> None:
        """Run pinned program ``prog`` on ``ifname``'s ingress (replacing ours if there)."""
        self.run("tc", "qdisc", "replace", "dev", ifname, "clsact")
        pinned = str(self.pin_dir / prog)
        self.run("tc", "filter", "replace", "dev", ifname, *_FILTER, "da", "pinned", pinned)

    def detach(self, ifname: str) -> None:
        """Remove the clsact qdisc (and every filter) of one of our ports."""
        self.run("tc", "qdisc", "del", "dev", ifname, "clsact", check=False)

    def detach_filter(self, ifname: str) -> None:
        """Remove only our filter (on an interface that is not ours: other filters stay)."""
        self.run("tc", "filter", "del", "dev", ifname, *_FILTER, check=False)


__all__ = ["Plumbing"]
