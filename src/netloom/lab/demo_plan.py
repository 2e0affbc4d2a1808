"""The demo's plan: two tenants' networks, five VMs and where each runs, and the demo's fixed
ports and timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from netloom.errors import InvalidInput

MIN_HOSTS, MAX_HOSTS = 2, 9
MIN_GATEWAYS, MAX_GATEWAYS = 1, 6
FLOATING_VM = "a1"  # the VM the external host reaches by its floating IP
SNAT_VM = "a2"  # a VM without one: it reaches the external host through SNAT
NORTH_PORT = 8080  # the TCP port of the north-south probes
BGP_TIMEOUT = 30.0  # from the plan applied to every session established
SPREAD_FLOWS = 60  # flows whose path the upstream's multipath hash is asked for
IPERF_PORT = 5201  # iperf3's default port, the one the security group opens
SSH_PORT = 22  # the port the security group drops
IPERF_SECONDS = 3
CONNECT_TIMEOUT = 2.0
DHCP_TIMEOUT = 20.0
ALIVE_TIMEOUT = 30.0


@dataclass(frozen=True)
class NetPlan:
    key: str
    tenant: str
    cidr: str
    gateway: str


@dataclass(frozen=True)
class VmPlan:
    key: str  # a1, b1 ...
    tenant: str
    host: int  # host index (1-based)
    net: str  # NetPlan.key
    ip: str
    sg: bool = False


def plan_networks() -> list[NetPlan]:
    return [
        NetPlan("A-net1", "A", "10.0.1.0/24", "10.0.1.1"),
        NetPlan("A-net2", "A", "10.0.2.0/24", "10.0.2.1"),
        NetPlan("B-net", "B", "10.0.1.0/24", "10.0.1.1"),  # the same prefix as A-net1
    ]


def plan_vms(hosts: int) -> list[VmPlan]:
    """Four tenant-A VMs, two per bridge on different hosts, and one tenant-B VM holding the same
    address as a1 on a1's host (the strongest isolation case: same IP, same host)."""
    check_hosts(hosts)
    return [
        VmPlan("a1", "A", 1, "A-net1", "10.0.1.10"),
        VmPlan("a2", "A", 2, "A-net1", "10.0.1.11"),
        VmPlan("a3", "A", 2 if hosts >= 3 else 1, "A-net2", "10.0.2.10"),
        VmPlan("a4", "A", hosts, "A-net2", "10.0.2.11", sg=True),
        VmPlan("b1", "B", 1, "B-net", "10.0.1.10"),
    ]


def check_gateways(gateways: int) -> int:
    if not MIN_GATEWAYS <= gateways <= MAX_GATEWAYS:
        raise InvalidInput(
            f"--gateways must be {MIN_GATEWAYS}..{MAX_GATEWAYS}, not {gateways}",
            field="gateways",
        )
    return gateways


def check_hosts(hosts: int) -> int:
    if not MIN_HOSTS <= hosts <= MAX_HOSTS:
        raise InvalidInput(
            f"--hosts must be {MIN_HOSTS}..{MAX_HOSTS}, not {hosts} (the demo "
            "spreads VMs over at least two hosts)",
            field="hosts",
        )
    return hosts


__all__ = [
    "ALIVE_TIMEOUT",
    "BGP_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DHCP_TIMEOUT",
    "FLOATING_VM",
    "IPERF_PORT",
    "IPERF_SECONDS",
    "MAX_GATEWAYS",
    "MAX_HOSTS",
    "MIN_GATEWAYS",
    "MIN_HOSTS",
    "NORTH_PORT",
    "SNAT_VM",
    "SPREAD_FLOWS",
    "SSH_PORT",
    "NetPlan",
    "VmPlan",
    "check_gateways",
    "check_hosts",
    "plan_networks",
    "plan_vms",
]
