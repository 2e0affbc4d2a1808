"""Kernel plumbing for many VMs at once: namespaces in one ``ip -batch``, veths and addresses
over one netlink socket per namespace, and the count of veths carrying a BPF program."""

from __future__ import annotations

import ipaddress
import subprocess

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netloom.errors import DatapathError
from netloom.lab import netns
from netloom.lab.state import VmRecord
from netloom.netns import netns_path

TC_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): clsact's ingress hook


def create_namespaces(names: list[str]) -> None:
    """All namespaces with one ``ip -batch`` process (pyroute2 forks a helper per namespace).
    ``ip netns add`` makes /run/netns a shared mount point as ``ip netns`` always does."""
    leftovers = [n for n in names if netns.exists(n)]
    if leftovers:
        raise DatapathError(f"namespaces already exist: {', '.join(leftovers[:5])}")
    script = "".join(f"netns add {netns.check_ns_name(n)}\n" for n in names)
    done = subprocess.run(
        ["ip", "-batch", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise DatapathError(f"ip netns add: {done.stderr.strip()[-300:]}")


def _socket_in(ns: str) -> IPRoute:
    """A netlink socket bound to ``ns``: created while this thread is inside (setns), it stays
    there afterwards, without pyroute2's forked netns helper."""
    with netns.entered(ns):
        return IPRoute()


def plug_veths(host_ns: str, recs: list[VmRecord], mtu: int) -> None:
    """Each VM's veth, created in the host namespace with its peer directly in the VM's
    namespace (nothing ever appears in the root namespace), host end up with ``mtu``."""
    ipr = _socket_in(host_ns)
    try:
        for r in recs:
            try:
                ipr.link(
                    "add",
                    ifname=r.host_if,
                    kind="veth",
                    peer={"ifname": r.vm_if, "net_ns_fd": str(netns_path(r.netns))},
                )
                idx = ipr.link_lookup(ifname=r.host_if)[0]
                ipr.link("set", index=idx, mtu=mtu, state="up")
            except NetlinkError as exc:
                raise DatapathError(f"veth {r.host_if} in {host_ns}: {exc}") from None
    finally:
        ipr.close()


def configure_vm(rec: VmRecord, mtu: int, gateway: str) -> None:
    """Inside the VM: loopback up, eth0 with the lab's MAC and MTU, its address and a default
    route via the bridge's router port."""
    assert rec.ip is not None
    iface = ipaddress.IPv4Interface(rec.ip)
    ipr = _socket_in(rec.netns)
    try:
        lo = ipr.link_lookup(ifname="lo")[0]
        eth = ipr.link_lookup(ifname=rec.vm_if)[0]
        ipr.link("set", index=lo, state="up")
        ipr.link("set", index=eth, address=rec.mac, mtu=mtu, state="up")
        ipr.addr("add", index=eth, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
    except (NetlinkError, IndexError) as exc:
        raise DatapathError(f"configuring {rec.name}: {exc}") from None
    finally:
        ipr.close()


def count_bpf_attached(ns: str, ifnames: list[str]) -> int:
    """How many of ``ifnames`` in ``ns`` carry a ``bpf`` filter on clsact ingress (one netlink
    dump per interface, no ``tc`` process: ``tc -n`` would also remount /sys)."""
    n = 0
    with netns.iproute(ns) as ipr:
        for ifname in ifnames:
            idx = ipr.link_lookup(ifname=ifname)
            if not idx:
                continue
            try:
                filters = ipr.get_filters(index=idx[0], parent=TC_INGRESS)
            except Exception:  # no clsact qdisc yet: netlink says EINVAL
                continue
            n += any(f.get("TCA_KIND") == "bpf" for f in filters)
    return n


__all__ = ["configure_vm", "count_bpf_attached", "create_namespaces", "plug_veths"]
