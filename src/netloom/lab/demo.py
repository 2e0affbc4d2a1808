"""``netloom demo``: the whole system, for real, in a few dozen seconds.

A lab of N hosts and 2 gateway hosts (network namespaces with an underlay to a lab switch, the
cluster in the switch namespace, one ``netloom agent --datapath bpf`` per host), then two
tenants::

    tenant A   a1 h1 10.0.1.10 ─┐                      ┌─ a3 h2 10.0.2.10
               a2 h2 10.0.1.11 ─┴─ net1 ── rA ── net2 ─┴─ a4 hN 10.0.2.11  (security group)
    tenant B   b1 h1 10.0.1.10 ─── net ── rB        (the same prefix, even the same address)

and, north-south, 2 gateway hosts whose uplinks are cabled to an upstream router (bird2) with
an external host behind it: tenant A's router is linked to a provider router with an uplink port
and a BGP peer per gateway; a1 has a floating IP, A's other VMs leave through SNAT.

Every figure printed is measured on that lab: VMs take their addresses from a real DHCP client
(busybox ``udhcpc``) answered by the agents' simulation, ICMP echo and an iperf3 stream cross
hosts through the virtual router, a stateful security group on a4 lets tcp/5201 in and drops
tcp/22, tenant B cannot reach tenant A although it uses the same addresses, and a what-if trace
of the iperf3 flow is computed from the live topology; the upstream's BGP sessions come up, its
route to the floating range has one path per gateway, the external host reaches a1 by its
floating IP and a2 reaches the external host through SNAT. Then the lab is torn down (``keep``
leaves it running).

The demo is a list of small steps; each one either returns a line describing what it measured or
raises :class:`~netloom.errors.DemoStepFailed` saying what did not happen. Nothing here fakes a
result: a step that cannot be done fails, and the caller tears the lab down. The steps live in
:mod:`~netloom.lab.demo_topology` (the plan routed-tenants), :mod:`~netloom.lab.demo_dhcp`,
:mod:`~netloom.lab.demo_traffic` and :mod:`~netloom.lab.demo_northsouth`; the plan and the
report in :mod:`~netloom.lab.demo_plan` and :mod:`~netloom.lab.demo_report`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.errors import DemoStepFailed, NetloomError
from netloom.lab import demo_dhcp, demo_northsouth, demo_topology, demo_traffic
from netloom.lab.addressing import EXTERNAL_HOST_IP
from netloom.lab.demo_plan import (
    ALIVE_TIMEOUT,
    IPERF_PORT,
    IPERF_SECONDS,
    SSH_PORT,
    check_gateways,
    check_hosts,
    plan_networks,
    plan_vms,
)
from netloom.lab.demo_report import Summary, VmResult
from netloom.lab.lab import Lab

Say = Callable[[str], None]


class Demo:
    """One run: ``Demo(hosts, say=print).run(keep=False)`` returns the :class:`Summary`
    (``ok`` False and ``failed_step`` set when a step failed; the lab is removed either way
    unless ``keep``)."""

    def __init__(
        self,
        hosts: int = 3,
        *,
        gateways: int = 2,
        name: str | None = None,
        say: Say = print,
        mtu: int = 1500,
    ) -> None:
        check_hosts(hosts)
        self.gateways = check_gateways(gateways)
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
        def bound(step: Callable[[Demo], str]) -> Callable[[], str]:
            return functools.partial(step, self)

        return [
            (
                f"lab {self.lab.name}: underlay switch, {self.hosts} hosts, {self.gateways} "
                "gateway hosts cabled to an upstream router (bird2), an external host",
                self.step_underlay,
            ),
            ("cluster: API + topology service in the switch namespace", self.step_cluster),
            ("agents: `netloom agent --datapath bpf` in every host", self.step_agents),
            (
                "VMs: namespaces plugged into their hosts",
                bound(demo_topology.step_vms),
            ),
            (
                "tenants A and B (A: 10.0.1.0/24 + 10.0.2.0/24 and a security group, B reusing "
                "10.0.1.0/24), VM ports bound: one plan, routed-tenants",
                bound(demo_topology.step_topology),
            ),
            ("DHCP: udhcpc in every VM, answered by the agents", bound(demo_dhcp.step_dhcp)),
            ("ping across hosts, through the router", bound(demo_traffic.step_ping)),
            (
                f"security group on a4: tcp/{IPERF_PORT} allowed, tcp/{SSH_PORT} dropped",
                bound(demo_traffic.step_security_group),
            ),
            (
                f"iperf3 a1 -> a4 ({IPERF_SECONDS} s, through router and SG)",
                bound(demo_traffic.step_iperf),
            ),
            (
                "tenant isolation: B (same 10.0.1.0/24) and A cannot reach each other",
                bound(demo_traffic.step_isolation),
            ),
            ("what-if trace of the iperf3 flow (netloom trace)", bound(demo_traffic.step_trace)),
            (
                "BGP: the upstream's session to every gateway established",
                bound(demo_northsouth.step_bgp),
            ),
            (
                "the upstream's route to the floating range: one path per gateway (ECMP)",
                bound(demo_northsouth.step_routes),
            ),
            (
                "north-south: the external host reaches a1 by its floating IP",
                bound(demo_northsouth.step_floating_ip),
            ),
            (
                "north-south: a2 (no floating IP) reaches the external host through SNAT",
                bound(demo_northsouth.step_snat),
            ),
            ("agent metrics", bound(demo_traffic.step_metrics)),
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
        self.lab.build_outside()
        for g in range(1, self.gateways + 1):
            self.lab.add_gateway(g)
        self.lab.start_upstream()
        s = self.lab.state
        assert s.outside is not None
        hosts = ", ".join(f"{h.name} {h.underlay_ip}" for h in s.hosts)
        uplinks = ", ".join(f"{u.host} {u.host_if} <-> {u.upstream_address}" for u in s.uplinks)
        return (
            f"switch {s.switch_netns} {s.switch_ip}; {hosts}\n"
            f"upstream {s.outside.upstream_netns} (bird2, AS {s.outside.upstream_as}); "
            f"{uplinks}\nexternal host {s.outside.external_netns} {EXTERNAL_HOST_IP}"
        )

    def step_cluster(self) -> str:
        rec = self.lab.start_cluster()
        self.lab.register_hosts()
        return f"API {rec.api_url}, topology {rec.topology}, store {rec.store_url}"

    def step_agents(self) -> str:
        from netloom.datapath.bpf import object_path

        obj = object_path()  # compiles it when missing: a clear clang error beats a dead agent
        self.lab.start_agents(metrics_port=METRICS_PORT)
        self._wait_hosts_alive()
        self.summary.hosts = [
            {
                "name": h.name,
                "short": h.short,
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

    # -- steps: traffic ----------------------------------------------------------------------


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


def run_demo(
    hosts: int = 3, *, keep: bool = False, name: str | None = None, say: Say = print
) -> tuple[Summary, Lab]:
    demo = Demo(hosts, name=name, say=say)
    return demo.run(keep=keep), demo.lab


__all__ = ["Demo", "run_demo"]
