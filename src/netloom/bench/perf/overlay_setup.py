"""The netloom overlay as ``netloom bench perf`` setups: ``overlay`` and ``overlay-fip``.

Each setup is a real :class:`~netloom.lab.lab.Lab`: an underlay switch namespace with the
cluster inside it, two host namespaces each running ``netloom agent --datapath bpf`` (with
``--metrics-port``, the upcall counter), and two VM namespaces, the client on host 1 and the
server on host 2. The tenant topology is the one the whitepaper measured::

    client 10.0.1.10 ── net1 ── router ── net2 ── server 10.0.2.10
       (host 1)        10.0.1.1        10.0.2.1       (host 2)

so every packet crosses a bridge, the router and a bridge again in the simulation, and in the
kernel a VXLAN tunnel between the hosts (VM MTU = underlay MTU - 50, RFC 7348 §5). With
``underlay="direct"`` the tunnels take a cable of their own between the two hosts
(:meth:`~netloom.lab.lab.Lab.cable_tunnel_link`), the same plain veth as bare's; the API and
the agents' control traffic stay on the lab switch.

With ``sg`` (the default) both VM ports carry stateful security groups as a cloud port would
(the bundled plan ``stateful-sg``): Neutron's default group on the client (everything out,
tracked; in: return flows and the tenant's prefix, the rest dropped) and on the server "tcp
from anywhere to the test ports" with return flows and ICMP. Without, the ports have no
filter (the bare topology).

``overlay-fip`` gives the server the floating IP 203.0.113.50 (RFC 5737 documentation range)
the MidoNet way, with NAT rules on the router's chains (inbound: ``reverse-snat``, then
``dnat`` FIP -> private; outbound: ``reverse-dnat``, then ``snat`` private -> FIP). The NAT
rules are *static* (1:1, MidoNet's StaticDnatRule/StaticSnatRule): they keep no per-connection
state and read only the addresses, so one kernel flow per direction covers every connection;
the reverse rules find no stateful NAT on the router and read nothing. The client connects to
the floating IP, so the address rewrite is part of the kernel flows of every test.

Naming: a lab's namespaces are ``<lab>-sw``, ``<lab>-h1`` ...; lab names are ``[a-z0-9]``
only (they prefix interface names, 15 bytes), so the bench's ``nlb-`` prefix becomes a lab
called ``nlb<5 hex>``. Everything is in the lab's write-ahead state file, so :meth:`down`
(and, after a crash, ``netloom lab down --name nlb...``) removes all of it.

Before ``up`` returns, a warm-up TCP handshake crosses the path both ways until it answers:
the harness measures kernel flows, not first packets and ARP resolution.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psutil

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.agent.options import VxlanEncap
from netloom.bench.perf.setups import OBSERVED, UNDERLAYS, Endpoints
from netloom.bench.perf.workloads import TEST_PORTS
from netloom.bench.procs import AGENT_ALIVE_TIMEOUT_S
from netloom.errors import DatapathError, NetloomError, SetupUnavailable
from netloom.lab import probes
from netloom.lab.lab import Lab
from netloom.lab.plan import host_name, vm_mac
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan

UPCALL_METRIC = "netloom_agent_upcalls"
OBSERVED_METRICS = {  # Setup.observe's keys read from the agents' metrics
    "upcalls": UPCALL_METRIC,
    "flows_installed": "netloom_agent_flows_installed",
    "flows_expired": "netloom_agent_flows_expired",
    "state_pushed": "netloom_agent_flow_state_pushed",
    "flows": "netloom_agent_flows",
}
PREFIX = 24
CLIENT_NET, CLIENT_GW, CLIENT_IP = "10.0.1.0/24", "10.0.1.1", "10.0.1.10"
SERVER_NET, SERVER_GW, SERVER_IP = "10.0.2.0/24", "10.0.2.1", "10.0.2.10"
TENANT_PREFIX = "10.0.0.0/16"  # both tenant networks: what the client's default group lets in
FLOATING_IP = "203.0.113.50"  # RFC 5737 TEST-NET-3
WARMUP_TIMEOUT = 20.0
ANSWERED = ("refused", "connected")  # what a TCP handshake gets from a reachable server
LAB_MTUS = (1500, 9000)


@dataclass
class _Ids:
    """NSDB ids of the topology, for the error messages and for nothing else to leak: the
    whole NSDB is dropped with the lab."""

    router: str = ""
    client_port: str = ""
    server_port: str = ""


class OverlaySetup:
    """A two-host netloom lab measured as one bench setup (see the module docstring)."""

    def __init__(
        self,
        fip: bool,
        mtu: int,
        vxlan: str = "bpf",
        underlay: str = "direct",
        *,
        sg: bool = True,
    ) -> None:
        if mtu not in LAB_MTUS:
            raise SetupUnavailable(f"the lab runs at underlay MTU 1500 or 9000, not {mtu}")
        if vxlan not in ("bpf", "device"):
            raise SetupUnavailable(f"unknown VXLAN encapsulation {vxlan!r}")
        if underlay not in UNDERLAYS:
            raise SetupUnavailable(f"unknown underlay {underlay!r}; known: {', '.join(UNDERLAYS)}")
        self.underlay = underlay
        self.sg = sg
        self.fip = fip
        self.mtu = mtu
        self.vxlan = vxlan
        self.name = ("overlay-fip" if fip else "overlay") + ("-vxdev" if vxlan == "device" else "")
        self.lab_name = f"nlb{secrets.token_hex(3)[:5]}"
        self._lab: Lab | None = None
        self._ids = _Ids()

    # -- the Setup protocol ------------------------------------------------------------------

    def up(self) -> Endpoints:
        check_bpf()
        try:
            return self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        if self._lab is not None:
            self._lab.down()
            self._lab = None

    def agent_pids(self) -> list[int]:
        if self._lab is None:
            return []
        return [p.pid for p in self._lab.state.processes if p.role == "agent"]

    def upcalls(self) -> int | None:
        """Upcalls received by both agents (:func:`agents_upcalls`)."""
        if self._lab is None:
            return None
        return agents_upcalls([h.netns for h in self._lab.state.hosts])

    def observe(self) -> dict[str, float] | None:
        """Both agents' counters and resident memory (:func:`agents_observe`)."""
        if self._lab is None:
            return None
        return agents_observe([h.netns for h in self._lab.state.hosts], self.agent_pids())

    @property
    def namespaces(self) -> list[str]:
        return list(self._lab.state.netns) if self._lab is not None else []

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> Endpoints:
        lab = self._lab = Lab.create(self.lab_name, mtu=self.mtu)
        lab.state.datapath = "bpf"  # saved with the next write (write-ahead)
        lab.build_underlay()
        for n in (1, 2):
            lab.add_host(n)
        if self.underlay == "direct":
            lab.cable_tunnel_link(1, 2)
        lab.start_cluster()
        lab.register_hosts()
        client = lab.add_vm(host_name(lab.name, 1), "c")
        server = lab.add_vm(host_name(lab.name, 2), "s")
        self._topology(lab, client.name, server.name)
        lab.set_vm_address(client.name, f"{CLIENT_IP}/{PREFIX}", CLIENT_GW)
        lab.set_vm_address(server.name, f"{SERVER_IP}/{PREFIX}", SERVER_GW)
        lab.start_agents(vxlan_encap=VxlanEncap(self.vxlan))
        self._wait_alive(lab)
        target = FLOATING_IP if self.fip else SERVER_IP
        self._warm_up(lab, lab.vm(client.name).netns, target)
        return Endpoints(lab.vm(client.name).netns, lab.vm(server.name).netns, target)

    def _topology(self, lab: Lab, client_vm: str, server_vm: str) -> None:
        """The bundled plan ``routed-tenants``: a tenant router (with the floating IP's chains
        for ``overlay-fip``), two bridges behind it, a route per subnet, and the two VM ports
        bound to their host-side veths."""
        docs = load_plan("routed-tenants").expand(self._plan_params(lab, client_vm, server_vm))
        applier = Applier(lab.api(), parse_documents(docs))
        applier.run()
        self._ids.router = applier.ids["router-perf"]
        self._ids.client_port = applier.ids[f"port-{client_vm}"]
        self._ids.server_port = applier.ids[f"port-{server_vm}"]

    def _plan_params(self, lab: Lab, client_vm: str, server_vm: str) -> dict[str, Any]:
        nets = (("net1", CLIENT_NET, CLIENT_GW), ("net2", SERVER_NET, SERVER_GW))
        hosts = {h.name: h.host_id for h in lab.state.hosts}
        vms = []
        for key, name, ip in (("net1", client_vm, CLIENT_IP), ("net2", server_vm, SERVER_IP)):
            vm = lab.vm(name)
            vms.append(
                {
                    "key": name,
                    "name": name,
                    "net": key,
                    "mac": vm.mac,
                    "fixed_ips": [ip],
                    "host_id": hosts[vm.host],
                    "host_if": vm.host_if,
                    # inbound = what enters the virtual port from the VM (MidoNet's naming)
                    "inbound_filter": f"@sg-{name}-egress" if self.sg else None,
                    "outbound_filter": f"@sg-{name}-ingress" if self.sg else None,
                }
            )
        return {
            "mtu": lab.vm_mtu,
            "tenants": [
                {
                    "key": "perf",
                    "name": lab.name,
                    "inbound_filter": "@fip-perf-in" if self.fip else None,
                    "outbound_filter": "@fip-perf-out" if self.fip else None,
                }
            ],
            "floating_ips": (
                [{"tenant": "perf", "floating_ip": FLOATING_IP, "fixed_ip": SERVER_IP}]
                if self.fip
                else []
            ),
            "networks": [
                {
                    "key": key,
                    "name": f"{lab.name}-{key}",
                    "tenant": "@tenant-perf",
                    "router": "@router-perf",
                    "cidr": cidr,
                    "gateway": gw,
                    "prefixlen": PREFIX,
                    "router_mac": vm_mac(lab.name, 0, i),
                    "dns_servers": [],
                }
                for i, (key, cidr, gw) in enumerate(nets, start=1)
            ],
            "security_groups": self._groups(client_vm, server_vm) if self.sg else [],
            "vms": vms,
        }

    @staticmethod
    def _groups(client_vm: str, server_vm: str) -> list[dict[str, Any]]:
        """stateful-sg's parameters: Neutron's default group on the client (return flows and
        the tenant's prefix in, everything out, tracked); on the server, tcp from anywhere to
        the test ports, return flows and ICMP."""
        common = {"tenant": "@tenant-perf", "deny_port": None}
        return [
            {
                **common,
                "prefix": f"sg-{client_vm}",
                "allow_ports": [],
                "allow_from": [TENANT_PREFIX],
                "icmp": False,
            },
            {**common, "prefix": f"sg-{server_vm}", "allow_ports": list(TEST_PORTS)},
        ]

    @staticmethod
    def _wait_alive(lab: Lab) -> None:
        """Both agents heartbeating (the cluster's view), else the agents' log tails."""
        api = lab.api()
        deadline = time.monotonic() + AGENT_ALIVE_TIMEOUT_S
        while True:
            alive = {h["name"]: bool(h.get("alive")) for h in api.list("hosts")}
            if alive and all(alive.values()):
                return
            if time.monotonic() > deadline:
                raise DatapathError(
                    f"agents of {', '.join(n for n, a in alive.items() if not a)}"
                    f" not alive after {AGENT_ALIVE_TIMEOUT_S:.0f} s: {_logs(lab)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _warm_up(lab: Lab, client_ns: str, target: str) -> None:
        """TCP handshakes to a test port until the server's side answers (a reset: nothing
        listens yet), so ARP, bindings and the first flows of both directions are in place
        before anything is measured. TCP, not ping: the server's security group lets the
        test ports in, and the answer crosses both hosts' groups as return traffic."""
        deadline = time.monotonic() + WARMUP_TIMEOUT
        while probes.tcp_connect(client_ns, target, TEST_PORTS[0], 0.5) not in ANSWERED:
            if time.monotonic() > deadline:
                raise DatapathError(
                    f"{client_ns} cannot reach {target} through the overlay "
                    f"after {WARMUP_TIMEOUT:.0f} s: {_logs(lab)}"
                )
        for _ in range(3):
            probes.tcp_connect(client_ns, target, TEST_PORTS[0], 1.0)


def check_bpf() -> None:
    """The BPF object compiles (clang, libbpf headers) before anything is built."""
    try:
        from netloom.datapath.bpf import object_path

        object_path()
    except (ImportError, OSError, NetloomError) as exc:
        raise SetupUnavailable(f"the BPF datapath is not available here: {exc}") from None


def _logs(lab: Lab) -> str:
    tails = []
    for p in lab.state.processes:
        if p.role == "agent" and p.log:
            with contextlib.suppress(OSError):
                lines = open(p.log, errors="replace").read().strip().splitlines()  # noqa: SIM115
                tails.append(f"{p.netns}: {' | '.join(lines[-4:])}")
    return "; ".join(tails) or "(no agent log)"


def agents_upcalls(netns: list[str]) -> int | None:
    """Upcalls received by the agents of ``netns`` (``netloom_agent_upcalls``, all reasons),
    read over HTTP inside each namespace; None when an agent does not answer."""
    total = 0.0
    for ns in netns:
        try:
            total += scrape_counter(ns, METRICS_PORT, UPCALL_METRIC)
        except (OSError, NetloomError):
            return None
    return int(total)


def agents_observe(netns: list[str], pids: list[int]) -> dict[str, float] | None:
    """The counters of the agents of ``netns`` (their metrics, summed: :data:`OBSERVED`) and
    the resident memory of ``pids``; None when an agent does not answer."""
    got = dict.fromkeys(OBSERVED, 0.0)
    for ns in netns:
        try:
            text = probes.fetch_metrics(ns, METRICS_PORT)
        except (OSError, NetloomError):
            return None
        for key, value in probes.metric_totals(text, OBSERVED_METRICS).items():
            got[key] += value
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            got["agent_rss_mb"] += psutil.Process(pid).memory_info().rss / 2**20
    return got


def scrape_counter(ns: str, port: int, family: str) -> float:
    """Sum of counter ``family`` over all its labels, from the agent serving metrics on
    127.0.0.1:``port`` inside namespace ``ns``."""
    return probes.metric_totals(probes.fetch_metrics(ns, port), {family: family})[family]


__all__ = [
    "FLOATING_IP",
    "OverlaySetup",
    "agents_observe",
    "agents_upcalls",
    "check_bpf",
    "scrape_counter",
]
