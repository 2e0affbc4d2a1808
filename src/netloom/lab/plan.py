"""The lab's plan: names, addresses, MACs, which VM on which host, and each agent's command
line. Pure functions of the lab's name and size (no namespace, no file, no process), so the
layout can be checked without root; :mod:`netloom.lab.plumbing` builds it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from netloom.agent.options import DEFAULT_METRICS_PORT, AgentOptions, DatapathKind, VxlanEncap
from netloom.errors import InvalidInput
from netloom.lab.addressing import (
    BFD_INTERVAL_MS,
    BFD_MULTIPLIER,
    BGP_HOLD_TIME,
    BGP_KEEPALIVE,
    EXTERNAL_GW,
    EXTERNAL_NET,
    FLOATING_IP_BASE,
    GATEWAY_AS,
    GATEWAY_IP_BASE,
    GATEWAY_PORT_HOST,
    HOST_IP_BASE,
    MAX_EDGE_ROUTERS,
    MAX_GATEWAYS,
    MAX_HOSTS,
    MAX_VMS_PER_HOST,
    PUBLIC_NET,
    SNAT_IP_BASE,
    TENANT_NET,
    TRANSIT_NET,
    TRANSIT_PREFIXLEN,
    TUNNEL_NET,
    UNDERLAY,
    UPLINK_IF,
    UPLINK_PREFIXLEN,
    UPLINKS,
    UPSTREAM_AS,
    UPSTREAM_HOST,
    VM_IP_BASE,
    VXLAN_OVERHEAD,
)
from netloom.lab.netns import check_ifname
from netloom.lab.state import HostRecord, LabState, OutsideRecord, UplinkRecord, VmRecord
from netloom.lab.upstream import UpstreamConfig, UpstreamPeer


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
    """A whole lab of ``hosts`` hosts with ``vms_per_host`` VMs each (``vm1``, ``vm2`` ...)
    and ``gateways`` gateway hosts, as :meth:`netloom.lab.lab.Lab.up` builds it."""

    name: str
    hosts: tuple[HostRecord, ...]
    vms: tuple[VmRecord, ...]
    gateways: tuple[HostRecord, ...] = ()
    uplinks: tuple[UplinkRecord, ...] = ()

    @classmethod
    def build(cls, name: str, hosts: int, vms_per_host: int, gateways: int = 0) -> LabPlan:
        check_size(hosts, vms_per_host)
        check_gateways(gateways)
        hs = tuple(plan_host(name, n) for n in range(1, hosts + 1))
        vms = tuple(
            plan_vm(name, h, vm, seq)
            for h in hs
            for seq, vm in enumerate(vm_names(vms_per_host), 1)
        )
        gws = tuple(plan_gateway(name, g) for g in range(1, gateways + 1))
        return cls(name, hs, vms, gws, tuple(plan_uplink(name, g) for g in range(1, gateways + 1)))


# -- gateways and the outside world ------------------------------------------------------------


def check_gateways(gateways: int) -> None:
    if not 0 <= gateways <= MAX_GATEWAYS:
        raise InvalidInput(
            f"--gateways must be 0..{MAX_GATEWAYS}, not {gateways}", field="gateways"
        )


def gateway_name(lab: str, index: int) -> str:
    return f"{lab}-gw{index}"


def sidecar_ns_prefix(host_netns: str) -> str:
    """What the uplink sidecars' namespaces of the agent in ``host_netns`` start with: the
    host's own namespace name, so the lab finds exactly its own sidecars."""
    return f"{host_netns}-sc-"


def plan_gateway(lab: str, index: int) -> HostRecord:
    """Gateway host ``<lab>-gwG`` with ``eth0`` (192.0.2.(200+G)) on switch port ``gwG``: a
    host like the others (an agent, a tunnel endpoint), plus an uplink."""
    if not 1 <= index <= MAX_GATEWAYS:
        raise InvalidInput(f"gateway index {index} is outside 1..{MAX_GATEWAYS}", field="gateways")
    name = gateway_name(lab, index)
    return HostRecord(
        index=index,
        role="gateway",
        name=name,
        netns=name,
        underlay_if="eth0",
        underlay_ip=str(UNDERLAY.network_address + GATEWAY_IP_BASE + index),
        switch_port=f"gw{index}",
    )


def uplink_net(index: int) -> str:
    """Uplink G's subnet, 198.19.G.0/24."""
    return f"{UPLINKS.network_address + (index << 8)}/{UPLINK_PREFIXLEN}"


def plan_uplink(lab: str, index: int) -> UplinkRecord:
    """Gateway G's cable: ``uplink0`` in the gateway host (no address: the router port that
    is bound to it owns 198.19.G.2), ``gwG`` (198.19.G.1) in the upstream router."""
    net = UPLINKS.network_address + (index << 8)
    return UplinkRecord(
        index=index,
        host=gateway_name(lab, index),
        host_if=UPLINK_IF,
        upstream_if=f"gw{index}",
        port_address=f"{net + GATEWAY_PORT_HOST}/{UPLINK_PREFIXLEN}",
        upstream_address=f"{net + UPSTREAM_HOST}/{UPLINK_PREFIXLEN}",
    )


def plan_outside(lab: str, lab_dir: str, *, bfd: bool = True) -> OutsideRecord:
    """The upstream router ``<lab>-up`` and the external host ``<lab>-ext``; bird's files
    under the lab's directory."""
    base = f"{lab_dir}/upstream"
    return OutsideRecord(
        upstream_netns=f"{lab}-up",
        external_netns=f"{lab}-ext",
        upstream_as=UPSTREAM_AS,
        gateway_as=GATEWAY_AS,
        bfd=bfd,
        bird_conf=f"{base}/bird.conf",
        bird_socket=f"{base}/bird.ctl",
        bird_pid_file=f"{base}/bird.pid",
    )


def upstream_config(outside: OutsideRecord, uplinks: list[UplinkRecord]) -> UpstreamConfig:
    """The upstream's bird2 config: a session per uplink; announces a default route and the
    external net, accepts the public range."""
    return UpstreamConfig(
        router_id=EXTERNAL_GW,
        local_as=outside.upstream_as,
        peers=tuple(
            UpstreamPeer(
                name=u.upstream_if,
                address=u.port_address.split("/")[0],
                local_address=u.upstream_address.split("/")[0],
                asn=outside.gateway_as,
                bfd=outside.bfd,
            )
            for u in uplinks
        ),
        announce=("0.0.0.0/0", str(EXTERNAL_NET)),
        accept=(str(PUBLIC_NET),),
        hold_time=BGP_HOLD_TIME,
        keepalive=BGP_KEEPALIVE,
        bfd_interval_ms=BFD_INTERVAL_MS,
        bfd_multiplier=BFD_MULTIPLIER,
    )


def snat_ip(router: int) -> str:
    """The public (SNAT) address of the ``router``-th (1-based) tenant router linked to the
    provider router: 203.0.113.K."""
    _check_edge(router)
    return str(PUBLIC_NET.network_address + SNAT_IP_BASE + router)


def floating_ip(slot: int) -> str:
    """The ``slot``-th (0-based) floating IP: 203.0.113.64, .65 ..."""
    if not 0 <= slot < PUBLIC_NET.num_addresses - FLOATING_IP_BASE - 1:
        raise InvalidInput(f"no floating IP number {slot} in {PUBLIC_NET}", field="floating_ips")
    return str(PUBLIC_NET.network_address + FLOATING_IP_BASE + slot)


def transit_addresses(router: int) -> tuple[str, str]:
    """The link provider router <-> ``router``-th tenant router: (the provider's port address,
    the tenant router's), a /30 of 198.18.128.0/24 each."""
    _check_edge(router)
    base = TRANSIT_NET.network_address + 4 * (router - 1)
    return f"{base + 1}/{TRANSIT_PREFIXLEN}", f"{base + 2}/{TRANSIT_PREFIXLEN}"


def assign_floating_ips(vms: list[VmRecord], count: int | None) -> None:
    """Give the first ``count`` VMs a floating IP each (None: the first VM of every host);
    the others leave through SNAT."""
    if count is None:
        chosen = [v for v in vms if v.name.endswith("-vm1")] or vms[:1]
    elif not 0 <= count <= len(vms):
        raise InvalidInput(
            f"--floating-ips must be 0..{len(vms)} (the lab's VMs), not {count}",
            field="floating_ips",
        )
    else:
        chosen = vms[:count]
    for slot, v in enumerate(chosen):
        v.floating_ip = floating_ip(slot)


def _check_edge(router: int) -> None:
    if not 1 <= router <= MAX_EDGE_ROUTERS:
        raise InvalidInput(
            f"tenant router {router} is outside 1..{MAX_EDGE_ROUTERS}", field="routers"
        )


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
        sidecar_ns_prefix=sidecar_ns_prefix(host.netns),
        state_dir=str(Path(state.dir) / "agents" / host.name),  # its simulation log
    )


__all__ = [
    "AgentTuning",
    "LabPlan",
    "agent_options",
    "assign_floating_ips",
    "check_gateways",
    "check_size",
    "floating_ip",
    "gateway_name",
    "host_ip",
    "host_name",
    "plan_gateway",
    "plan_host",
    "plan_outside",
    "plan_uplink",
    "plan_vm",
    "sidecar_ns_prefix",
    "snat_ip",
    "tenant_ip",
    "transit_addresses",
    "tunnel_ip",
    "uplink_net",
    "upstream_config",
    "vm_mac",
    "vm_mtu",
    "vm_names",
]
