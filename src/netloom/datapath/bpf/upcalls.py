"""Upcalls and packets going back in.

Upcalls arrive on a BPF ring buffer (a copy of the packet in a constant size class). Parked
packets go back in through a private veth pair (``nlinj0`` -> ``nlinj1``): the agent writes the
frame on ``nlinj0`` with an AF_PACKET socket and ``SO_MARK`` naming an *exec slot*; the program on
``nlinj1`` either looks the frame up as if it had arrived on the slot's ``in_port`` (reinject) or
runs the slot's actions (packet-out). Every forwarding decision, tunnel encapsulation included,
is therefore made by the kernel program, never re-implemented in Python. Frames captured from a
veth carry partial L4 checksums, so they are completed (``frames.complete_l4_checksum``) before
being written back.
"""

from __future__ import annotations

import collections
import errno
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netloom.datapath import frames
from netloom.datapath.base import DatapathCounters, Upcall, UpcallReason
from netloom.datapath.bpf import abi
from netloom.datapath.bpf import libbpf as lb
from netloom.datapath.bpf.attach import Plumbing
from netloom.datapath.bpf.loader import PROG, Loader
from netloom.datapath.bpf.ports import PORT_INJECT, PortTable
from netloom.errors import DatapathError, InvalidInput, NotFound
from netloom.flows.model import Action
from netloom.netns import entered

INJECT_TX, INJECT_RX = "nlinj0", "nlinj1"


class ExecSlots:
    """``nl_exec`` entries reused by content (LRU): a burst of re-injections from the same
    port shares one slot, so an in-flight frame's slot is not overwritten under it."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._slots: collections.OrderedDict[bytes, int] = collections.OrderedDict()

    def slot(self, value: bytes) -> int:
        slot = self._slots.get(value)
        if slot is not None:
            self._slots.move_to_end(value)
            return slot
        if len(self._slots) < abi.EXEC_SLOTS:
            slot = len(self._slots)
        else:
            _, slot = self._slots.popitem(last=False)
        self._loader.map("nl_exec").update(slot.to_bytes(4, "little"), value)
        self._slots[value] = slot
        return slot


class Upcalls:
    """The ring buffer of upcalls and the injection veth."""

    def __init__(self, loader: Loader, net: Plumbing, ports: PortTable) -> None:
        self._loader, self._net, self._ports = loader, net, ports
        self._slots = ExecSlots(loader)
        self._pending: collections.deque[Upcall] = collections.deque()
        self._rb: int | None = None
        self._rb_cb: Any = lb.make_ringbuf_cb(self._on_upcall)
        self._sock: socket.socket | None = None

    def start_injection(self) -> None:
        """Create the injection veth if missing, attach the program, open the socket."""
        try:
            rx = self._net.ifindex(INJECT_RX)
        except NotFound:
            self._net.run("ip", "link", "add", INJECT_TX, "type", "veth", "peer", "name", INJECT_RX)
            for n in (INJECT_TX, INJECT_RX):
                self._net.run("sysctl", "-qw", f"net.ipv6.conf.{n}.disable_ipv6=1", check=False)
                self._net.run("ip", "link", "set", n, "up")
            rx = self._net.ifindex(INJECT_RX)
        self._ports.set_internal(rx, PORT_INJECT)
        self._net.attach(INJECT_RX, PROG)
        with entered(self._net.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind((INJECT_TX, 0))
        self._sock = s

    def start_ring(self) -> None:
        self._rb = lb.lib().ring_buffer__new(self._loader.fd("nl_upcalls"), self._rb_cb, None, None)
        if not self._rb:
            raise DatapathError("ring_buffer__new failed")

    def _on_upcall(self, rec: bytes) -> None:
        in_port, reason, tun_key, pkt_len, cap, ct, cookie = abi.UPCALL.unpack_from(rec)
        data = rec[abi.UPCALL.size : abi.UPCALL.size + cap]
        up = Upcall(data, in_port, UpcallReason(reason), tun_key, cookie, pkt_len, ct)
        self._pending.append(up)

    def poll(self, timeout: float = 0.0, max_count: int = 256) -> list[Upcall]:
        if self._rb is None:
            raise DatapathError("datapath closed")
        if not self._pending:
            lb.lib().ring_buffer__poll(self._rb, int(timeout * 1000))
        out: list[Upcall] = []
        while self._pending and len(out) < max_count:
            out.append(self._pending.popleft())
        return out

    def fd(self) -> int:
        """An epoll fd that becomes readable when upcalls are waiting (for event loops)."""
        if self._rb is None:
            raise DatapathError("datapath closed")
        return int(lb.lib().ring_buffer__epoll_fd(self._rb))

    def reinject(self, upcall: Upcall) -> None:
        """Look the parked packet up again in the kernel, as if it arrived on its in_port.
        A truncated capture (GSO super-packet) cannot be replayed, nor can a coalesced (GRO)
        packet longer than the injection veth's MTU: the sender retransmits, and the flow the
        upcall installed carries the retransmission."""
        if upcall.truncated:
            return
        head = abi.EXEC_HEAD.pack(upcall.in_port, upcall.tun_key, 1, 0, 0)
        try:
            self._send(
                frames.complete_l4_checksum(upcall.packet), head + bytes(abi.ACTION.size * 8)
            )
        except DatapathError as exc:
            if exc.errno != errno.EMSGSIZE:
                raise

    def execute(self, packet: bytes, actions: Sequence[Action], in_port: int = 0) -> None:
        head = abi.EXEC_HEAD.pack(in_port, 0, 0, 0, 0)
        self._send(frames.complete_l4_checksum(packet), head + abi.pack_actions(list(actions)))

    def _send(self, packet: bytes, slot_value: bytes) -> None:
        if self._sock is None:
            raise DatapathError("datapath closed")
        if len(packet) < 14:
            raise InvalidInput("frame shorter than an Ethernet header", field="packet")
        mark = (abi.MARK_EXEC | self._slots.slot(slot_value)).to_bytes(4, "little")
        try:
            self._sock.sendmsg([packet], [(socket.SOL_SOCKET, socket.SO_MARK, mark)])
        except OSError as exc:  # e.g. EMSGSIZE: longer than the injection veth's MTU
            raise DatapathError(
                f"injecting a {len(packet)}-byte frame failed: {exc.strerror}", errno=exc.errno
            ) from None

    def counters(self) -> DatapathCounters:
        """Sum of the per-CPU ``nl_stats``."""
        ncpu = possible_cpus()
        raw = self._loader.map("nl_stats").lookup(bytes(4), abi.STATS.size * ncpu)
        sums = [0] * (abi.STATS.size // 8)  # u64 counters
        for i in range(ncpu if raw else 0):
            for j, v in enumerate(abi.STATS.unpack_from(raw or b"", i * abi.STATS.size)):
                sums[j] += v
        return DatapathCounters(*sums)

    def remove_injection(self) -> None:
        self._net.run("ip", "link", "del", INJECT_TX, check=False)

    def close(self) -> None:
        if self._rb:
            lb.lib().ring_buffer__free(self._rb)
            self._rb = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def possible_cpus() -> int:
    """How many values a per-CPU map returns: one per *possible* CPU (e.g. "0-1" -> 2)."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


__all__ = ["INJECT_RX", "INJECT_TX", "ExecSlots", "Upcalls", "possible_cpus"]
