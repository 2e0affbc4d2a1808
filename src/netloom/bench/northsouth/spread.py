"""How the upstream spreads connections over the gateways: ``count`` TCP connections from the
external host to the floating IPs, counted per gateway on the cables themselves.

The count: a packet socket (AF_PACKET) on each of the upstream router's uplink interfaces
sees every frame the upstream sends to that gateway; a connection is counted once, on the
gateway whose cable carried its first SYN. (Not predicted with ``ip route get``: the upstream
hashes a forwarded packet by the hash it carries, the sending socket's ``sk_txhash``, which
veths keep and which Linux draws anew when a SYN or segment times out, so a retransmission may
take another gateway.) The connections are opened all at once, non-blocking, and given
``wait`` seconds to complete (how many did is reported too: with a working path, all).
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

# every protocol: the only kind of packet socket that sees frames sent (dev_queue_xmit_nit)
ETH_P_ALL = 0x0003
RCVBUF = 16 * 2**20
SO_RCVBUFFORCE = 33  # asm-generic/socket.h
PACKET_OUTGOING = 4  # sll_pkttype of a frame this host sends (linux/if_packet.h)
TCP_SYN, TCP_ACK = 0x02, 0x10
SPREAD_PORT = 5310


Flow = tuple[str, int, str, int]  # source, source port, destination, destination port


def _tcp_of(frame: bytes) -> tuple[Flow, bool] | None:
    """The 4-tuple of an IPv4 TCP segment to the public range and whether it is a SYN (no
    ACK); None for anything else."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_TCP or len(ip) < ihl + 14:
        return None
    dst = ipaddress.IPv4Address(ip[16:20])
    if dst not in PUBLIC_NET:
        return None
    sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
    syn = ip[ihl + 13] & (TCP_SYN | TCP_ACK) == TCP_SYN
    return (str(ipaddress.IPv4Address(ip[12:16])), sport, str(dst), dport), syn


class Tap:
    """Packet sockets on the upstream's uplink interfaces: for every TCP flow to the public
    range, the interface its first SYN left by (``syn_via``) and the one its latest segment
    left by (``last_via``)."""

    def __init__(self, netns: str, interfaces: Sequence[str]) -> None:
        self.syn_via: dict[Flow, str] = {}
        self.last_via: dict[Flow, str] = {}
        self.interfaces = list(interfaces)
        self.socks: dict[socket.socket, str] = {}
        with entered(netns):
            for ifname in interfaces:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                self.socks[s] = ifname
                # room for a burst of SYNs while the reader sleeps (as root: beyond rmem_max)
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                s.bind((ifname, ETH_P_ALL))  # host order here (CPython swaps it)
                s.setblocking(False)

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
            got = _tcp_of(frame) if addr[2] == PACKET_OUTGOING else None
            if got is None:
                continue
            flow, syn = got
            self.last_via[flow] = self.socks[s]
            if syn:
                self.syn_via.setdefault(flow, self.socks[s])

    def connections(self) -> dict[str, int]:
        """Flows per interface, each counted where its first SYN left."""
        out = dict.fromkeys(self.interfaces, 0)
        for ifname in self.syn_via.values():
            out[ifname] += 1
        return out

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
    tap = Tap(world.upstream, list(ifs))
    try:
        with _listeners(world.targets, SPREAD_PORT):
            socks = _connect_all(world.external, world.targets, count)
            try:
                tap.drain(time.monotonic() + wait)
                established = _established(socks)
            finally:
                for s in socks:
                    s.close()
    finally:
        tap.close()
    per = {f"gw{ifs[i]}": n for i, n in tap.connections().items()}
    return {
        "connections": count,
        "established": established,
        "per_gateway": per,
        "min": min(per.values()),
        "max": max(per.values()),
        "max_over_min": max(per.values()) / min(per.values()) if min(per.values()) else None,
    }


__all__ = ["SPREAD_PORT", "Flow", "Tap", "measure"]
