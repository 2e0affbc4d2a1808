"""The setups ``netloom bench perf`` compares, and the protocol an overlay setup implements.

A setup builds a client and a server endpoint in network namespaces, keeps them up for the
whole benchmark (the setups are interleaved, so all of them are up at once), and removes
everything it made, pass or fail. Every setup names its namespaces ``nlb-<random>-...`` so two
runs (or a run and a crashed earlier one) never collide, and :meth:`Setup.down` is idempotent
and also undoes a half-finished :meth:`Setup.up`.

Baselines defined here:

* ``bare``: two host namespaces on the underlay (below), host to host, MTU as given: what
  "bare metal" means on one machine (the whitepaper's first column).
* ``kernel-vxlan``: what a user would otherwise pick: two "host" namespaces on an underlay
  (see below), each host with a Linux bridge, a unicast VXLAN device (RFC 7348, UDP 4789)
  towards the other host and a VM namespace attached by veth to that bridge. The VMs share
  one L2 tenant subnet (10.x, inside the VM namespaces only) and have MTU = underlay MTU - 50,
  the VXLAN overhead, so no packet is ever fragmented outside. Offloads stay at the
  kernel's defaults, as a user would have them.

The underlay of the two-host setups (``--underlay``):

* ``direct`` (the default): the hosts' tunnel NICs are one plain veth, and so are bare's two
  hosts, so a ratio to bare measures the overlay and nothing else. The netloom lab keeps its
  management switch for the API and agents; only the tunnels take the direct cable.
* ``switch``: the tunnels cross the lab's underlay switch namespace (a Linux bridge,
  192.0.2.0/24, RFC 5737), one more veth and a bridge hop each way; bare's two hosts cross a
  switch built the same way (host to host vs VM to VM over the same kind of switch, the
  MidoNet report's comparison).

``overlay`` / ``overlay-fip`` are :mod:`netloom.bench.perf.overlay_setup`; every setup by name
is in :mod:`netloom.bench.perf.catalog`.
"""

from __future__ import annotations

import abc
import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from netloom.errors import NetloomError, SetupUnavailable
from netloom.lab import netns, nsexec
from netloom.lab.addressing import (
    HOST_IP_BASE,
    SWITCH_IP,
    TUNNEL_NET,
    UNDERLAY,
    VXLAN_OVERHEAD,
)

VXLAN_PORT = 4789  # IANA-assigned VXLAN port (RFC 7348 §5)
VXLAN_VNI = 4242
UNDERLAY_PREFIX = UNDERLAY.prefixlen
# the lab's plan: host N has HOST_IP_BASE + N on the underlay and on the tunnel cable
HOST_IPS = (
    str(UNDERLAY.network_address + HOST_IP_BASE + 1),
    str(UNDERLAY.network_address + HOST_IP_BASE + 2),
)
VM_IPS = ("10.78.0.1", "10.78.0.2")  # the tenant subnet, inside the VM namespaces only
TENANT_PREFIX = 24
TUNNEL_IPS = (
    str(TUNNEL_NET.network_address + HOST_IP_BASE + 1),
    str(TUNNEL_NET.network_address + HOST_IP_BASE + 2),
)
UNDERLAYS = ("direct", "switch")
# what Setup.observe reports, summed over a setup's agents: counters (grow) and levels (now)
OBSERVED_COUNTERS = ("upcalls", "flows_installed", "flows_expired", "state_pushed")
OBSERVED_LEVELS = ("flows", "agent_rss_mb")
OBSERVED = OBSERVED_COUNTERS + OBSERVED_LEVELS


@dataclass(frozen=True)
class Endpoints:
    """Where the tests run: clients in ``client_netns`` connect to ``server_ip``; servers in
    ``server_netns`` listen on all addresses (with a floating IP the server sees its private
    address as destination, so binding ``server_ip`` would be wrong)."""

    client_netns: str
    server_netns: str
    server_ip: str


@runtime_checkable
class Setup(Protocol):
    """One side-by-side configuration of the benchmark."""

    name: str

    def up(self) -> Endpoints:
        """Build everything; on failure, remove what was built and raise."""
        ...

    def down(self) -> None:
        """Remove everything this setup made (idempotent; safe after a failed ``up``)."""
        ...

    def agent_pids(self) -> list[int]:
        """PIDs whose CPU time the harness charges to this setup's control plane (agents);
        empty for the kernel-only baselines."""
        ...

    def upcalls(self) -> int | None:
        """A monotonic counter of datapath upcalls (flow misses sent to an agent), read before
        and after each test; None where there is no such thing."""
        ...

    def observe(self) -> dict[str, float] | None:
        """The agents' counters and sizes now (upcalls, flows installed and expired, flow-state
        pushes, flows held, resident memory: :data:`OBSERVED`); None without agents."""
        ...


def new_prefix() -> str:
    """``nlb-<6 hex>``: unique per setup instance."""
    return f"nlb-{secrets.token_hex(3)}"


@dataclass
class NamespaceSet:
    """Namespaces made by one setup, recorded *before* creation so ``remove`` gets them all."""

    prefix: str
    names: list[str] = field(default_factory=list)

    def add(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        self.names.append(name)
        netns.create(name, may_exist=False)
        return name

    def remove(self) -> None:
        """Stop whatever still runs inside (only we started processes in these freshly made,
        uniquely named namespaces), then delete them, last made first."""
        for name in reversed(self.names):
            _kill_inside(name)
            with contextlib.suppress(NetloomError, OSError):
                netns.delete(name)
        self.names.clear()


def _kill_inside(ns: str, grace: float = 2.0) -> None:
    try:
        pids = nsexec.pids_in(ns)
    except NetloomError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and nsexec.pids_in(ns):
            time.sleep(0.05)
        pids = nsexec.pids_in(ns)
        if not pids:
            return


def cable(
    ns: NamespaceSet, hosts: tuple[str, str], mtu: int, underlay: str, switch_role: str
) -> tuple[str, str]:
    """Each host's ``eth0`` on the underlay; the two hosts' addresses on it. ``direct``: one
    veth between the hosts; ``switch``: a switch namespace ``<prefix>-<switch_role>`` built as
    the lab's (:meth:`netloom.lab.plumbing.Plumbing.underlay`: a bridge that skips the
    netfilter hooks, one veth per host)."""
    if underlay == "direct":
        netns.create_veth(hosts[0], "eth0", hosts[1], "eth0", mtu=mtu, may_exist=False)
        for host, ip in zip(hosts, TUNNEL_IPS, strict=True):
            netns.add_address(host, "eth0", f"{ip}/{UNDERLAY_PREFIX}")
        return TUNNEL_IPS
    switch = ns.add(switch_role)
    netns.disable_bridge_netfilter(switch)
    netns.create_bridge(switch, "br0", mtu=mtu, may_exist=False)
    netns.add_address(switch, "br0", f"{SWITCH_IP}/{UNDERLAY_PREFIX}")
    for i, host in enumerate(hosts):
        port = f"p{i + 1}"
        netns.create_veth(switch, port, host, "eth0", mtu=mtu, may_exist=False)
        netns.set_master(switch, port, "br0")
        netns.add_address(host, "eth0", f"{HOST_IPS[i]}/{UNDERLAY_PREFIX}")
    return HOST_IPS


class NamespaceSetup(abc.ABC):
    """Common ``up``/``down`` plumbing: build in ``_build``; undo everything on failure."""

    name: str

    def __init__(self, mtu: int, underlay: str = "direct") -> None:
        if underlay not in UNDERLAYS:
            raise SetupUnavailable(f"unknown underlay {underlay!r}; known: {', '.join(UNDERLAYS)}")
        self.mtu = mtu
        self.underlay = underlay
        self.ns = NamespaceSet(new_prefix())

    @abc.abstractmethod
    def _build(self) -> Endpoints:
        """Create the namespaces (through ``self.ns.add``) and links; the endpoints."""

    def up(self) -> Endpoints:
        try:
            return self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        self.ns.remove()

    def agent_pids(self) -> list[int]:
        return []

    def upcalls(self) -> int | None:
        return None

    def observe(self) -> dict[str, float] | None:
        return None

    @property
    def namespaces(self) -> list[str]:
        return list(self.ns.names)


class BareSetup(NamespaceSetup):
    """Two host namespaces on the underlay, host to host: the baseline every ratio is taken
    against. ``direct``: one plain veth; ``switch``: each host's ``eth0`` on the lab switch
    (:func:`cable`), the same cable the two-host setups' tunnels take."""

    name = "bare"

    def _build(self) -> Endpoints:
        client, server = self.ns.add("bare-c"), self.ns.add("bare-s")
        ips = cable(self.ns, (client, server), self.mtu, self.underlay, "bare-sw")
        return Endpoints(client, server, ips[1])


class KernelVxlanSetup(NamespaceSetup):
    """Linux bridge + unicast VXLAN between two host namespaces on the underlay."""

    name = "kernel-vxlan"

    @property
    def vm_mtu(self) -> int:
        return self.mtu - VXLAN_OVERHEAD

    def _build(self) -> Endpoints:
        hosts = [self.ns.add(f"kv-h{i + 1}") for i in range(2)]
        ips = cable(self.ns, (hosts[0], hosts[1]), self.mtu, self.underlay, "kv-sw")
        vms = [self.ns.add(f"kv-h{i + 1}-vm") for i in range(2)]
        for i, host in enumerate(hosts):
            self._host_bridge(host, local=ips[i], remote=ips[1 - i])
            netns.create_veth(host, "vm", vms[i], "eth0", mtu=self.vm_mtu, may_exist=False)
            netns.set_master(host, "vm", "br0")
            netns.add_address(vms[i], "eth0", f"{VM_IPS[i]}/{TENANT_PREFIX}")
        return Endpoints(vms[0], vms[1], VM_IPS[1])

    def _host_bridge(self, host: str, *, local: str, remote: str) -> None:
        """``br0`` with ``vx0``: a unicast VXLAN whose flood/unknown destination is the other
        host, so ARP and unknown unicast reach it without multicast (RFC 7348 §4.2 allows a
        configured remote in place of the multicast group)."""
        netns.create_bridge(host, "br0", mtu=self.vm_mtu, may_exist=False)
        nsexec.run(
            host,
            [
                "ip",
                "link",
                "add",
                "vx0",
                "mtu",
                str(self.vm_mtu),
                "type",
                "vxlan",
                "id",
                str(VXLAN_VNI),
                "local",
                local,
                "remote",
                remote,
                "dstport",
                str(VXLAN_PORT),
                "dev",
                "eth0",
            ],
        )
        netns.set_master(host, "vx0", "br0")
        netns.set_link(host, "vx0", up=True)


__all__ = [
    "OBSERVED",
    "OBSERVED_COUNTERS",
    "OBSERVED_LEVELS",
    "UNDERLAYS",
    "BareSetup",
    "Endpoints",
    "KernelVxlanSetup",
    "NamespaceSet",
    "NamespaceSetup",
    "Setup",
    "cable",
    "new_prefix",
]
