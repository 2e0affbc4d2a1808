"""``netloom bench agent100``: one agent serving 100 VMs for real, on the BPF datapath.

Issue 7 item 6. The scale harness (``bench scale``) shows that one agent *process* can hold
100 bindings on the memory datapath; this benchmark shows the same agent doing it in the
kernel: a lab host ``h1`` with ``--vms`` VM namespaces (default 100) and a second host ``h2``
with a few more, so some traffic crosses the VXLAN tunnel. One tenant, one router, ``--bridges``
bridges (default 4, the VMs spread round-robin: 25 each), a stateful security group on every VM
port, static addresses written into the VMs (DHCP would only add 100 parallel clients to the
timing, and ``netloom demo`` already covers it). Then, measured on that lab:

1. bring-up: seconds to create the VM namespaces + veths + addresses, seconds to provision the
   ports through the public API, and seconds until every binding is *active* (the agent's BPF
   program attached to the VM's host-side veth, read from the kernel with a tc filter dump,
   not from the agent's own word);
2. a ping mesh sample (``--pings`` random pairs, spread evenly over same-bridge, routed and
   cross-host paths): every pair must answer (a pair gets three tries of 2 s, since its first
   packets are upcalls; first-try failures are reported too);
3. the security group really filters: a TCP connect to a port it drops must time out although
   something listens there (a closed port would answer RST instead);
4. ``--streams`` parallel iperf3 streams between disjoint VM pairs (one crosses hosts when ``h2``
   has VMs): Gbit/s per stream and in total;
5. the agent's RSS (psutil, on the agent's own process), upcalls, simulations and flows
   installed (its Prometheus endpoint, ``--metrics-port``).

The lab is always removed (``Lab.down``), also on an error, Ctrl-C or SIGTERM. The exit status
is 0 only when every check passed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import psutil
import typer
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.bench.perf import sigterm_unwinds
from netloom.bench.perf_tests import stop_group
from netloom.errors import DatapathError, InvalidInput, NetloomError
from netloom.lab import netns, probes
from netloom.lab.addressing import MAX_VMS_PER_HOST
from netloom.lab.demo import scrape_agent
from netloom.lab.lab import Lab, host_name, vm_mac
from netloom.lab.state import VmRecord
from netloom.netns import netns_path

IPERF_PORT = 5201  # the security group lets it in
BLOCKED_PORT = 22  # the security group drops it
TC_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): clsact's ingress hook
ALIVE_TIMEOUT = 30.0
MIN_VMS = 8  # four disjoint iperf3 pairs
MAX_BRIDGES = 8
PING_TRIES = 3
PING_TIMEOUT = 2.0
RSS_GOAL_MB = 80.0  # issue 7's goal for the 100-VM agent (reported, not a failed check)

Say = Callable[[str], None]


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    vms: int = 100  # on h1, the measured agent
    remote_vms: int = 4  # on h2, so some pings and one stream cross the tunnel
    bridges: int = 4
    pings: int = 300
    streams: int = 4
    seconds: int = 3  # per iperf3 stream
    seed: int | None = None
    name: str | None = None

    def check(self) -> Options:
        """Reject sizes the lab cannot build before anything is created."""
        if not MIN_VMS <= self.vms <= MAX_VMS_PER_HOST:
            raise InvalidInput(
                f"--vms must be {MIN_VMS}..{MAX_VMS_PER_HOST}, not {self.vms}", field="vms"
            )
        if not 0 <= self.remote_vms <= MAX_VMS_PER_HOST:
            raise InvalidInput(f"--remote-vms must be 0..{MAX_VMS_PER_HOST}", field="remote_vms")
        if not 1 <= self.bridges <= MAX_BRIDGES:
            raise InvalidInput(f"--bridges must be 1..{MAX_BRIDGES}", field="bridges")
        per_bridge = -(-(self.vms + self.remote_vms) // self.bridges)
        if per_bridge > 240:  # .10 .. .250 of a /24
            raise InvalidInput(f"{per_bridge} VMs per bridge do not fit a /24", field="vms")
        if not 1 <= self.streams <= self.vms // 2:
            raise InvalidInput(f"--streams must be 1..{self.vms // 2}", field="streams")
        if self.pings < 0 or self.seconds < 1:
            raise InvalidInput("--pings must be >= 0 and --seconds >= 1", field="pings")
        return self


@dataclass(frozen=True)
class VmSpec:
    name: str  # the lab's VM name: h1-vm7
    host: int  # 1 or 2
    bridge: int  # 0-based
    ip: str  # without prefix


def bridge_cidr(b: int) -> ipaddress.IPv4Network:
    """Bridge ``b`` (0-based) owns 10.0.(b+1).0/24; its router port is .1."""
    return ipaddress.IPv4Network(f"10.0.{b + 1}.0/24")


def bridge_gateway(b: int) -> str:
    return str(bridge_cidr(b).network_address + 1)


def plan_vms(opts: Options) -> list[VmSpec]:
    """``vms`` VMs on h1 and ``remote_vms`` on h2, round-robin over the bridges, addresses from
    .10 upwards in each bridge's /24."""
    used = [0] * opts.bridges
    specs: list[VmSpec] = []
    for host, count in ((1, opts.vms), (2, opts.remote_vms)):
        for k in range(1, count + 1):
            b = (len(specs)) % opts.bridges
            ip = str(bridge_cidr(b).network_address + 10 + used[b])
            used[b] += 1
            specs.append(VmSpec(f"h{host}-vm{k}", host, b, ip))
    return specs


def path_of(src: VmSpec, dst: VmSpec) -> str:
    if src.host != dst.host:
        return "cross-host"
    return "bridged" if src.bridge == dst.bridge else "routed"


def plan_pings(specs: list[VmSpec], count: int, rng: random.Random) -> list[tuple[VmSpec, VmSpec]]:
    """``count`` random ordered pairs, taken in turn from each path kind the lab has (bridged
    and routed on h1; h1 <-> h2 when h2 has VMs), so no kind is left to chance."""
    local = [s for s in specs if s.host == 1]
    remote = [s for s in specs if s.host == 2]
    kinds = ["bridged", "routed"] + (["cross-host"] if remote else [])
    pairs: list[tuple[VmSpec, VmSpec]] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        for _ in range(1000):
            if kind == "cross-host":
                a, b = rng.choice(local), rng.choice(remote)
                src, dst = (a, b) if rng.random() < 0.5 else (b, a)
            else:
                src, dst = rng.sample(local, 2)
            if path_of(src, dst) == kind:
                pairs.append((src, dst))
                break
        else:  # a single bridge has no routed pairs: take any pair instead
            pairs.append(tuple(rng.sample(local, 2)))  # type: ignore[arg-type]
    return pairs


def plan_streams(specs: list[VmSpec], n: int, rng: random.Random) -> list[tuple[VmSpec, VmSpec]]:
    """``n`` disjoint (client, server) pairs: one h1 -> h2 when h2 has VMs, the others on h1,
    alternating same-bridge and routed."""
    local = [s for s in specs if s.host == 1]
    remote = [s for s in specs if s.host == 2]
    rng.shuffle(local)
    pairs: list[tuple[VmSpec, VmSpec]] = []
    if remote:
        pairs.append((local.pop(), rng.choice(remote)))
    want = "bridged"
    while len(pairs) < n and len(local) >= 2:
        src = local.pop()
        match = [d for d in local if path_of(src, d) == want] or local
        dst = match[0]
        local.remove(dst)
        pairs.append((src, dst))
        want = "routed" if want == "bridged" else "bridged"
    return pairs


# -- what was measured -------------------------------------------------------------------------


@dataclass
class Result:
    lab: str
    vms: int
    remote_vms: int
    bridges: int
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    bindings_active: int = 0
    pings: dict[str, Any] = field(default_factory=dict)
    ping_failures: list[dict[str, Any]] = field(default_factory=list)
    security_group: dict[str, str] = field(default_factory=dict)
    iperf3: list[dict[str, Any]] = field(default_factory=list)
    iperf3_total_gbit_s: float = 0.0
    agent: dict[str, Any] = field(default_factory=dict)
    agent_h2: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    ok: bool = False
    error: str | None = None
    cleaned_up: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- the run -----------------------------------------------------------------------------------


class Agent100:
    """One run: ``Agent100(opts, say).run()`` returns the :class:`Result`; the lab is gone
    when it returns (or raises)."""

    def __init__(self, opts: Options, say: Say) -> None:
        self.opts = opts.check()
        self.say = say
        seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        self.rng = random.Random(seed)
        self.lab = Lab.create(opts.name or "ag" + secrets.token_hex(3))
        self.res = Result(self.lab.name, opts.vms, opts.remote_vms, opts.bridges, seed)
        self.specs = plan_vms(opts)
        self.port_ids: dict[str, str] = {}
        self._owner = os.getpid()

    def run(self) -> Result:
        started = time.monotonic()
        try:
            self._timed("underlay_s", self.build_hosts)
            self._timed("cluster_s", self.lab.start_cluster)
            self.lab.register_hosts()
            self._timed("agents_s", self.start_agents)
            self._timed("vms_up_s", self.build_vms)
            self.provision_and_wait()
            self.res.agent = self.agent_figures(1, "bound")
            self._timed("ping_mesh_s", self.ping_mesh)
            self.security_group_check()
            self._timed("iperf3_s", self.iperf3)
            self.res.agent.update(self.agent_figures(1, "end"))
            if self.opts.remote_vms:
                self.res.agent_h2 = self.agent_figures(2, "end")
        except NetloomError as exc:
            self.res.error = f"{exc.code}: {exc.message}"
        finally:
            self.res.seconds = round(time.monotonic() - started, 1)
            if os.getpid() == self._owner:  # never from a forked pyroute2 helper
                self.say(f"removing lab {self.lab.name} ...")
                self.res.cleaned_up = self.lab.down()
        self.res.ok = (
            self.res.error is None and bool(self.res.checks) and all(self.res.checks.values())
        )
        return self.res

    def _timed(self, key: str, fn: Callable[[], object]) -> None:
        t0 = time.monotonic()
        fn()
        self.res.timings[key] = round(time.monotonic() - t0, 2)
        self.say(f"  {key[:-2]}: {self.res.timings[key]:.2f} s")

    # -- lab ---------------------------------------------------------------------------------

    def build_hosts(self) -> None:
        self.lab.state.datapath = "bpf"  # saved with the next write-ahead record
        self.say(f"lab {self.lab.name}: underlay, hosts, cluster, agents (bpf datapath)")
        self.lab.build_underlay()
        for n in (1, 2) if self.opts.remote_vms else (1,):
            self.lab.add_host(n)

    def start_agents(self) -> None:
        from netloom.datapath.bpf import object_path

        object_path()  # compiles the BPF object now: a clang error beats a dead agent
        base = [sys.executable, "-m", "netloom.agent", "--metrics-port", str(METRICS_PORT)]
        if not self.lab.start_agents(base):
            raise DatapathError("`python -m netloom.agent --help` failed: no agent here")
        api = self.lab.api()
        deadline = time.monotonic() + ALIVE_TIMEOUT
        while True:
            for h in self.lab.state.hosts:
                if self.agent_pid(h.index) is None:
                    raise DatapathError(f"the agent of {h.name} exited (log in {self.lab.dir})")
            alive = [bool(h.get("alive")) for h in api.list("hosts")]
            if alive and all(alive):
                return
            if time.monotonic() > deadline:
                raise DatapathError(f"agents not alive after {ALIVE_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def build_vms(self) -> None:
        """VM namespaces, veths into the host, static address and default route per VM, in
        batches: one state write for all records, one ``ip -batch`` for all namespaces, one
        netlink socket per namespace (``Lab.add_vm`` opens a pyroute2 netns socket, a forked
        helper, per operation: ~0.1 s a VM, 10 s for 100; this is ~1 s)."""
        self.say(f"creating {len(self.specs)} VM namespaces ...")
        recs = self._record_vms()
        create_namespaces([r.netns for r in recs])
        for h in self.lab.state.hosts:
            plug_veths(h.netns, [r for r in recs if r.host == h.name], self.lab.vm_mtu)
        for s, rec in zip(self.specs, recs, strict=True):
            configure_vm(rec, self.lab.vm_mtu, bridge_gateway(s.bridge))

    def _record_vms(self) -> list[VmRecord]:
        """The VMs' records, named exactly as ``Lab.add_vm`` names them (so ``lab status`` /
        ``lab exec`` / ``lab down`` know them), written ahead of their creation."""
        lab = self.lab.name
        seqs: dict[int, int] = {}
        recs: list[VmRecord] = []
        for s in self.specs:
            seq = seqs[s.host] = seqs.get(s.host, 0) + 1
            short = f"h{s.host}-{s.name.split('-', 1)[1]}"
            rec = VmRecord(
                name=short,
                netns=netns.check_ns_name(f"{lab}-{short}"),
                host=host_name(lab, s.host),
                host_if=netns.check_ifname(f"{lab}h{s.host}v{seq}"),
                vm_if="eth0",
                mac=vm_mac(lab, s.host, seq),
                ip=f"{s.ip}/24",
            )
            recs.append(rec)
        self.lab.state.vms.extend(recs)
        self.lab.state.netns.extend(r.netns for r in recs)
        self.lab.save()  # the lab's write-ahead record
        return recs

    # -- topology ----------------------------------------------------------------------------

    def provision_and_wait(self) -> None:
        t0 = time.monotonic()
        self.provision()
        self.res.timings["provision_s"] = round(time.monotonic() - t0, 2)
        self.say(f"  provision ({len(self.specs)} ports): {self.res.timings['provision_s']} s")
        active = self.wait_bindings(timeout=60.0 + len(self.specs))
        self.res.timings["all_active_s"] = round(time.monotonic() - t0, 2)
        self.res.bindings_active = active
        self.res.checks["all_bindings_active"] = active == len(self.specs)
        self.say(
            f"  bindings active: {active}/{len(self.specs)} after "
            f"{self.res.timings['all_active_s']} s"
        )

    def provision(self) -> None:
        """Tenant, router, bridges (each with its router port, route and DHCP subnet), the
        security group's two chains, then one port per VM, created and bound (Nova's order)."""
        api = self.lab.api()
        lab = self.lab.name
        ids = self.lab.state.topology
        tenant = api.create("tenants", {"name": lab})["id"]
        router = api.create("routers", {"tenant_id": tenant, "name": f"{lab}-r"})["id"]
        ids.update(tenant=tenant, router=router)
        bridges: list[str] = []
        for b in range(self.opts.bridges):
            bridges.append(self._bridge(api, tenant, router, b))
        egress, ingress = self._security_group(api, tenant)
        hosts = {h.index: h.host_id for h in self.lab.state.hosts}
        for s in self.specs:
            vm = self.lab.vm(s.name)
            port = api.create(
                "ports",
                {
                    "device_id": bridges[s.bridge],
                    "type": "bridge",
                    "name": s.name,
                    "mac": vm.mac,
                    "fixed_ips": [s.ip],
                    # inbound = what enters the virtual port from the VM (MidoNet's naming)
                    "inbound_filter_id": egress,
                    "outbound_filter_id": ingress,
                },
            )["id"]
            host_id = hosts[s.host]
            assert host_id is not None
            api.bind_port(port, host_id, vm.host_if)
            self.port_ids[s.name] = port
        for rec in self.lab.state.vms:  # `netloom lab status` shows each VM's port
            rec.port_id = self.port_ids.get(rec.name, rec.port_id)
        self.lab.save()

    def _bridge(self, api: Any, tenant: str, router: str, b: int) -> str:
        cidr = bridge_cidr(b)
        gw = bridge_gateway(b)
        bridge = api.create("bridges", {"tenant_id": tenant, "name": f"net{b}"})["id"]
        rp = api.create(
            "ports",
            {
                "device_id": router,
                "type": "router",
                "name": f"net{b}-gw",
                "mac": vm_mac(self.lab.name, 0, b + 1),
                "address": f"{gw}/{cidr.prefixlen}",
            },
        )["id"]
        bp = api.create("ports", {"device_id": bridge, "type": "bridge", "name": f"net{b}-up"})[
            "id"
        ]
        api.link_ports(rp, bp)
        api.create("routes", {"router_id": router, "dst": str(cidr), "next_hop_port_id": rp})
        api.create(
            "dhcp_subnets",
            {"bridge_id": bridge, "cidr": str(cidr), "gateway": gw, "mtu": self.lab.vm_mtu},
        )
        return str(bridge)

    def _security_group(self, api: Any, tenant: str) -> tuple[str, str]:
        """Neutron's default-style stateful group: everything out (tracked, so replies come
        back), in only replies, ICMP, DHCP replies (RFC 2131: server 67 -> client 68) and
        tcp/5201; tcp/22 and the rest dropped."""
        egress = api.create("chains", {"tenant_id": tenant, "name": "sg-egress"})["id"]
        api.create(
            "rules",
            {"chain_id": egress, "position": 0, "action": "accept", "match_return_flow": True},
        )
        api.create("rules", {"chain_id": egress, "position": 1, "action": "accept"})
        ingress = api.create("chains", {"tenant_id": tenant, "name": "sg-ingress"})["id"]
        rules: list[dict[str, Any]] = [
            {"action": "accept", "match_return_flow": True},
            {"action": "accept", "nw_proto": 1},
            {
                "action": "accept",
                "nw_proto": 17,
                "tp_src": {"start": 67, "end": 67},
                "tp_dst": {"start": 68, "end": 68},
            },
            {"action": "accept", "nw_proto": 6, "tp_dst": {"start": IPERF_PORT, "end": IPERF_PORT}},
            {
                "action": "drop",
                "nw_proto": 6,
                "tp_dst": {"start": BLOCKED_PORT, "end": BLOCKED_PORT},
            },
            {"action": "drop"},
        ]
        for pos, rule in enumerate(rules):
            api.create("rules", {"chain_id": ingress, "position": pos, **rule})
        return str(egress), str(ingress)

    def wait_bindings(self, timeout: float) -> int:
        """Poll the kernel until the agent's BPF program is on every VM veth; the count."""
        by_host: dict[str, list[str]] = {}
        for s in self.specs:
            vm = self.lab.vm(s.name)
            by_host.setdefault(vm.host, []).append(vm.host_if)
        deadline = time.monotonic() + timeout
        while True:
            active = sum(count_bpf_attached(ns, ifs) for ns, ifs in by_host.items())
            if active == len(self.specs) or time.monotonic() > deadline:
                return active
            for h in self.lab.state.hosts:
                if self.agent_pid(h.index) is None:
                    raise DatapathError(f"the agent of {h.name} exited (log in {self.lab.dir})")
            time.sleep(0.05)

    # -- traffic -----------------------------------------------------------------------------

    def ping_mesh(self) -> None:
        pairs = plan_pings(self.specs, self.opts.pings, self.rng)
        self.say(f"ping mesh: {len(pairs)} pairs ...")
        first_ms: list[float] = []
        by_path: dict[str, list[int]] = {}
        first_try = 0
        for src, dst in pairs:
            kind = path_of(src, dst)
            counts = by_path.setdefault(kind, [0, 0])
            counts[0] += 1
            rtt, tries = self._ping(src, dst)
            if rtt is None:
                self.res.ping_failures.append(
                    {"src": src.name, "dst": dst.name, "dst_ip": dst.ip, "path": kind}
                )
                continue
            counts[1] += 1
            first_try += tries == 1
            first_ms.append(rtt * 1000)
        answered = sum(c[1] for c in by_path.values())
        self.res.pings = {
            "pairs": len(pairs),
            "answered": answered,
            "first_try": first_try,
            "by_path": {k: {"pairs": c[0], "answered": c[1]} for k, c in by_path.items()},
            **_percentiles("rtt_first_ms", first_ms),
        }
        self.res.checks["ping_mesh"] = answered == len(pairs)

    def _ping(self, src: VmSpec, dst: VmSpec) -> tuple[float | None, int]:
        """RTT of the first echo that came back (its first packets are upcalls) and the try."""
        ns = self.lab.vm(src.name).netns
        for attempt in range(1, PING_TRIES + 1):
            rtts = netns.ping(ns, dst.ip, timeout=PING_TIMEOUT)
            if rtts:
                return rtts[0], attempt
        return None, PING_TRIES

    def security_group_check(self) -> None:
        """A listener on tcp/22 in a VM, a connect from another VM: the group must drop the
        SYN (time out), while tcp/5201 to the same VM connects."""
        local = [s for s in self.specs if s.host == 1]
        src, dst = local[0], local[1]
        dst_ns = self.lab.vm(dst.name).netns
        src_ns = self.lab.vm(src.name).netns
        with probes.listening(dst_ns, BLOCKED_PORT), probes.listening(dst_ns, IPERF_PORT):
            allowed = probes.tcp_connect(src_ns, dst.ip, IPERF_PORT, 3.0)
            blocked = probes.tcp_connect(src_ns, dst.ip, BLOCKED_PORT, 2.0)
        self.res.security_group = {
            "from": src.name,
            "to": dst.name,
            f"tcp/{IPERF_PORT}": allowed,
            f"tcp/{BLOCKED_PORT}": blocked,
        }
        self.res.checks["security_group"] = allowed == "connected" and blocked == "timeout"
        self.say(f"security group: tcp/{IPERF_PORT} {allowed}, tcp/{BLOCKED_PORT} {blocked}")

    def iperf3(self) -> None:
        pairs = plan_streams(self.specs, self.opts.streams, self.rng)
        self.say(f"iperf3: {len(pairs)} parallel streams, {self.opts.seconds} s ...")
        servers: list[subprocess.Popen[bytes]] = []
        clients: list[subprocess.Popen[bytes]] = []
        try:
            for _, dst in pairs:
                ns = self.lab.vm(dst.name).netns
                servers.append(
                    netns.popen(
                        ns,
                        ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                probes.wait_listening(ns, IPERF_PORT, servers[-1])
            for src, dst in pairs:
                clients.append(
                    netns.popen(
                        self.lab.vm(src.name).netns,
                        [
                            "iperf3",
                            "-c",
                            dst.ip,
                            "-p",
                            str(IPERF_PORT),
                            "-t",
                            str(self.opts.seconds),
                            "-J",
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )
            outs = [c.communicate(timeout=self.opts.seconds + 30) for c in clients]
        finally:
            for p in servers + clients:
                stop_group(p)  # netns.popen starts each in its own session
        for (src, dst), (out, err), proc in zip(pairs, outs, clients, strict=True):
            self.res.iperf3.append(_stream(src, dst, out, err, proc.returncode))
        self.res.iperf3_total_gbit_s = round(sum(s["gbit_s"] for s in self.res.iperf3), 2)
        self.res.checks["iperf3"] = bool(self.res.iperf3) and all(
            s["gbit_s"] > 0 and s["error"] is None for s in self.res.iperf3
        )

    # -- the agent ---------------------------------------------------------------------------

    def agent_pid(self, host_index: int) -> int | None:
        """The PID of host ``host_index``'s agent while it runs, else None. ``nsenter`` execs
        the agent, so the recorded PID becomes the agent's Python process; right after the
        start it may still be ``nsenter`` itself, which counts as running (a child is taken
        if nsenter forked)."""
        ns = host_name(self.lab.name, host_index)
        for rec in self.lab.state.processes:
            if rec.role != "agent" or rec.netns != ns:
                continue
            try:
                p = psutil.Process(rec.pid)
                if p.status() == psutil.STATUS_ZOMBIE:
                    return None
                if p.name() == "nsenter":
                    kids = p.children()
                    return int(kids[0].pid) if kids else int(p.pid)
                return int(p.pid)
            except psutil.NoSuchProcess:
                return None
        return None

    def agent_figures(self, host_index: int, when: str) -> dict[str, Any]:
        pid = self.agent_pid(host_index)
        if pid is None:
            raise DatapathError(f"the agent of h{host_index} is not running")
        proc = psutil.Process(pid)
        if "netloom.agent" not in " ".join(proc.cmdline()):  # never measure nsenter's RSS
            raise DatapathError(f"pid {pid} in h{host_index} is not the agent")
        mem = proc.memory_info()
        m = scrape_agent(host_name(self.lab.name, host_index), METRICS_PORT)
        return {
            "pid": pid,
            f"rss_{when}_mb": round(mem.rss / 2**20, 1),
            f"upcalls_{when}": int(m["upcalls"]),
            f"simulations_{when}": int(m["simulations"]),
            f"flows_installed_{when}": int(m["flows_installed"]),
            f"flows_now_{when}": int(m["flows"]),
        }


# -- helpers -----------------------------------------------------------------------------------


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


def _percentiles(prefix: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{prefix}_p50": None, f"{prefix}_p99": None, f"{prefix}_max": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        f"{prefix}_p50": round(statistics.median(ordered), 3),
        f"{prefix}_p99": round(p99, 3),
        f"{prefix}_max": round(ordered[-1], 3),
    }


def _stream(src: VmSpec, dst: VmSpec, out: bytes, err: bytes, rc: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "from": src.name,
        "to": dst.name,
        "to_ip": dst.ip,
        "path": path_of(src, dst),
        "gbit_s": 0.0,
        "retransmits": None,
        "error": None,
    }
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        row["error"] = f"iperf3 exited {rc}: {err.decode(errors='replace').strip()[-200:]}"
        return row
    if "error" in report or rc != 0:
        row["error"] = str(report.get("error", f"exit {rc}"))
        return row
    end = report["end"]
    row["gbit_s"] = round(end["sum_received"]["bits_per_second"] / 1e9, 2)
    row["retransmits"] = end["sum_sent"].get("retransmits")
    return row


# -- output ------------------------------------------------------------------------------------


def rows(res: Result) -> list[tuple[str, str]]:
    """The table: one (figure, value) per line."""
    t = res.timings
    a = res.agent
    n = res.vms + res.remote_vms
    out = [
        ("lab", f"{res.lab}: h1 {res.vms} VMs, h2 {res.remote_vms} VMs, {res.bridges} bridges"),
        ("VM namespaces + veths + addresses", f"{t.get('vms_up_s', '-')} s for {n} VMs"),
        ("ports provisioned (API)", f"{t.get('provision_s', '-')} s"),
        (
            "all bindings active (BPF attached)",
            f"{res.bindings_active}/{n} after {t.get('all_active_s', '-')} s",
        ),
    ]
    p = res.pings
    if p:
        paths = ", ".join(f"{k} {v['answered']}/{v['pairs']}" for k, v in p["by_path"].items())
        out += [
            (
                "ping mesh",
                f"{p['answered']}/{p['pairs']} answered ({paths}); "
                f"{p['first_try']} at the first try",
            ),
            (
                "first echo rtt p50 / p99 / max",
                f"{p['rtt_first_ms_p50']} / {p['rtt_first_ms_p99']} / {p['rtt_first_ms_max']} ms",
            ),
        ]
    if res.security_group:
        sg = res.security_group
        out.append(
            (
                "security group",
                f"tcp/{IPERF_PORT} {sg[f'tcp/{IPERF_PORT}']}, "
                f"tcp/{BLOCKED_PORT} {sg[f'tcp/{BLOCKED_PORT}']}",
            )
        )
    for s in res.iperf3:
        out.append(
            (
                f"iperf3 {s['from']} -> {s['to']} ({s['path']})",
                f"{s['gbit_s']} Gbit/s" + (f" ERROR {s['error']}" if s["error"] else ""),
            )
        )
    if res.iperf3:
        out.append(("iperf3 total", f"{res.iperf3_total_gbit_s} Gbit/s"))
    if a:
        out += [
            (
                "agent h1 RSS (bound / end)",
                f"{a.get('rss_bound_mb')} / {a.get('rss_end_mb')} MB (goal <= {RSS_GOAL_MB:.0f})",
            ),
            (
                "agent h1 upcalls / simulations",
                f"{a.get('upcalls_end')} / {a.get('simulations_end')}",
            ),
            (
                "agent h1 flows installed (total / now)",
                f"{a.get('flows_installed_end')} / {a.get('flows_now_end')}",
            ),
        ]
    if res.agent_h2:
        out.append(("agent h2 RSS", f"{res.agent_h2.get('rss_end_mb')} MB"))
    out += [(f"check {k}", "ok" if v else "FAILED") for k, v in res.checks.items()]
    if res.error:
        out.append(("error", res.error))
    out.append(
        (
            "result",
            f"{'PASS' if res.ok else 'FAIL'} in {res.seconds} s, "
            f"{len(res.cleaned_up)} lab items removed",
        )
    )
    return out


def render(res: Result) -> str:
    width = max(len(k) for k, _ in rows(res))
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows(res))


def run(opts: Options, say: Say) -> Result:
    return Agent100(opts, say).run()


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("agent100")
    def agent100_cmd(
        vms: Annotated[int, typer.Option(help="VMs on the measured host h1")] = 100,
        remote_vms: Annotated[int, typer.Option(help="VMs on h2 (tunnel traffic); 0: none")] = 4,
        bridges: Annotated[int, typer.Option(help="bridges behind the tenant router")] = 4,
        pings: Annotated[int, typer.Option(help="ping mesh sample: random pairs")] = 300,
        streams: Annotated[int, typer.Option(help="parallel iperf3 streams")] = 4,
        seconds: Annotated[int, typer.Option(help="seconds per iperf3 stream")] = 3,
        seed: Annotated[int | None, typer.Option(help="random seed (pairs)")] = None,
        name: Annotated[str | None, typer.Option(help="lab name (default: random)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """100 VMs on one bpf agent, for real: bring-up, ping mesh, security group, parallel
        iperf3, agent RSS / flows / upcalls. Exit 1 when a check fails."""
        if os.geteuid() != 0:
            typer.echo("bench agent100 needs root (network namespaces, BPF)", err=True)
            raise typer.Exit(2)
        try:
            # SIGTERM unwinds like Ctrl-C, so ``finally`` removes the lab (bench perf's handler)
            with sigterm_unwinds():
                opts = Options(
                    vms=vms,
                    remote_vms=remote_vms,
                    bridges=bridges,
                    pings=pings,
                    streams=streams,
                    seconds=seconds,
                    seed=seed,
                    name=name,
                )
                res = run(opts, say=lambda m: typer.echo(m, err=True))
        except NetloomError as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: the lab was removed", err=True)
            raise typer.Exit(130) from None
        typer.echo(json.dumps(res.to_json()) if as_json else render(res))
        if not res.ok:
            raise typer.Exit(1)


__all__ = [
    "Agent100",
    "Options",
    "Result",
    "plan_pings",
    "plan_streams",
    "plan_vms",
    "register",
    "render",
    "run",
]
