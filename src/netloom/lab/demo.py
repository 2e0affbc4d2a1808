"""``netloom demo``: the whole system, for real, in a few dozen seconds.

A lab of N hosts (network namespaces with an underlay to a lab switch, the cluster in the switch
namespace, one ``netloom agent --datapath bpf`` per host), then two tenants::

    tenant A   a1 h1 10.0.1.10 ─┐                      ┌─ a3 h2 10.0.2.10
               a2 h2 10.0.1.11 ─┴─ net1 ── rA ── net2 ─┴─ a4 hN 10.0.2.11  (security group)
    tenant B   b1 h1 10.0.1.10 ─── net ── rB        (the same prefix, even the same address)

Every figure printed is measured on that lab: VMs take their addresses from a real DHCP client
(busybox ``udhcpc``) answered by the agents' simulation, ICMP echo and an iperf3 stream cross
hosts through the virtual router, a stateful security group on a4 lets tcp/5201 in and drops
tcp/22, tenant B cannot reach tenant A although it uses the same addresses, and a what-if trace
of the iperf3 flow is computed from the live topology. Then the lab is torn down (``keep``
leaves it running).

The demo is a list of small steps; each one either returns a line describing what it measured or
raises :class:`DemoStepFailed` saying what did not happen. Nothing here fakes a result: a step
that cannot be done fails, and the caller tears the lab down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.errors import InvalidInput, LabError, NetloomError
from netloom.lab import netns, probes
from netloom.lab.lab import Lab, host_name, netloom_argv

MIN_HOSTS, MAX_HOSTS = 2, 9
IPERF_PORT = 5201  # iperf3's default port, the one the security group opens
SSH_PORT = 22  # the port the security group drops
IPERF_SECONDS = 3
CONNECT_TIMEOUT = 2.0
DHCP_TIMEOUT = 20.0
ALIVE_TIMEOUT = 30.0

# udhcpc runs this instead of its default script, which would rewrite the host's resolv.conf:
# only the VM's own interface, routes and MTU are touched, and the lease's options are written
# to $NETLOOM_LEASE so the demo can show what the DHCP server (the agent) answered.
UDHCPC_SCRIPT = r"""#!/bin/sh
# netloom demo: udhcpc hook configuring only the VM's interface (no resolv.conf change)
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$mtu" ]; then ip link set "$interface" mtu "$mtu"; fi
    if [ -n "$staticroutes" ]; then
      # RFC 3442: with option 121 present the client ignores option 3 (router)
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        if [ "$2" = "0.0.0.0" ]; then ip route replace "$1" dev "$interface"
        else ip route replace "$1" via "$2" dev "$interface"; fi
        shift 2
      done
    elif [ -n "$router" ]; then
      for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    fi
    {
      echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "mtu=$mtu"
      echo "serverid=$serverid"; echo "lease=$lease"; echo "staticroutes=$staticroutes"
    } > "$NETLOOM_LEASE"
    ;;
esac
exit 0
"""


class DemoStepFailed(NetloomError):
    """A demo step did not do what it shows; ``step`` names it."""

    code = "demo_step_failed"

    def __init__(self, message: str, *, step: str = "") -> None:
        super().__init__(message, field=None)
        self.step = step


# -- the plan ----------------------------------------------------------------------------------


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


def check_hosts(hosts: int) -> int:
    if not MIN_HOSTS <= hosts <= MAX_HOSTS:
        raise InvalidInput(
            f"--hosts must be {MIN_HOSTS}..{MAX_HOSTS}, not {hosts} (the demo "
            "spreads VMs over at least two hosts)",
            field="hosts",
        )
    return hosts


# -- what the demo measured --------------------------------------------------------------------


@dataclass
class VmResult:
    name: str  # the lab's VM name (h1-a1), what `netloom lab exec` takes
    key: str
    tenant: str
    host: str  # h1, h2 ... (the host's netns is <lab>-h1)
    network: str
    mac: str
    netns: str
    expected_ip: str
    port_id: str = ""
    dhcp_ip: str | None = None
    dhcp_ms: float | None = None
    dhcp: dict[str, str] = field(default_factory=dict)
    mtu: int | None = None


@dataclass
class PingResult:
    src: str
    dst: str
    dst_ip: str
    path: str
    first_ms: float | None
    sent: int
    received: int
    min_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None


@dataclass
class Summary:
    lab: str
    hosts: list[dict[str, Any]] = field(default_factory=list)
    vms: list[VmResult] = field(default_factory=list)
    pings: list[PingResult] = field(default_factory=list)
    iperf3: dict[str, Any] = field(default_factory=dict)
    security_group: dict[str, str] = field(default_factory=dict)
    isolation: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False
    failed_step: str | None = None
    error: str | None = None
    kept: bool = False
    logs: str | None = None  # where a failed run's logs were copied
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Say = Callable[[str], None]


# -- the demo ----------------------------------------------------------------------------------


class Demo:
    """One run: ``Demo(hosts, say=print).run(keep=False)`` returns the :class:`Summary`
    (``ok`` False and ``failed_step`` set when a step failed; the lab is removed either way
    unless ``keep``)."""

    def __init__(
        self, hosts: int = 3, *, name: str | None = None, say: Say = print, mtu: int = 1500
    ) -> None:
        check_hosts(hosts)
        self.hosts = hosts
        self.say = say
        self.lab = Lab.create(name or "dm" + secrets.token_hex(3), mtu=mtu)
        self._owner = os.getpid()  # only this process tears down (see run)
        self.summary = Summary(lab=self.lab.name)
        self.ids: dict[str, str] = {}  # role -> NSDB id
        self.vms: dict[str, VmResult] = {}
        self.plan = plan_vms(hosts)
        self.nets = {n.key: n for n in plan_networks()}

    # -- driver ------------------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            (
                f"lab {self.lab.name}: underlay switch and {self.hosts} host namespaces",
                self.step_underlay,
            ),
            ("cluster: API + topology service in the switch namespace", self.step_cluster),
            ("agents: `netloom agent --datapath bpf` in every host", self.step_agents),
            (
                "tenant A: router, bridges 10.0.1.0/24 + 10.0.2.0/24 with DHCP, security group",
                self.step_tenant_a,
            ),
            ("tenant B: own router and bridge reusing 10.0.1.0/24", self.step_tenant_b),
            ("VMs: namespaces plugged into their hosts, ports bound", self.step_vms),
            ("DHCP: udhcpc in every VM, answered by the agents", self.step_dhcp),
            ("ping across hosts, through the router", self.step_ping),
            (
                f"security group on a4: tcp/{IPERF_PORT} allowed, tcp/{SSH_PORT} dropped",
                self.step_security_group,
            ),
            (f"iperf3 a1 -> a4 ({IPERF_SECONDS} s, through router and SG)", self.step_iperf),
            (
                "tenant isolation: B (same 10.0.1.0/24) and A cannot reach each other",
                self.step_isolation,
            ),
            ("what-if trace of the iperf3 flow (netloom trace)", self.step_trace),
            ("agent metrics", self.step_metrics),
        ]

    def run(self, *, keep: bool = False) -> Summary:
        started = time.monotonic()
        plan = self.steps()
        try:
            for i, (title, fn) in enumerate(plan, 1):
                self._run_step(i, len(plan), title, fn)
            self.summary.ok = True
            self.lab.state.phase = "up"
            self.lab.save()
        except DemoStepFailed as exc:
            self.summary.failed_step = exc.step
            self.summary.error = exc.message
            self.say(f"FAILED: {exc.step}: {exc.message}")
            self.lab.state.phase = "failed"
            self.lab.state.error = f"demo step failed: {exc.step}: {exc.message}"
            self.lab.save()
            if not keep:
                self.summary.logs = self._save_logs()
        finally:
            self.summary.vms = list(self.vms.values())
            self.summary.seconds = round(time.monotonic() - started, 1)
            self.summary.kept = keep
            # a forked helper child (pyroute2 forks to create namespaces) unwinding through
            # here must not tear down the lab its parent is still building
            if not keep and os.getpid() == self._owner:
                self.teardown()
        return self.summary

    def _run_step(self, i: int, n: int, title: str, fn: Callable[[], str]) -> None:
        self.say(f"[{i:2d}/{n}] {title}")
        t0 = time.monotonic()
        try:
            detail = fn()
        except DemoStepFailed as exc:
            exc.step = exc.step or title
            raise
        except Exception as exc:  # whatever broke, the user gets the step and the cause
            message = exc.message if isinstance(exc, NetloomError) else str(exc)
            raise DemoStepFailed(f"{type(exc).__name__}: {message}", step=title) from exc
        dt = time.monotonic() - t0
        self.summary.steps.append({"step": title, "seconds": round(dt, 2)})
        for line in detail.splitlines() or [""]:
            self.say(f"        {line}" if line else "        ok")
        self.say(f"        ({dt:.1f} s)")

    def _save_logs(self) -> str | None:
        """Copy the cluster's and agents' logs out of the lab directory (teardown removes it)
        so a failed run can be diagnosed afterwards."""
        logs = sorted(self.lab.dir.glob("*.log"))
        if not logs:
            return None
        dest = Path(tempfile.mkdtemp(prefix=f"netloom-demo-{self.lab.name}-"))
        for log in logs:
            shutil.copy2(log, dest / log.name)
        self.say(f"logs of the cluster and agents kept in {dest}")
        return str(dest)

    def teardown(self) -> list[str]:
        self.say(f"cleaning up lab {self.lab.name} ...")
        removed = self.lab.down()
        self.say(f"removed {len(removed)} item(s): namespaces, processes, BPF pins, files")
        return removed

    # -- steps: infrastructure ---------------------------------------------------------------

    def step_underlay(self) -> str:
        self.lab.state.datapath = "bpf"  # saved with the next state write (write-ahead)
        self.lab.build_underlay()
        for n in range(1, self.hosts + 1):
            self.lab.add_host(n)
        hosts = ", ".join(f"{h.name} {h.underlay_ip}" for h in self.lab.state.hosts)
        return f"switch {self.lab.state.switch_netns} {self.lab.state.switch_ip}; {hosts}"

    def step_cluster(self) -> str:
        rec = self.lab.start_cluster()
        self.lab.register_hosts()
        return f"API {rec.api_url}, topology {rec.topology}, store {rec.store_url}"

    def step_agents(self) -> str:
        from netloom.datapath.bpf import object_path

        obj = object_path()  # compiles it when missing: a clear clang error beats a dead agent
        command = [*netloom_argv(), "agent", "--metrics-port", str(METRICS_PORT)]
        if not self.lab.start_agents(command):
            raise DemoStepFailed("`netloom agent --help` failed: this installation has no agent")
        self._wait_hosts_alive()
        self.summary.hosts = [
            {
                "name": h.name,
                "short": f"h{h.index}",
                "underlay_ip": h.underlay_ip,
                "netns": h.netns,
                "host_id": h.host_id,
                "agent_pid": self._agent_pid(h.netns),
            }
            for h in self.lab.state.hosts
        ]
        return (
            f"{len(self.lab.state.hosts)} agents alive (heartbeating), BPF object {obj}, "
            f"metrics on 127.0.0.1:{METRICS_PORT} in each host"
        )

    def _agent_pid(self, ns: str) -> int | None:
        return next(
            (p.pid for p in self.lab.state.processes if p.role == "agent" and p.netns == ns), None
        )

    def _wait_hosts_alive(self) -> None:
        api = self.lab.api()
        deadline = time.monotonic() + ALIVE_TIMEOUT
        while True:
            dead = [
                p for p in self.lab.state.processes if p.role == "agent" and not _pid_alive(p.pid)
            ]
            if dead:
                logs = "; ".join(f"{p.netns}: {_tail(p.log)}" for p in dead)
                raise DemoStepFailed(f"agent exited: {logs}")
            alive = {h["name"]: bool(h.get("alive")) for h in api.list("hosts")}
            if alive and all(alive.values()):
                return
            if time.monotonic() > deadline:
                down = [n for n, a in alive.items() if not a]
                raise DemoStepFailed(
                    f"hosts {', '.join(down)} not alive after "
                    f"{ALIVE_TIMEOUT:.0f} s (agent logs in {self.lab.dir})"
                )
            time.sleep(0.2)

    # -- steps: topology ---------------------------------------------------------------------

    def _create(self, role: str, collection: str, data: dict[str, Any]) -> str:
        doc = self.lab.api().create(collection, data)
        self.ids[role] = str(doc["id"])
        self.lab.state.topology[role] = self.ids[role]
        return self.ids[role]

    def _router_with_nets(self, tenant: str) -> list[str]:
        """Tenant ``tenant``'s router, one bridge per planned network linked to it, a route per
        network and a DHCP subnet (MTU option = VM MTU, RFC 2132 §5.1) on each bridge."""
        api = self.lab.api()
        tid = self._create(f"tenant-{tenant}", "tenants", {"name": f"{self.lab.name}-{tenant}"})
        router = self._create(
            f"router-{tenant}",
            "routers",
            {"tenant_id": tid, "name": f"{self.lab.name}-{tenant}-router"},
        )
        lines = []
        for i, net in enumerate(n for n in self.nets.values() if n.tenant == tenant):
            bridge = self._create(
                f"bridge-{net.key}",
                "bridges",
                {"tenant_id": tid, "name": f"{self.lab.name}-{net.key}"},
            )
            prefix = net.cidr.split("/")[1]
            rp = self._create(
                f"rport-{net.key}",
                "ports",
                {
                    "device_id": router,
                    "type": "router",
                    "name": f"{net.key}-gw",
                    "mac": _router_mac(self.lab.name, tenant, i),
                    "address": f"{net.gateway}/{prefix}",
                },
            )
            bp = self._create(
                f"uplink-{net.key}",
                "ports",
                {"device_id": bridge, "type": "bridge", "name": f"{net.key}-up"},
            )
            api.link_ports(rp, bp)
            self._create(
                f"route-{net.key}",
                "routes",
                {"router_id": router, "dst": net.cidr, "next_hop_port_id": rp},
            )
            self._create(
                f"dhcp-{net.key}",
                "dhcp_subnets",
                {
                    "bridge_id": bridge,
                    "cidr": net.cidr,
                    "gateway": net.gateway,
                    "mtu": self.lab.vm_mtu,
                },
            )
            lines.append(f"{net.key}: {net.cidr} gw {net.gateway}, DHCP mtu {self.lab.vm_mtu}")
        return lines

    def step_tenant_a(self) -> str:
        lines = self._router_with_nets("A")
        self._security_group()
        lines.append(
            f"security group (stateful) for a4: from-VM accept all (tracked); to-VM "
            f"accept return flows, icmp, dhcp, tcp/{IPERF_PORT}; drop tcp/{SSH_PORT}; "
            "drop the rest"
        )
        return "\n".join(lines)

    def _security_group(self) -> None:
        """Two chains, Neutron-style: ``sg-egress`` (VM -> network) accepts everything and so
        creates the conntrack entries that ``match_return_flow`` recognises on the way back;
        ``sg-ingress`` (network -> VM) lets in return traffic, ICMP, DHCP replies (RFC 2131
        server port 67 -> client 68) and tcp/5201, and drops tcp/22 and everything else."""
        api = self.lab.api()
        egress = self._create("sg-egress", "chains", {"name": "sg-egress"})
        api.create(
            "rules",
            {"chain_id": egress, "position": 0, "action": "accept", "match_return_flow": True},
        )
        api.create("rules", {"chain_id": egress, "position": 1, "action": "accept"})
        ingress = self._create("sg-ingress", "chains", {"name": "sg-ingress"})
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
            {"action": "drop", "nw_proto": 6, "tp_dst": {"start": SSH_PORT, "end": SSH_PORT}},
            {"action": "drop"},
        ]
        for pos, rule in enumerate(rules):
            doc = api.create("rules", {"chain_id": ingress, "position": pos, **rule})
            if rule["action"] == "drop" and "tp_dst" in rule:
                self.ids["sg-drop-ssh"] = str(doc["id"])

    def step_tenant_b(self) -> str:
        return "\n".join(self._router_with_nets("B"))

    def step_vms(self) -> str:
        api = self.lab.api()
        lines = []
        for p in self.plan:
            host = host_name(self.lab.name, p.host)
            vm = self.lab.add_vm(host, p.key)
            data: dict[str, Any] = {
                "device_id": self.ids[f"bridge-{p.net}"],
                "type": "bridge",
                "name": vm.name,
                "mac": vm.mac,
                "fixed_ips": [p.ip],
            }
            if p.sg:
                # inbound = what enters the virtual port from the VM (MidoNet's naming)
                data.update(
                    inbound_filter_id=self.ids["sg-egress"],
                    outbound_filter_id=self.ids["sg-ingress"],
                )
            port = self._create(f"port-{p.key}", "ports", data)
            hrec = next(h for h in self.lab.state.hosts if h.name == vm.host)
            assert hrec.host_id is not None
            api.bind_port(port, hrec.host_id, vm.host_if)
            self.vms[p.key] = VmResult(
                name=vm.name,
                key=p.key,
                tenant=p.tenant,
                host=f"h{p.host}",
                network=p.net,
                mac=vm.mac,
                netns=vm.netns,
                expected_ip=p.ip,
                port_id=port,
            )
            lines.append(
                f"{vm.name:7s} tenant {p.tenant} {p.net:7s} on {vm.host:12s} "
                f"mac {vm.mac}  port {port[:8]} bound to {vm.host_if}"
            )
        return "\n".join(lines)

    # -- steps: traffic ----------------------------------------------------------------------

    def step_dhcp(self) -> str:
        """All clients at once (each retries DISCOVER every second), then check that the
        address, the MTU and the default route the kernel now has are the ones the subnet
        defines."""
        script = self.lab.dir / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        procs: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
        try:
            for key, v in self.vms.items():
                lease = self.lab.dir / f"lease-{v.name}"
                lease.unlink(missing_ok=True)
                argv = [
                    "udhcpc",
                    "-f",
                    "-q",
                    "-n",
                    "-i",
                    "eth0",
                    "-t",
                    str(int(DHCP_TIMEOUT)),
                    "-T",
                    "1",
                    "-s",
                    str(script),
                    "-O",
                    "mtu",
                    "-O",
                    "staticroutes",
                ]
                env = {**os.environ, "NETLOOM_LEASE": str(lease)}
                proc = netns.popen(
                    v.netns, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                procs[key] = (proc, lease, time.monotonic())
            for key, (proc, lease, t0) in procs.items():
                self._await_lease(self.vms[key], proc, lease, t0)
        finally:
            for proc, _, _ in procs.values():
                _stop(proc)
        return "\n".join(
            f"{v.name:7s} {v.dhcp_ip}/{v.dhcp.get('mask')} router {v.dhcp.get('router')} "
            f"mtu {v.mtu} from server {v.dhcp.get('serverid')} in {v.dhcp_ms:.0f} ms"
            for v in self.vms.values()
        )

    def _await_lease(
        self, v: VmResult, proc: subprocess.Popen[bytes], lease: Path, t0: float
    ) -> None:
        try:
            out, _ = proc.communicate(timeout=DHCP_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            raise DemoStepFailed(
                f"udhcpc in {v.name} got no lease in {DHCP_TIMEOUT:.0f} s"
            ) from None
        if proc.returncode != 0 or not lease.exists():
            text = " | ".join(out.decode(errors="replace").strip().splitlines()[-4:])
            raise DemoStepFailed(
                f"udhcpc in {v.name} exited {proc.returncode} without a lease: {text}"
            )
        v.dhcp_ms = (time.monotonic() - t0) * 1000
        v.dhcp = dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)
        v.dhcp_ip, v.mtu = _vm_address(v.netns)
        if v.dhcp_ip != v.expected_ip:
            raise DemoStepFailed(f"{v.name} got {v.dhcp_ip}, its port says {v.expected_ip}")
        if v.mtu != self.lab.vm_mtu:
            raise DemoStepFailed(
                f"{v.name} has MTU {v.mtu} after DHCP, the subnet says "
                f"{self.lab.vm_mtu} (option 26)"
            )
        gw = self.nets[v.network].gateway
        if f"default via {gw}" not in netns.run(v.netns, ["ip", "-4", "route"]).stdout:
            raise DemoStepFailed(f"{v.name} has no default route via {gw} after DHCP")
        self._record_vm(v)

    def _record_vm(self, v: VmResult) -> None:
        """Write the VM's leased address and port into the lab's state, so ``netloom lab
        status`` shows them and ``lab exec`` finds the VM by address after ``--keep``."""
        rec = next(r for r in self.lab.state.vms if r.name == v.name)
        rec.ip = f"{v.dhcp_ip}/{v.dhcp.get('mask') or 24}"
        rec.port_id = v.port_id
        self.lab.save()

    def _ping(self, src: str, dst: str, path: str, count: int) -> PingResult:
        s, d = self.vms[src], self.vms[dst]
        first: float | None = None
        for _ in range(3):  # the first packet is an upcall: the agent may still load topology
            rtts = netns.ping(s.netns, d.expected_ip, timeout=2.0)
            if rtts:
                first = rtts[0] * 1000
                break
        if first is None:
            raise DemoStepFailed(
                f"{s.name} ({s.expected_ip}) gets no echo reply from "
                f"{d.name} ({d.expected_ip}) [{path}]"
            )
        rtts = [r * 1000 for r in netns.ping(s.netns, d.expected_ip, count=count, timeout=1.0)]
        res = PingResult(s.name, d.name, d.expected_ip, path, round(first, 3), count, len(rtts))
        if rtts:
            res.min_ms = round(min(rtts), 3)
            res.avg_ms = round(statistics.fmean(rtts), 3)
            res.max_ms = round(max(rtts), 3)
        if len(rtts) < count:
            raise DemoStepFailed(
                f"{s.name} -> {d.name}: {count - len(rtts)} of {count} echo requests lost"
            )
        self.summary.pings.append(res)
        return res

    def step_ping(self) -> str:
        a1, a2, a3, a4 = (self.vms[k] for k in ("a1", "a2", "a3", "a4"))
        checks = [
            ("a1", "a4", f"routed {a1.host}->{a4.host}", 20),
            ("a1", "a2", f"bridged {a1.host}->{a2.host}", 5),
            (
                "a2",
                "a3",
                f"routed on {a2.host}" if a2.host == a3.host else f"routed {a2.host}->{a3.host}",
                5,
            ),
        ]
        lines = []
        for src, dst, path, count in checks:
            r = self._ping(src, dst, path, count)
            lines.append(
                f"{r.src} -> {r.dst} {r.dst_ip} ({path}): first echo "
                f"{r.first_ms:.2f} ms (ARP + upcalls), then {r.received}/{r.sent} "
                f"replies, rtt min/avg/max {r.min_ms:.3f}/{r.avg_ms:.3f}/"
                f"{r.max_ms:.3f} ms"
            )
        return "\n".join(lines)

    def step_security_group(self) -> str:
        """Listeners on both ports inside a4, connects from a1: the SG, not a closed port, is
        what stops tcp/22 (a closed port would answer RST, "refused"; a drop times out)."""
        a1, a4 = self.vms["a1"], self.vms["a4"]
        results = {}
        with probes.listening(a4.netns, IPERF_PORT), probes.listening(a4.netns, SSH_PORT):
            for port in (IPERF_PORT, SSH_PORT):
                results[f"tcp/{port}"] = probes.tcp_connect(
                    a1.netns, a4.expected_ip, port, CONNECT_TIMEOUT
                )
        self.summary.security_group = results
        if results[f"tcp/{IPERF_PORT}"] != "connected":
            raise DemoStepFailed(
                f"tcp/{IPERF_PORT} a1 -> a4 should connect, it {results[f'tcp/{IPERF_PORT}']}"
            )
        if results[f"tcp/{SSH_PORT}"] != "timeout":
            raise DemoStepFailed(
                f"tcp/{SSH_PORT} a1 -> a4 should be dropped (time out), it "
                f"{results[f'tcp/{SSH_PORT}']}"
            )
        return (
            f"a1 -> a4:{IPERF_PORT} connected; a1 -> a4:{SSH_PORT} no answer within "
            f"{CONNECT_TIMEOUT:.0f} s (dropped by the SG; a listener was there)"
        )

    def step_iperf(self) -> str:
        a1, a4 = self.vms["a1"], self.vms["a4"]
        server = netns.popen(
            a4.netns,
            ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            try:
                probes.wait_listening(a4.netns, IPERF_PORT, server)
            except LabError as exc:
                raise DemoStepFailed(exc.message) from None
            done = netns.run(
                a1.netns,
                [
                    "iperf3",
                    "-c",
                    a4.expected_ip,
                    "-p",
                    str(IPERF_PORT),
                    "-t",
                    str(IPERF_SECONDS),
                    "-J",
                ],
                check=False,
                timeout=IPERF_SECONDS + 20,
            )
        finally:
            _stop(server)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise DemoStepFailed(
                f"iperf3 exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
            ) from None
        if "error" in report or done.returncode != 0:
            raise DemoStepFailed(f"iperf3: {report.get('error', done.stderr.strip())}")
        end = report["end"]
        recv, sent = end["sum_received"], end["sum_sent"]
        self.summary.iperf3 = {
            "from": a1.name,
            "to": a4.name,
            "to_ip": a4.expected_ip,
            "port": IPERF_PORT,
            "seconds": round(recv["seconds"], 2),
            "gbit_s": round(recv["bits_per_second"] / 1e9, 2),
            "retransmits": sent.get("retransmits"),
            "mss": _mss(report),
        }
        r = self.summary.iperf3
        if r["gbit_s"] <= 0:
            raise DemoStepFailed("iperf3 moved no data")
        return (
            f"{r['gbit_s']:.2f} Gbit/s received over {r['seconds']} s, "
            f"{r['retransmits']} retransmits, MSS {r['mss']} ({a1.host} -> {a4.host}, "
            f"VXLAN between hosts, VM MTU {self.lab.vm_mtu})"
        )

    def step_isolation(self) -> str:
        a1, a2, a4, b1 = (self.vms[k] for k in ("a1", "a2", "a4", "b1"))
        checks: list[dict[str, Any]] = []

        def probe(src: VmResult, dst_ip: str, what: str, expect: bool) -> None:
            got = bool(netns.ping(src.netns, dst_ip, count=2, timeout=1.0))
            checks.append(
                {
                    "from": src.name,
                    "to": dst_ip,
                    "what": what,
                    "expected": expect,
                    "reply": got,
                    "ok": got == expect,
                }
            )

        probe(b1, self.nets["B-net"].gateway, "B's own router", True)
        probe(b1, a2.expected_ip, "A's a2: same prefix, other tenant", False)
        probe(b1, a4.expected_ip, "A's a4: A's other subnet", False)
        probe(a2, a1.expected_ip, "10.0.1.10 is a1 in A and b1 in B", True)
        neigh = _neighbour_mac(a2.netns, a1.expected_ip)
        checks.append(
            {
                "from": a2.name,
                "to": a1.expected_ip,
                "what": "who answered 10.0.1.10",
                "expected": a1.mac,
                "reply": neigh,
                "ok": neigh == a1.mac,
            }
        )
        self.summary.isolation = checks
        lines = [
            f"{'ok ' if c['ok'] else 'BAD'} {c['from']} -> {c['to']} ({c['what']}): "
            f"{_describe(c['reply'])}"
            for c in checks
        ]
        bad = [c for c in checks if not c["ok"]]
        if bad:
            raise DemoStepFailed(
                "isolation: "
                + "; ".join(
                    f"{c['from']} -> {c['to']} ({c['what']}) expected {_describe(c['expected'])}, "
                    f"got {_describe(c['reply'])}"
                    for c in bad
                )
            )
        return "\n".join(lines)

    def step_trace(self) -> str:
        from netloom.api.whatif import load_topology
        from netloom.sim import render_result, run_trace

        a1, a4 = self.vms["a1"], self.vms["a4"]
        topology = load_topology(self.lab.api())
        result, assumed = run_trace(topology, a1.port_id, a4.expected_ip, "tcp", 40000, IPERF_PORT)
        ssh, _ = run_trace(topology, a1.port_id, a4.expected_ip, "tcp", 40000, SSH_PORT)
        text = render_result(result)
        self.summary.trace = {
            "flow": f"{a1.name} {a1.expected_ip}:40000 -> {a4.expected_ip}:{IPERF_PORT} tcp",
            "verdict": result.verdict.value,
            "text": text,
            "assumed": assumed,
            "ssh_verdict": ssh.verdict.value,
            "ssh_decided_by": next(
                (
                    " ".join(line.split())
                    for line in ssh.trace.render().splitlines()
                    if " rule " in f" {line} " and "drop" in line
                ),
                "",
            ),
        }
        return (
            f"netloom trace --from-port {a1.name} --dst-ip {a4.expected_ip} --proto tcp "
            f"--dport {IPERF_PORT}\n{text}\n(the same flow to tcp/{SSH_PORT}: verdict "
            f"{ssh.verdict.value}, at: {self.summary.trace['ssh_decided_by'] or '?'})"
        )

    def step_metrics(self) -> str:
        lines = []
        for h in self.lab.state.hosts:
            try:
                m = scrape_agent(h.netns)
            except OSError as exc:
                lines.append(f"{h.name}: metrics unreachable ({exc})")
                continue
            self.summary.agents[h.name] = m
            lines.append(
                f"{h.name}: {m['upcalls']:.0f} upcalls, {m['simulations']:.0f} "
                f"simulations, {m['flows_installed']:.0f} flows installed, "
                f"{m['flows']:.0f} installed now, {m['flows_invalidated']:.0f} "
                f"invalidated, {m['state_pushed']:.0f} flow-state entries pushed"
            )
        return "\n".join(lines)


# -- helpers -----------------------------------------------------------------------------------


def _router_mac(lab: str, tenant: str, i: int) -> str:
    """Locally administered (0x02) and lab-specific, like the lab's VM MACs."""
    d = hashlib.sha256(f"{lab}/{tenant}".encode()).digest()
    return f"02:{d[0]:02x}:{d[1]:02x}:{d[2]:02x}:fe:{i:02x}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child, exited: reap it
            return False
    return True


def _tail(path: str | None, lines: int = 5) -> str:
    if not path:
        return "(no log)"
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def _vm_address(ns: str) -> tuple[str | None, int | None]:
    """(IPv4 address, MTU) of the VM's eth0 as the kernel has them."""
    out = netns.run(ns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    links = json.loads(out or "[]")
    if not links:
        return None, None
    addrs = [a["local"] for a in links[0].get("addr_info", []) if a.get("family") == "inet"]
    return (addrs[0] if addrs else None), links[0].get("mtu")


def _neighbour_mac(ns: str, ip: str) -> str | None:
    out = netns.run(ns, ["ip", "-j", "neigh", "show", ip]).stdout
    entries = json.loads(out or "[]")
    return next((e.get("lladdr") for e in entries if e.get("lladdr")), None)


def _describe(value: Any) -> str:
    if value is True:
        return "replies"
    if value is False:
        return "no reply"
    return str(value)


def _mss(report: dict[str, Any]) -> int | None:
    with contextlib.suppress(KeyError, IndexError, TypeError):
        return int(report["start"]["tcp_mss_default"])
    return None


AGENT_METRICS = {
    "upcalls": "netloom_agent_upcalls",
    "simulations": "netloom_agent_simulations",
    "flows_installed": "netloom_agent_flows_installed",
    "flows_invalidated": "netloom_agent_flows_invalidated",
    "flows": "netloom_agent_flows",
    "state_pushed": "netloom_agent_flow_state_pushed",
}


def scrape_agent(ns: str, port: int = METRICS_PORT) -> dict[str, float]:
    """The agent's metrics from inside its host namespace, summed over labels."""
    return parse_metrics(probes.fetch_metrics(ns, port))


def parse_metrics(text: str) -> dict[str, float]:
    return probes.metric_totals(text, AGENT_METRICS)


def keep_instructions(lab: Lab, summary: Summary) -> list[str]:
    """What a person can do with a lab the demo left running."""
    name = lab.name
    vm = {v.key: v for v in summary.vms}
    a1, a4 = vm.get("a1"), vm.get("a4")
    lines = [f"lab {name} is still running:", f"  netloom lab status --name {name}"]
    if a1 is not None:
        lines.append(f"  netloom lab exec --name {name} {a1.name} -- ip addr show eth0")
        if a4 is not None:
            lines.append(
                f"  netloom lab exec --name {name} {a4.name} -- iperf3 -s -D   "
                f"# then: netloom lab exec --name {name} {a1.name} -- iperf3 -c "
                f"{a4.expected_ip}"
            )
    if lab.state.cluster is not None:
        c = lab.state.cluster
        lines.append(f"  nsenter --net=/run/netns/{c.netns} netloom port list --api {c.api_url}")
        if a1 is not None and a4 is not None:
            lines.append(
                f"  nsenter --net=/run/netns/{c.netns} netloom trace --api {c.api_url} "
                f"--from-port {a1.name} --dst-ip {a4.expected_ip} --proto tcp "
                f"--dport {SSH_PORT}"
            )
    lines.append(f"take it down: netloom lab down --name {name}")
    return lines


def run_demo(
    hosts: int = 3, *, keep: bool = False, name: str | None = None, say: Say = print
) -> tuple[Summary, Lab]:
    demo = Demo(hosts, name=name, say=say)
    return demo.run(keep=keep), demo.lab


__all__ = [
    "Demo",
    "DemoStepFailed",
    "PingResult",
    "Summary",
    "VmResult",
    "keep_instructions",
    "parse_metrics",
    "plan_vms",
    "run_demo",
    "scrape_agent",
]
