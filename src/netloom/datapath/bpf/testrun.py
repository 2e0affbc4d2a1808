"""BPF_PROG_TEST_RUN: the program run on one packet from Python (test vectors, benchmarks)."""

from __future__ import annotations

import ctypes

from netloom.datapath.base import Fate, Outcome, UpcallReason
from netloom.datapath.bpf import abi
from netloom.datapath.bpf import libbpf as lb
from netloom.datapath.bpf.loader import PROG, Loader
from netloom.datapath.bpf.upcalls import Upcalls
from netloom.netns import entered

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
_CTX_SIZE = 192  # struct __sk_buff
_CTX_INGRESS_IFINDEX = 40


class TestRunner:
    """Runs the program in the datapath's namespace (the kernel resolves ``in_port`` there)."""

    __test__ = False  # not a pytest class

    def __init__(self, loader: Loader, netns: str | None, upcalls: Upcalls) -> None:
        self._loader, self._netns, self._upcalls = loader, netns, upcalls

    def run(self, packet: bytes, in_port: int, repeat: int = 1) -> tuple[int, bytes, int]:
        """(retval, data out, mean ns per run) of ``packet`` received on ``in_port``."""
        data_in = lb.buf(packet)
        data_out = ctypes.create_string_buffer(len(packet) + 256)
        ctx = bytearray(_CTX_SIZE)
        ctx[_CTX_INGRESS_IFINDEX : _CTX_INGRESS_IFINDEX + 4] = in_port.to_bytes(4, "little")
        ctx_in = lb.buf(bytes(ctx))
        opts = lb.TestRunOpts(
            sz=ctypes.sizeof(lb.TestRunOpts),
            data_in=lb.addr(data_in),
            data_out=lb.addr(data_out),
            data_size_in=len(packet),
            data_size_out=len(data_out),
            ctx_in=lb.addr(ctx_in),
            ctx_size_in=len(ctx),
            repeat=repeat,
        )
        with entered(self._netns):
            rc = lb.lib().bpf_prog_test_run_opts(self._loader.fd(PROG), ctypes.byref(opts))
            lb.check(rc, "BPF_PROG_TEST_RUN")
        return opts.retval, data_out.raw[: opts.data_size_out], opts.duration

    def outcome(self, packet: bytes, in_port: int) -> list[Outcome]:
        """Run one packet and report it as test-vector outcomes (needs ``trace``: the program
        records its verdict)."""
        before = self._verdict()[4]
        rc, out, _ = self.run(packet, in_port)
        action, ifindex, vni, remote, count = self._verdict()
        if count == before:
            return [Outcome(Fate.DROP)] if rc == TC_ACT_SHOT else []
        if action == abi.A_USERSPACE:
            ups = self._upcalls.poll(0.2)
            reason = ups[-1].reason if ups else UpcallReason(vni)
            return [Outcome(Fate.UPCALL, ups[-1].packet if ups else b"", reason=reason)]
        if rc == TC_ACT_REDIRECT and action == abi.A_OUTPUT:
            return [Outcome(Fate.OUTPUT, out, port=ifindex)]
        if rc == TC_ACT_REDIRECT and action == abi.A_TUNNEL:
            return [Outcome(Fate.TUNNEL, out, vni=vni, remote=remote)]
        return [Outcome(Fate.DROP)]

    def _verdict(self) -> tuple[int, int, int, int, int]:
        m = self._loader.map("nl_verdict")
        v = m.lookup(bytes(4), abi.VERDICT.size) or bytes(abi.VERDICT.size)
        a, i, vni, r, c = abi.VERDICT.unpack(v)
        return a, i, vni, r, c


__all__ = ["TestRunner"]
