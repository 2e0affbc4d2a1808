"""The lab's plan: names, addresses, MACs, which VM on which host, and each agent's command
line. Pure functions of the lab's name and size (no namespace, no file, no process), so the
layout can be checked without root; :mod:`netloom.lab.plumbing` builds it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from netloom.agent.options import DEFAULT_METRICS_PORT, AgentOptions, DatapathKind, VxlanEncap
from netloom.errors import InvalidInput
from netloom.lab.addressing import (
    HOST_IP_BASE,
    MAX_HOSTS,
    MAX_VMS_PER_HOST,
    TENANT_NET,
    TUNNEL_NET,
    UNDERLAY,
    VM_IP_BASE,
    VXLAN_OVERHEAD,
)
from netloom.lab.netns import check_ifname
from netloom.lab.state import HostRecord, LabState, VmRecord


def host_name(lab: str, index: int) -> str:
    return f"{lab}-h{index}"


def host_ip(index: int) -> str:
    return str(UNDERLAY.network_address + HOST_IP_BASE + index)


def tunnel_ip(index: int) -> str:
    """Host ``index``'s address on the separate tunnel cable (``Lab.cable_tunnel_link``)."""
    return str(TUNNEL_NET.network_address + HOST_IP_BASE + index)


def tenant_ip(slot: int) -> str:
    """The default topology's address/prefix for the ``slot``-th VM of the lab (0-based)."""
    return f"{TENANT_NET.network_address + VM_IP_BASE + slot}/{TENANT_NET.prefixlen}"


def vm_mac(lab: str, host_index: int, seq: int) -> str:
    """A locally administered unicast MAC (first octet 0x02, IEEE 802 "U/L" bit set), stable for
    a lab, host and slot, and distinct between labs (two bytes of a hash of the lab name)."""
    digest = hashlib.sha256(lab.encode()).digest()
    return f"02:{digest[0]:02x}:{digest[1]:02x}:00:{host_index:02x}:{seq:02x}"


def vm_mtu(underlay_mtu: int) -> int:
    return underlay_mtu - VXLAN_OVERHEAD


def check_size(hosts: int, vms_per_host: int) -> None:
    if not 1 <= hosts <= MAX_HOSTS:
        raise InvalidInput(f"--hosts must be 1..{MAX_HOSTS}, not {hosts}", field="hosts")
    if not 0 <= vms_per_host <= MAX_VMS_PER_HOST:
        raise InvalidInput(
            f"--vms-per-host must be 0..{MAX_VMS_PER_HOST}, not {vms_per_host}",
            field="vms_per_host",
        )
    room = TENANT_NET.num_addresses - VM_IP_BASE - 1
    if hosts * vms_per_host > room:
        raise InvalidInput(
            f"{hosts * vms_per_host} VMs do not fit {TENANT_NET} (at most {room})",
            field="vms_per_host",
        )


def plan_host(lab: str, index: int) -> HostRecord:
    """Host namespace ``<lab>-hN`` with ``eth0`` (192.0.2.(10+N)) on switch port ``hN``."""
    if not 1 <= index <= MAX_HOSTS:
        raise InvalidInput(f"host index {index} is outside 1..{MAX_HOSTS}", field="hosts")
    name = host_name(lab, index)
    return HostRecord(
        index=index,
        name=name,
        netns=name,
        underlay_if="eth0",
        underlay_ip=host_ip(index),
        switch_port=f"h{index}",
    )


def plan_vm(lab: str, host: HostRecord, name: str, seq: int, ip: str | None = None) -> VmRecord:
    """VM ``name``, the ``seq``-th (1-based) on ``host``: namespace ``<lab>-hN-<name>``, its
    ``eth0`` with the lab's MAC for that slot, the peer ``<lab>hNvK`` in the host."""
    if not 1 <= seq <= MAX_VMS_PER_HOST:
        raise InvalidInput(
            f"host {host.name} already has {MAX_VMS_PER_HOST} VMs", field="vms_per_host"
        )
    short = f"h{host.index}-{name}"
    return VmRecord(
        name=short,
        netns=f"{lab}-{short}",
        host=host.name,
        host_if=check_ifname(f"{lab}h{host.index}v{seq}"),
        vm_if="eth0",
        mac=vm_mac(lab, host.index, seq),
        ip=ip,
    )


def vm_names(vms_per_host: int) -> list[str]:
    """The VMs of each host in a lab built all at once: ``vm1``, ``vm2`` ..."""
    return [f"vm{k}" for k in range(1, vms_per_host + 1)]


@dataclass(frozen=True)
class LabPlan:
    """A whole lab of ``hosts`` hosts with ``vms_per_host`` VMs each (``vm1``, ``vm2`` ...),
    as :meth:`netloom.lab.lab.Lab.up` builds it."""

    name: str
    hosts: tuple[HostRecord, ...]
    vms: tuple[VmRecord, ...]

    @classmethod
    def build(cls, name: str, hosts: int, vms_per_host: int) -> LabPlan:
        check_size(hosts, vms_per_host)
        hs = tuple(plan_host(name, n) for n in range(1, hosts + 1))
        vms = tuple(
            plan_vm(name, h, vm, seq)
            for h in hs
            for seq, vm in enumerate(vm_names(vms_per_host), 1)
        )
        return cls(name, hs, vms)


@dataclass(frozen=True)
class AgentTuning:
    """What a caller may choose about the lab's agents; the rest comes from the lab."""

    metrics_port: int | None = DEFAULT_METRICS_PORT
    idle_timeout: float | None = None
    vxlan_encap: VxlanEncap | None = None
    kernel_conntrack: bool = True
    conntrack_size: int | None = None
    conntrack_lifetimes: str | None = None  # ESTABLISHED:CLOSING:OTHER seconds


def agent_options(state: LabState, host: HostRecord, tuning: AgentTuning) -> AgentOptions:
    """The agent of ``host``: its host id, the lab's topology service, its tunnel address, the
    lab's datapath and MTU, metrics on :data:`DEFAULT_METRICS_PORT` unless tuned otherwise."""
    if state.cluster is None or host.host_id is None:
        raise InvalidInput(f"host {host.name} is not registered with a cluster", field="host")
    base = AgentOptions(topology=state.cluster.topology)
    return AgentOptions(
        topology=state.cluster.topology,
        host_id=host.host_id,
        datapath=DatapathKind(state.datapath) if state.datapath else base.datapath,
        underlay_ip=host.tunnel_ip or host.underlay_ip,
        metrics_port=tuning.metrics_port,
        idle_timeout=base.idle_timeout if tuning.idle_timeout is None else tuning.idle_timeout,
        mtu=state.mtu,
        vxlan_encap=tuning.vxlan_encap or base.vxlan_encap,
        kernel_conntrack=tuning.kernel_conntrack,
        conntrack_size=tuning.conntrack_size or base.conntrack_size,
        conntrack_lifetimes=tuning.conntrack_lifetimes or base.conntrack_lifetimes,
    )


__all__ = [
    "AgentTuning",
    "LabPlan",
    "agent_options",
    "check_size",
    "host_ip",
    "host_name",
    "plan_host",
    "plan_vm",
    "tenant_ip",
    "tunnel_ip",
    "vm_mac",
    "vm_mtu",
    "vm_names",
]
