"""``netloom bench agent100``: one agent serving 100 VMs for real, on the BPF datapath.

The scale harness (``bench scale``) shows that one agent *process* can hold
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

import json
import os
import random
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

import psutil
import typer

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.bench.dense_host import traffic
from netloom.bench.dense_host.plan import (
    Options,
    bridge_gateway,
    plan_pings,
    plan_streams,
    plan_vms,
)
from netloom.bench.dense_host.plumbing import (
    configure_vm,
    count_bpf_attached,
    create_namespaces,
    plug_veths,
)
from netloom.bench.dense_host.provision import provision
from netloom.bench.dense_host.report import DenseHostReport, render
from netloom.bench.procs import AGENT_ALIVE_TIMEOUT_S, sigterm_unwinds
from netloom.errors import DatapathError, NetloomError
from netloom.lab import netns
from netloom.lab.demo_report import scrape_agent
from netloom.lab.lab import Lab
from netloom.lab.plan import host_name, vm_mac
from netloom.lab.state import VmRecord

Say = Callable[[str], None]


class DenseHostRun:
    """One run: ``DenseHostRun(opts, say).run()`` returns the :class:`DenseHostReport`; the
    lab is gone when it returns (or raises)."""

    def __init__(self, opts: Options, say: Say) -> None:
        self.opts = opts.check()
        self.say = say
        seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        self.rng = random.Random(seed)
        self.lab = Lab.create(opts.name or "ag" + secrets.token_hex(3))
        self.res = DenseHostReport(self.lab.name, opts.vms, opts.remote_vms, opts.bridges, seed)
        self.specs = plan_vms(opts)
        self.port_ids: dict[str, str] = {}
        self._owner = os.getpid()

    def run(self) -> DenseHostReport:
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
        self.lab.start_agents(metrics_port=METRICS_PORT)
        api = self.lab.api()
        deadline = time.monotonic() + AGENT_ALIVE_TIMEOUT_S
        while True:
            for h in self.lab.state.hosts:
                if self.agent_pid(h.index) is None:
                    raise DatapathError(f"the agent of {h.name} exited (log in {self.lab.dir})")
            alive = [bool(h.get("alive")) for h in api.list("hosts")]
            if alive and all(alive):
                return
            if time.monotonic() > deadline:
                raise DatapathError(f"agents not alive after {AGENT_ALIVE_TIMEOUT_S:.0f} s")
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
        self.port_ids = provision(self.lab, self.specs, self.opts.bridges)
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
        traffic.ping_mesh(self.lab, pairs, self.res)

    def security_group_check(self) -> None:
        traffic.security_group_check(self.lab, self.specs, self.res, self.say)

    def iperf3(self) -> None:
        pairs = plan_streams(self.specs, self.opts.streams, self.rng)
        self.say(f"iperf3: {len(pairs)} parallel streams, {self.opts.seconds} s ...")
        traffic.iperf3(self.lab, pairs, self.opts.seconds, self.res)

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


def run(opts: Options, say: Say) -> DenseHostReport:
    return DenseHostRun(opts, say).run()


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


__all__ = ["DenseHostRun", "register", "run"]
