"""The lab's namespace plumbing: namespaces, the switch's bridge, cables (veth pairs) and
addresses, created from the plan's records. Each resource is written to the state file before
it is created (write-ahead, :mod:`netloom.lab.state`), and :func:`remove` deletes whatever is
recorded."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from netloom.errors import DatapathError
from netloom.lab import netns, nsexec
from netloom.lab.addressing import TUNNEL_IF, TUNNEL_NET, UNDERLAY
from netloom.lab.plan import sidecar_ns_prefix, tunnel_ip, vm_mtu
from netloom.lab.state import HostRecord, StateFile, VmRecord


class Plumbing:
    """Creates the recorded namespaces and links of one lab."""

    def __init__(self, sf: StateFile) -> None:
        self._sf = sf

    def make_dir(self, path: Path) -> Path:
        state = self._sf.state
        if str(path) not in state.dirs:
            state.dirs.append(str(path))
            self._sf.save()
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
        return path

    def namespace(self, name: str) -> None:
        state = self._sf.state
        if name not in state.netns:
            state.netns.append(name)
            self._sf.save()
        netns.create(name)

    def underlay(self) -> None:
        """The switch namespace with its bridge, which also carries the control address. The
        switch stands for a physical one: its bridge skips the netfilter hooks."""
        s = self._sf.state
        self.make_dir(Path(s.dir))
        self.namespace(s.switch_netns)
        netns.disable_bridge_netfilter(s.switch_netns)
        netns.create_bridge(s.switch_netns, s.switch_bridge, mtu=s.mtu)
        netns.add_address(s.switch_netns, s.switch_bridge, f"{s.switch_ip}/{UNDERLAY.prefixlen}")

    def host(self, rec: HostRecord) -> None:
        """The host's namespace and its ``eth0`` cabled to a port of the switch's bridge."""
        s = self._sf.state
        self.namespace(rec.netns)
        netns.create_veth(s.switch_netns, rec.switch_port, rec.netns, rec.underlay_if, mtu=s.mtu)
        netns.set_master(s.switch_netns, rec.switch_port, s.switch_bridge)
        netns.add_address(rec.netns, rec.underlay_if, f"{rec.underlay_ip}/{UNDERLAY.prefixlen}")

    def tunnel_cable(self, ha: HostRecord, hb: HostRecord) -> None:
        """``data0`` in both hosts, cabled back to back, with the hosts' tunnel addresses."""
        for h in (ha, hb):
            if h.tunnel_ip is None:
                h.tunnel_ip = tunnel_ip(h.index)
        self._sf.save()
        netns.create_veth(ha.netns, TUNNEL_IF, hb.netns, TUNNEL_IF, mtu=self._sf.state.mtu)
        for h in (ha, hb):
            netns.add_address(h.netns, TUNNEL_IF, f"{h.tunnel_ip}/{TUNNEL_NET.prefixlen}")

    def vm(self, rec: VmRecord) -> None:
        """The VM's namespace, its ``eth0`` (the lab's MAC, MTU = underlay - 50) and the
        peer in the host."""
        s = self._sf.state
        netns.check_ns_name(rec.netns)
        self.namespace(rec.netns)
        netns.create_veth(rec.host, rec.host_if, rec.netns, rec.vm_if, mtu=vm_mtu(s.mtu))
        netns.set_link(rec.netns, rec.vm_if, mac=rec.mac)
        if s.tx_off:
            nsexec.set_offload(rec.netns, rec.vm_if, "tx", on=False)

    def vm_address(self, rec: VmRecord, cidr: str, gateway: str | None) -> None:
        netns.add_address(rec.netns, rec.vm_if, cidr)
        if gateway is not None:
            netns.add_default_route(rec.netns, gateway)
        if rec.ip != cidr:
            rec.ip = cidr
            self._sf.save()


def remove(sf: StateFile) -> list[str]:
    """Delete the recorded namespaces, BPF pins and directories (processes first: see
    :func:`netloom.lab.supervisor.stop_all`); what was already gone is skipped."""
    removed: list[str] = []
    for ns in reversed(sf.state.netns):
        if netns.delete(ns):
            removed.append(f"netns {ns}")
    for pin in sf.state.bpf_pins:
        if _remove_tree(Path(pin)):
            removed.append(f"bpf {pin}")
    for d in sorted(sf.state.dirs, key=len, reverse=True):
        if _remove_tree(Path(d)):
            removed.append(f"dir {d}")
    return removed


def remove_sidecars(host_netns: str) -> list[str]:
    """Delete the uplink sidecars' namespaces of the agent in ``host_netns`` (and kill what
    still runs there): a SIGKILLed agent leaves them behind (its bird dies with it)."""
    removed: list[str] = []
    for ns in netns.list_netns(sidecar_ns_prefix(host_netns)):
        for pid in nsexec.pids_in(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if netns.delete(ns):
            removed.append(f"netns {ns}")
    return removed


def _remove_tree(path: Path) -> bool:
    """Remove a directory tree (bpffs pins are unlinked like files); False if it was gone."""
    if not path.exists():
        return False
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    if path.exists():
        raise DatapathError(f"cannot remove {path}")
    return True


__all__ = ["Plumbing", "remove", "remove_sidecars"]
