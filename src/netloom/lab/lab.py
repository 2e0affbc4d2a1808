"""The namespace lab: hosts, VMs, an underlay switch and the cluster, on one machine.

Layout of a lab named ``L``::

    netns L-sw     bridge br0 192.0.2.1/24  ── the underlay switch; the cluster runs here
      ├─ h1 ═══ eth0 192.0.2.11/24   netns L-h1     (agent; VM veths Lh1v1, Lh1v2 ...)
      │                                  └─ Lh1v1 ═══ eth0 10.0.0.10/24  netns L-h1-vm1
      └─ h2 ═══ eth0 192.0.2.12/24   netns L-h2  ...

Where the cluster runs, and why: inside the switch namespace, listening on the bridge's
underlay address (API ``http://192.0.2.1:8181``, topology ``192.0.2.1:8182``). Agents in host
namespaces then reach it over the underlay like real hypervisors reach a controller, no lab
traffic touches the root namespace (no veth into it, no routes, no port forward), fixed ports
cannot collide between labs (each has its own namespace), and a ZooKeeper ensemble for
``--store zookeeper`` lives on the switch namespace's loopback next to it. The CLI in the root
namespace talks to the API by opening its sockets inside the switch namespace (setns on the
calling thread, :class:`NetnsApiClient`); a person does the same with
``nsenter --net=/run/netns/L-sw netloom host list --api http://192.0.2.1:8181``.

Everything is recorded in the state file before it is created (:mod:`netloom.lab.state`), so
:func:`down` removes a lab completely also after a crash halfway, and is a no-op when nothing is
left.

:class:`Lab` is a facade over the parts: the plan (:mod:`netloom.lab.plan`, names and
addresses, no I/O), the plumbing (:mod:`netloom.lab.plumbing`, namespaces and cables), the
process supervisor (:mod:`netloom.lab.supervisor`), the cluster (:mod:`netloom.lab.cluster`)
and the default tenant topology (:mod:`netloom.lab.topology_build`).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from netloom.agent.options import DEFAULT_METRICS_PORT, VxlanEncap
from netloom.errors import InvalidInput, LabError, NotFound
from netloom.lab import (
    cluster,
    netns,
    nsexec,
    outside,
    plumbing,
    status,
    supervisor,
    topology_build,
    vms,
)
from netloom.lab.addressing import SWITCH_IP, TENANT_GW
from netloom.lab.cluster import NetnsApiClient
from netloom.lab.plan import (
    AgentTuning,
    LabPlan,
    agent_options,
    assign_floating_ips,
    plan_gateway,
    plan_host,
    plan_uplink,
    plan_vm,
    vm_mtu,
    vm_names,
)
from netloom.lab.state import (
    ClusterRecord,
    HostRecord,
    LabState,
    ProcessRecord,
    StateFile,
    VmRecord,
    check_name,
    list_labs,
    random_name,
    state_path,
)

Store = Literal["sqlite", "zookeeper"]
# the agent without the rest of the CLI: a restarted agent serves flows again within 1 s
AGENT_PROGRAM = (sys.executable, "-m", "netloom.agent")


@dataclass(frozen=True)
class VM:
    """What a test or the CLI needs to use a VM: where it is and how it is plugged."""

    name: str
    netns: str
    host: str
    host_if: str
    mac: str
    ip: str | None


class Lab:
    """One lab, backed by its state file. Build it step by step (``build_underlay``,
    ``add_host``, ``start_cluster``, ``register_hosts``, ``add_vm``, ...) or all at once with
    :meth:`up`; remove it with :meth:`down` (or the module's :func:`down` by name)."""

    def __init__(self, sf: StateFile) -> None:
        self._sf = sf
        self._api: NetnsApiClient | None = None
        self._plumbing = plumbing.Plumbing(sf)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        mtu: int = 1500,
        store: Store = "sqlite",
        tx_off: bool = False,
        root: Path | None = None,
    ) -> Lab:
        """Claim a new lab name (its state file) without creating anything yet."""
        lab = check_name(name) if name else random_name()
        if mtu not in (1500, 9000):
            raise InvalidInput(f"--mtu must be 1500 or 9000, not {mtu}", field="mtu")
        if store not in ("sqlite", "zookeeper"):
            raise InvalidInput(f"--store must be sqlite or zookeeper, not {store}", field="store")
        leftovers = netns.list_netns(f"{lab}-")
        if leftovers and not state_path(lab, root).exists():
            raise InvalidInput(
                f"namespaces {', '.join(leftovers)} exist but lab {lab} has no state file; "
                "they are not ours to reuse: pick another --name",
                field="name",
            )
        base = root or state_path(lab, root).parent
        state = LabState(
            name=lab,
            mtu=mtu,
            store=store,
            tx_off=tx_off,
            dir=str(base / f"{lab}.d"),
            switch_netns=f"{lab}-sw",
            switch_ip=SWITCH_IP,
        )
        return cls(StateFile.claim(state, root))

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> Lab:
        return cls(StateFile.load(name, root))

    @property
    def state(self) -> LabState:
        return self._sf.state

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def dir(self) -> Path:
        return Path(self.state.dir)

    @property
    def vm_mtu(self) -> int:
        return vm_mtu(self.state.mtu)

    def save(self) -> None:
        """Persist the state: called after recording an intention and before acting on it
        (write-ahead), so a crash right after leaves the intention on disk. Public so that
        scenarios built on a lab (demo, benchmarks) record what they add the same way."""
        self._sf.save()

    # -- underlay, hosts, VMs ----------------------------------------------------------------

    def build_underlay(self) -> None:
        """The switch namespace with its bridge, which also carries the control address."""
        self._plumbing.underlay()

    def add_host(self, index: int) -> HostRecord:
        """Host namespace ``<lab>-hN`` with ``eth0`` (192.0.2.(10+N)/24) cabled to the switch."""
        planned = plan_host(self.name, index)
        rec = self._find_host(planned.name)
        if rec is None:
            rec = planned
            self.state.hosts.append(rec)
            self.save()
        self._plumbing.host(rec)
        return rec

    def cable_tunnel_link(self, a: int, b: int) -> None:
        """Give hosts ``a`` and ``b`` a second NIC, ``data0`` (198.51.100.(10+N)/24), cabled
        back to back, and make it their tunnel endpoint: the management traffic (API, topology,
        heartbeats) stays on the switch, the VXLAN traffic between the two takes the direct
        cable, like hypervisors with a separate data network. Call before
        :meth:`register_hosts` and :meth:`start_agents` (both use the tunnel IP)."""
        ha, hb = self._host(f"h{a}"), self._host(f"h{b}")
        if ha is hb:
            raise InvalidInput("a tunnel link needs two different hosts", field="hosts")
        self._plumbing.tunnel_cable(ha, hb)

    def build_outside(self, *, bfd: bool = True) -> None:
        """The upstream router and external host namespaces (:mod:`netloom.lab.outside`);
        ``bfd``: the uplinks' BGP sessions run BFD."""
        outside.build(self._sf, self._plumbing, bfd=bfd)

    def add_gateway(self, index: int) -> HostRecord:
        """Gateway host ``<lab>-gwN`` (eth0 192.0.2.(200+N)/24 on the switch, like a host)
        and its uplink cable ``uplink0`` to the upstream's ``gwN`` (198.19.N.1/24). Call
        after :meth:`build_outside`; :meth:`start_upstream` then peers with it."""
        planned = plan_gateway(self.name, index)
        rec = self._find_host(planned.name)
        if rec is None:
            rec = planned
            self.state.hosts.append(rec)
            self.save()
        self._plumbing.host(rec)
        outside.cable_uplink(self._sf, plan_uplink(self.name, index))
        return rec

    def start_upstream(self) -> int:
        """bird2 in the upstream router with a session per uplink (its PID); a running bird
        is told the new config instead."""
        for p in self.state.processes:
            if p.role == "bird" and supervisor.alive(p):
                outside.reconfigure_bird(self._sf, self._plumbing)
                return p.pid
        return outside.start_bird(self._sf, self._plumbing)

    def add_vm(self, host: str, name: str, *, ip: str | None = None) -> VM:
        """VM namespace ``<lab>-<host>-<name>`` with ``eth0`` (MTU = underlay - 50, the lab's
        MAC) and its peer ``<lab>hNvK`` in the host's namespace. ``ip`` (address/prefix) is
        written into the VM when given."""
        h = self._host(host)
        seq = 1 + sum(1 for v in self.state.vms if v.host == h.name)
        return self._place_vm(plan_vm(self.name, h, name, seq, ip))

    def _place_vm(self, planned: VmRecord) -> VM:
        rec = next((v for v in self.state.vms if v.name == planned.name), None)
        if rec is None:
            rec = planned
            self.state.vms.append(rec)
            self.save()
        self._plumbing.vm(rec)
        return self.vm(rec.name)

    def set_vm_address(self, vm: str, cidr: str, gateway: str | None = TENANT_GW) -> None:
        """Write a static address (and default route) inside the VM: the VM works before any
        DHCP server exists, and a test can pin addresses."""
        self._plumbing.vm_address(self._vm(vm), cidr, gateway)

    def boot_vm(self, port_id: str, host: str, name: str, *, dhcp: bool = True) -> VM:
        """A VM on port ``port_id`` plugged on ``host`` as Nova/os-vif does (its tap named
        after the port), its address by DHCP (:mod:`netloom.lab.vms`)."""
        rec = vms.boot(
            self._sf, self._plumbing, self._host(host), self.api().get("ports", port_id), name
        )
        if dhcp:
            vms.dhcp(self._sf, rec)
        return self.vm(rec.name)

    def remove_vm(self, name: str) -> None:
        vms.remove(self._sf, name)

    def vm(self, name: str) -> VM:
        rec = self._vm(name)
        return VM(
            rec.name,
            rec.netns,
            rec.host,
            rec.host_if,
            rec.mac,
            rec.ip.split("/")[0] if rec.ip else None,
        )

    def vms(self) -> list[VM]:
        return [self.vm(v.name) for v in self.state.vms]

    def netns_of(self, name: str) -> str:
        """The namespace of a VM (as :meth:`vm` finds it), a host (``h1``, ``gw1``), or the
        outside world's ``ext`` (the external host) and ``up`` (the upstream router)."""
        o = self.state.outside
        if o is not None and name in ("ext", "up"):
            return o.external_netns if name == "ext" else o.upstream_netns
        host = self._find_host(name)
        return host.netns if host is not None else self._vm(name).netns

    def _find_host(self, name: str) -> HostRecord | None:
        return next((h for h in self.state.hosts if name in (h.name, h.short)), None)

    def _host(self, name: str) -> HostRecord:
        found = self._find_host(name)
        if found is None:
            raise NotFound(f"lab {self.name} has no host {name}", field="host")
        return found

    def _vm(self, name: str) -> VmRecord:
        for v in self.state.vms:
            if name in (v.name, v.netns) or (v.ip and name == v.ip.split("/")[0]):
                return v
        raise NotFound(f"lab {self.name} has no VM {name}", field="vm")

    # -- cluster -----------------------------------------------------------------------------

    def start_cluster(self, *, timeout: float = 30.0, clusters: int = 1) -> ClusterRecord:
        """``netloom cluster`` inside the switch namespace on the underlay address, with a
        per-lab SQLite file or a 3-node ZooKeeper ensemble (and then ``clusters`` processes);
        returns once the API answers."""
        rec = cluster.cluster_record(self._sf, self._plumbing, clusters)
        self.state.cluster = rec
        self.save()
        cluster.start_cluster(self._sf, self._plumbing, self.api(), timeout)
        return rec

    def api(self) -> NetnsApiClient:
        """A client of the lab's API (connections opened inside the switch namespace)."""
        rec = cluster.require(self.state.cluster, self.name)
        if self._api is None:
            self._api = NetnsApiClient(rec.netns, rec.api_url)
        return self._api

    def register_hosts(self) -> None:
        """One NSDB host per lab host and one VXLAN tunnel zone holding every underlay IP."""
        cluster.register_hosts(self._sf, self.api())

    def default_topology(self, *, static_ip: bool = True) -> None:
        """The default tenant topology (:func:`netloom.lab.topology_build.default_topology`)."""
        topology_build.default_topology(self, static_ip=static_ip)

    # -- agents ------------------------------------------------------------------------------

    def start_agents(
        self,
        program: Sequence[str] = AGENT_PROGRAM,
        *,
        metrics_port: int | None = DEFAULT_METRICS_PORT,
        idle_timeout: float | None = None,
        vxlan_encap: VxlanEncap | None = None,
        tuning: AgentTuning | None = None,
    ) -> None:
        """An agent in every host namespace that has no live one: ``program`` followed by the
        host's :class:`~netloom.agent.options.AgentOptions` (``--host-id``, ``--topology``,
        ``--underlay-ip``, ``--mtu``, ``--datapath``, ``--metrics-port`` ...). The agents are
        recorded for restart (:meth:`supervise`). ``tuning``, when given, replaces the three
        tuning arguments (and says more: conntrack)."""
        tuning = tuning or AgentTuning(metrics_port, idle_timeout, vxlan_encap)
        for h in self.state.hosts:
            if not any(self._agent_alive(p, h) for p in self.state.processes):
                self._start_agent(h, [*program, *agent_options(self.state, h, tuning).to_argv()])
        self.state.agents = "running"
        self.save()

    @staticmethod
    def _agent_alive(p: ProcessRecord, h: HostRecord) -> bool:
        return p.role == "agent" and p.netns == h.netns and supervisor.alive(p)

    def _start_agent(self, h: HostRecord, argv: list[str]) -> None:
        assert h.host_id is not None
        if h.bpf_pin_dir and h.bpf_pin_dir not in self.state.bpf_pins:
            self.state.bpf_pins.append(h.bpf_pin_dir)
            self.save()
        log = self.dir / f"agent-{h.name}.log"
        try:
            _, rec = supervisor.spawn(h.netns, argv, "agent", h.host_id, log, restart=True)
        except OSError as exc:
            raise LabError(f"cannot start the agent of {h.name}: {exc}") from None
        # a dead agent's record gives way to its successor: one agent record per host
        self.state.processes = [
            p for p in self.state.processes if not (p.role == "agent" and p.netns == h.netns)
        ]
        self.state.processes.append(rec)
        self.save()

    def supervise(self, policy: supervisor.RestartPolicy | None = None) -> list[str]:
        """Restart the lab's agents that died, within the restart policy; returns what was
        done. ``netloom lab status`` calls this: no process watches the lab in between."""
        return supervisor.supervise(self._sf, policy)

    # -- all at once -------------------------------------------------------------------------

    def up(
        self,
        hosts: int,
        vms_per_host: int,
        *,
        static_ip: bool = True,
        agents: bool = True,
        agent_program: Sequence[str] = AGENT_PROGRAM,
        datapath: str | None = None,
        gateways: int = 0,
        floating_ips: int | None = None,
        bfd: bool = True,
        clusters: int = 1,
    ) -> None:
        """Build the whole lab; on any failure the state says ``failed`` and the error (the
        caller decides whether to tear down, see the CLI's ``--keep-on-error``). With
        ``gateways``, also the outside world and a provider router with an uplink per gateway
        host; ``floating_ips`` VMs get one (None: the first VM of each host). ``clusters``:
        cluster processes on the ZooKeeper store."""
        plan = LabPlan.build(self.name, hosts, vms_per_host, gateways)
        if datapath is not None:
            if datapath not in ("memory", "bpf"):
                raise InvalidInput(
                    f"--datapath must be memory or bpf, not {datapath}", field="datapath"
                )
            self.state.datapath = datapath
            self.save()
        try:
            self.build_underlay()
            for h in plan.hosts:
                self.add_host(h.index)
            if plan.gateways:
                self._outside_world(plan, bfd=bfd)
            self.start_cluster(clusters=clusters)
            self.register_hosts()
            for h in plan.hosts:
                for vm in vm_names(vms_per_host):
                    self.add_vm(h.name, vm)
            if plan.gateways:
                assign_floating_ips(self.state.vms, floating_ips)
            self.default_topology(static_ip=static_ip)
            if agents:
                self.start_agents(agent_program)
        except BaseException as exc:
            self.state.phase = "failed"
            self.state.error = str(exc) or type(exc).__name__
            self.save()
            raise
        self.state.phase = "up"
        self.save()

    def _outside_world(self, plan: LabPlan, *, bfd: bool) -> None:
        self.build_outside(bfd=bfd)
        for g in plan.gateways:
            self.add_gateway(g.index)
        self.start_upstream()

    # -- use ---------------------------------------------------------------------------------

    def exec(
        self, vm: str, argv: Sequence[str], *, check: bool = False, timeout: float | None = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return nsexec.run(self._vm(vm).netns, argv, check=check, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """A JSON-able view: what exists, what runs, and what the cluster says about hosts."""
        return status.status(self._sf, self.vm_mtu)

    # -- teardown ----------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything recorded, in reverse dependency order; returns what was removed.
        Safe to repeat and safe after a crash: missing things are skipped."""
        if self._api is not None:
            self._api.close()
            self._api = None
        self.state.phase = "tearing-down"
        self.save()
        removed = supervisor.stop_all(self._sf)
        for h in self.state.hosts:
            removed += plumbing.remove_sidecars(h.netns)
        removed += plumbing.remove(self._sf)
        self._sf.remove()
        return removed


def down(name: str, root: Path | None = None) -> list[str]:
    """Tear down lab ``name``; a lab with no state file is already down (returns [])."""
    try:
        lab = Lab.load(name, root)
    except NotFound:
        return []
    return lab.down()


@contextlib.contextmanager
def running_lab(hosts: int, vms_per_host: int, **kwargs: Any) -> Iterator[Lab]:
    """``with running_lab(2, 2) as lab:`` a lab that is torn down however the block ends."""
    static_ip = kwargs.pop("static_ip", True)
    lab = Lab.create(**kwargs)
    try:
        lab.up(hosts, vms_per_host, static_ip=static_ip)
        yield lab
    finally:
        lab.down()


def labs(root: Path | None = None) -> list[str]:
    return list_labs(root)


__all__ = [
    "AGENT_PROGRAM",
    "VM",
    "Lab",
    "down",
    "labs",
    "running_lab",
]
