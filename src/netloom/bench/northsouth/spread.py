"""How the upstream spreads connections over the gateways: ``count`` TCP connections from the
external host to the floating IPs, counted per gateway on the cables themselves.

The count: a packet socket (AF_PACKET) on each of the upstream router's uplink interfaces
sees every frame the upstream sends to that gateway; a connection is counted on the gateway
whose cable carried its SYN (first SYN per 4-tuple, so a retransmission is not a second
connection). The connections are opened all at once, non-blocking, and given ``wait`` seconds
to complete (how many did is reported too: with a working north-south path, all).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import select
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

from netloom.bench.northsouth.world import Target, World
from netloom.lab.addressing import PUBLIC_NET
from netloom.netns import entered

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4  # sll_pkttype of a frame this host sends (linux/if_packet.h)
TCP_SYN, TCP_ACK = 0x02, 0x10
SPREAD_PORT = 5310


def _syn_of(frame: bytes) -> tuple[str, int, str, int] | None:
    """The 4-tuple of an IPv4 TCP SYN (no ACK) to the public range, else None."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_TCP or len(ip) < ihl + 14:
        return None
    dst = ipaddress.IPv4Address(ip[16:20])
    flags = ip[ihl + 13]
    if dst not in PUBLIC_NET or flags & (TCP_SYN | TCP_ACK) != TCP_SYN:
        return None
    sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
    return str(ipaddress.IPv4Address(ip[12:16])), sport, str(dst), dport


class SynCounter:
    """Packet sockets on the upstream's uplink interfaces, counting distinct SYNs sent."""

    def __init__(self, netns: str, interfaces: Sequence[str]) -> None:
        self.seen: dict[str, set[tuple[str, int, str, int]]] = {i: set() for i in interfaces}
        self.socks: dict[socket.socket, str] = {}
        with entered(netns):
            for ifname in interfaces:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
                s.bind((ifname, ETH_P_IP))  # host order here (CPython swaps it)
                s.setblocking(False)
                self.socks[s] = ifname

    def drain(self, until: float) -> None:
        """Read every frame until ``until`` (monotonic)."""
        while (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select(list(self.socks), [], [], left)
            for s in ready:
                self._read(s)

    def _read(self, s: socket.socket) -> None:
        while True:
            try:
                frame, addr = s.recvfrom(2048)
            except BlockingIOError:
                return
            if addr[2] != PACKET_OUTGOING:
                continue
            key = _syn_of(frame)
            if key is not None:
                self.seen[self.socks[s]].add(key)

    def counts(self) -> dict[str, int]:
        return {i: len(v) for i, v in self.seen.items()}

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks.clear()


@contextlib.contextmanager
def _listeners(targets: Sequence[Target], port: int) -> Iterator[list[socket.socket]]:
    """A listener on ``port`` in every target VM (its kernel completes the handshakes)."""
    socks: list[socket.socket] = []
    try:
        for t in targets:
            with entered(t.netns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(4096)
        yield socks
    finally:
        for s in socks:
            s.close()


def _connect_all(netns: str, targets: Sequence[Target], count: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        with entered(netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        socks.append(s)
        err = s.connect_ex((targets[i % len(targets)].floating_ip, SPREAD_PORT))
        if err not in (0, errno.EINPROGRESS):
            s.close()
    return socks


def _established(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        with contextlib.suppress(OSError):
            if s.fileno() >= 0 and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                s.getpeername()
                n += 1
    return n


def measure(world: World, count: int, wait: float) -> dict[str, Any]:
    """Open ``count`` connections to the floating IPs; connections per gateway."""
    ifs = {g.upstream_if: g.index for g in world.gateways}
    counter = SynCounter(world.upstream, list(ifs))
    try:
        with _listeners(world.targets, SPREAD_PORT):
            socks = _connect_all(world.external, world.targets, count)
            try:
                counter.drain(time.monotonic() + wait)
                established = _established(socks)
            finally:
                for s in socks:
                    s.close()
    finally:
        counter.close()
    per = {f"gw{ifs[i]}": n for i, n in counter.counts().items()}
    return {
        "connections": count,
        "established": established,
        "per_gateway": per,
        "min": min(per.values()),
        "max": max(per.values()),
        "max_over_min": max(per.values()) / min(per.values()) if min(per.values()) else None,
    }


__all__ = ["SPREAD_PORT", "SynCounter", "measure"]
