"""The kernel datapath: the tc program of ``netloom.bpf.c`` driven from Python (no bcc).

:class:`BpfDatapath` is a facade over one part per concern: the pinned object
(``loader``), ``nl_config`` (``config``), tc attachment (``attach``), ports and tunnel keys
(``ports``), the VXLAN device and underlay NIC (``tunnel``), flows and masks (``flows``),
upcalls and re-injection (``upcalls``) and BPF_PROG_TEST_RUN (``testrun``). Every instance works
from the pins, so a restarted agent adopts the kernel state with the code path that built it.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence

from netloom.datapath.base import (
    DatapathCounters,
    Outcome,
    PortInfo,
    PortKind,
    TunnelSettings,
    Upcall,
    UpcallLimit,
)
from netloom.datapath.bpf import abi
from netloom.datapath.bpf.attach import Plumbing
from netloom.datapath.bpf.config import ConfigMap
from netloom.datapath.bpf.flows import FlowTable
from netloom.datapath.bpf.loader import Loader, PinnedObject
from netloom.datapath.bpf.maps import MapInfo
from netloom.datapath.bpf.ports import PortTable
from netloom.datapath.bpf.testrun import TestRunner
from netloom.datapath.bpf.tunnel import Tunnel
from netloom.datapath.bpf.upcalls import Upcalls
from netloom.datapath.conntrack import ConntrackSettings, CtEntry, CtTuple
from netloom.datapath.pins import host_pin_dir
from netloom.errors import InvalidInput
from netloom.flows.model import Action, Flow, FlowKey, FlowMask, FlowStats

_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class BpfDatapath:
    """tc-eBPF datapath of one host (see module docstring). ``loader`` defaults to the host's
    :class:`PinnedObject` (loaded and pinned on first use), its tables sized by
    ``max_entries`` (map name -> entries, see ``loader.SIZABLE``)."""

    def __init__(
        self,
        host: str,
        *,
        netns: str | None = None,
        max_entries: Mapping[str, int] | None = None,
        trace: bool = False,
        loader: Loader | None = None,
    ) -> None:
        if not _HOST_RE.match(host):
            raise InvalidInput(f"bad host name {host!r}", field="host")
        self.host = host
        self.netns = netns
        if loader is None:
            loader = PinnedObject(host_pin_dir(host), max_entries=max_entries)
        self._loader = loader
        self.pin_dir = loader.pin_dir
        self._net = Plumbing(netns, self.pin_dir)
        self._config = ConfigMap(loader.map("nl_config"))
        self._ports = PortTable(loader.map("nl_ports"), loader.map("nl_vni"), self._net)
        self._tunnel = Tunnel(self._net, self._ports, self._config)
        self._flows = FlowTable(loader.map("nl_flows"), loader.map("nl_masks"))
        self._upcalls = Upcalls(loader, self._net, self._ports)
        self._test = TestRunner(loader, netns, self._upcalls)
        try:
            self._config.start(trace=trace)
            self._upcalls.start_injection()
            self._tunnel.underlay = self._ports.adopt()
            self._flows.adopt()
            self._upcalls.start_ring()
        except BaseException:
            self.close()
            raise

    # ---- ports and tunnel -------------------------------------------------------------------

    def add_port(self, ifname: str, kind: PortKind, *, mtu: int | None = None) -> int:
        return self._ports.add(ifname, kind, mtu=mtu)

    def remove_port(self, port: int) -> None:
        self._ports.remove(port)

    def port_present(self, port: int) -> bool:
        return self._ports.present(port)

    def ports(self) -> list[PortInfo]:
        return self._ports.list()

    def set_tunnel(self, settings: TunnelSettings) -> int:
        return self._tunnel.set(settings)

    def bind_tunnel_key(self, vni: int, port: int) -> None:
        self._ports.bind_tunnel_key(vni, port)

    def unbind_tunnel_key(self, vni: int) -> None:
        self._ports.unbind_tunnel_key(vni)

    # ---- flows ------------------------------------------------------------------------------

    def install(self, flows: Sequence[Flow]) -> None:
        """Batched: one BPF_MAP_UPDATE_BATCH for all flows, then the mask array if it changed."""
        self._flows.install(flows)

    def modify(self, flows: Sequence[Flow]) -> None:
        self._flows.modify(flows)

    def delete(self, matches: Sequence[tuple[FlowKey, FlowMask]]) -> int:
        return self._flows.delete(matches)

    def dump(self) -> list[tuple[Flow, FlowStats]]:
        return self._flows.dump()

    def expire(self, now: float | None = None) -> list[Flow]:
        """One batched dump; delete idle/hard timed-out flows; recount mask use."""
        return self._flows.expire(now)

    def flow_count(self) -> int:
        return self._flows.count()

    def map_info(self, name: str) -> MapInfo:
        """Size and locked memory of one of the object's maps (e.g. ``nl_flows``)."""
        return self._loader.info(name)

    # ---- upcalls and packet-out -------------------------------------------------------------

    def poll_upcalls(self, timeout: float = 0.0, max_count: int = 256) -> list[Upcall]:
        return self._upcalls.poll(timeout, max_count)

    def upcall_fd(self) -> int:
        """An epoll fd that becomes readable when upcalls are waiting (for event loops)."""
        return self._upcalls.fd()

    def set_upcall_limit(self, limit: UpcallLimit | None) -> None:
        """The program's per-port token bucket (``upcall_admit`` in netloom.bpf.c)."""
        self._config.set_upcall_limit(limit)

    def counters(self) -> DatapathCounters:
        """Sum of the per-CPU ``nl_stats``."""
        return self._upcalls.counters()

    def reinject(self, upcall: Upcall) -> None:
        """Look the parked packet up again in the kernel, as if it arrived on its in_port."""
        self._upcalls.reinject(upcall)

    def execute(self, packet: bytes, actions: Sequence[Action], in_port: int = 0) -> None:
        self._upcalls.execute(packet, actions, in_port)

    def set_conntrack(self, settings: ConntrackSettings) -> None:
        """Conntrack lifetimes. The table's size is the loaded map's (``PinnedObject``'s
        ``max_entries`` of ``nl_ct``), fixed for the life of the pins."""
        self._config.set_conntrack(settings)

    def conntrack_entry(self, t: CtTuple) -> CtEntry | None:
        """The live entry of ``t`` in ``nl_ct`` (a lookup: no refresh, no LRU bump)."""
        zone, proto, src, dst, sp, dp = t
        key = abi.CT_KEY.pack(zone, src, dst, sp, dp, proto)
        raw = self._loader.map("nl_ct").lookup(key, abi.CT_ENTRY.size)
        e = _ct_entry(raw) if raw is not None else None
        return e if e is not None and e.expires > time.monotonic() else None

    def conntrack(self) -> dict[CtTuple, CtEntry]:
        """The kernel's conntrack table (``nl_ct``), times in monotonic seconds."""
        out: dict[CtTuple, CtEntry] = {}
        for k, v in self._loader.map("nl_ct").items(abi.CT_KEY.size, abi.CT_ENTRY.size):
            zone, src, dst, sp, dp, proto = abi.CT_KEY.unpack(k)
            out[(zone, proto, src, dst, sp, dp)] = _ct_entry(v)
        return out

    # ---- BPF_PROG_TEST_RUN (test vectors, micro-benchmarks) --------------------------------

    def test_run(self, packet: bytes, in_port: int, repeat: int = 1) -> tuple[int, bytes, int]:
        """Run the program on ``packet`` as if received on ``in_port``: (retval, data out,
        mean ns per run). Runs in this datapath's netns (the kernel resolves ``in_port``)."""
        return self._test.run(packet, in_port, repeat)

    def run_outcome(self, packet: bytes, in_port: int) -> list[Outcome]:
        """BPF_PROG_TEST_RUN one packet and report it as test-vector outcomes (needs
        ``trace=True``: the program records its verdict)."""
        return self._test.outcome(packet, in_port)

    # ---- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's handles. Kernel state (attachments, pins, flows) stays."""
        self._upcalls.close()
        self._loader.close()

    def destroy(self) -> None:
        """Remove everything this host's datapath put in the kernel: filters, the injection
        veth, the tunnel device it created, our filter on the underlay NIC, the pins."""
        self._ports.detach_all()
        self._tunnel.destroy()
        self._upcalls.remove_injection()
        self.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    def __enter__(self) -> BpfDatapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ct_entry(raw: bytes) -> CtEntry:
    exp, ref, flags, _ = abi.CT_ENTRY.unpack(raw)
    reply, closing = bool(flags & abi.CTF_REPLY), bool(flags & abi.CTF_CLOSING)
    return CtEntry(reply, closing, exp / 1e9, ref / 1e9)


__all__ = ["BpfDatapath"]
