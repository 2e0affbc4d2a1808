"""``netloom demo``: the README's first command (``make demo`` runs it).

Builds a lab of namespaces with the cluster and BPF agents, two tenants, VMs configured by a real
DHCP client, then measures ping, iperf3, a security group, tenant isolation and a what-if trace,
prints a summary and removes everything (``--keep`` leaves the lab running). The work is in
:mod:`netloom.lab.demo`; this module only parses options and renders.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich import box
from rich.table import Table

from netloom.cli.output import console, print_json
from netloom.errors import NetloomError, print_error

if TYPE_CHECKING:
    from netloom.lab.demo_report import Summary


def _say_to(stream: TextIO) -> Callable[[str], None]:
    """Progress lines, flushed one by one (the demo takes a while; show it as it goes)."""

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return say


def _interrupt_in(owner: int) -> Callable[[int, FrameType | None], None]:
    """A SIGTERM handler that unwinds like Ctrl-C in process ``owner`` only. Libraries fork
    helper children (pyroute2 creates namespaces in one and stops it with SIGTERM); a child
    inheriting this handler must die as SIGTERM says, not unwind a copy of the demo."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    return handler


def demo(
    hosts: Annotated[int, typer.Option("--hosts", help="number of hosts (2-9)")] = 3,
    gateways: Annotated[
        int, typer.Option("--gateways", help="gateway hosts with uplinks to the upstream (1-6)")
    ] = 2,
    keep: Annotated[bool, typer.Option("--keep", help="leave the lab running afterwards")] = False,
    name: Annotated[str | None, typer.Option("--name", help="lab name (default: random)")] = None,
    mtu: Annotated[
        int,
        typer.Option(
            "--mtu", help="underlay MTU: 1500 or 9000 (VMs get 50 less, the VXLAN overhead)"
        ),
    ] = 1500,
    as_json: Annotated[
        bool, typer.Option("--json", help="progress on stderr, the summary as JSON on stdout")
    ] = False,
) -> None:
    """Bring up 3 hosts and 2 gateways with BPF agents, two tenants and VMs, an upstream router
    and an external host; measure east-west and north-south; clean up."""
    from netloom.lab.demo import Demo
    from netloom.lab.demo_report import keep_instructions

    if os.geteuid() != 0:
        print_error(NetloomError("the demo creates network namespaces: run it as root"))
        raise typer.Exit(1)
    say = _say_to(sys.stderr if as_json else sys.stdout)
    try:
        runner = Demo(hosts, gateways=gateways, name=name, say=say, mtu=mtu)
    except NetloomError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the run's cleanup still happens
    previous = signal.signal(signal.SIGTERM, _interrupt_in(os.getpid()))
    try:
        summary = runner.run(keep=keep)
    except KeyboardInterrupt:
        sys.stderr.write(
            "interrupted"
            + (
                ""
                if not keep
                else f"; lab {runner.lab.name} left: netloom lab down --name {runner.lab.name}"
            )
            + "\n"
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        print_json(summary.to_json())
    else:
        _render(summary)
    if keep:
        for line in keep_instructions(runner.lab, summary):
            typer.echo(line, err=as_json)
    if not summary.ok:
        raise typer.Exit(1)


def _render(summary: object) -> None:
    from netloom.lab.demo_report import Summary

    assert isinstance(summary, Summary)
    out = console()
    out.print()
    state = (
        "[green]all steps passed[/]"
        if summary.ok
        else f"[red]FAILED at: {summary.failed_step}[/]\n[red]{summary.error}[/]"
    )
    out.print(f"[bold]netloom demo, lab {summary.lab}[/] ({summary.seconds} s): {state}")
    if summary.hosts:
        out.print(
            "hosts: "
            + ", ".join(f"{h['short']} {h['underlay_ip']}" for h in summary.hosts)
            + "; agents: BPF datapath"
        )
    if summary.vms:
        out.print(_vm_table(summary))
    if summary.pings:
        out.print(_ping_table(summary))
    for line in _result_lines(summary):
        out.print(line)
    if not summary.kept:
        out.print(f"lab {summary.lab} removed")


def _vm_table(summary: Summary) -> Table:
    t = Table(
        title="VMs: addresses from udhcpc, answered by the agents",
        box=box.SIMPLE,
        pad_edge=False,
    )
    for col in ("vm", "network", "host", "mac", "DHCP address", "mtu", "lease in"):
        t.add_column(col)
    for v in summary.vms:
        t.add_row(
            v.name,
            v.network,
            v.host,
            v.mac,
            v.dhcp_ip or "-",
            str(v.mtu or "-"),
            f"{v.dhcp_ms:.0f} ms" if v.dhcp_ms else "-",
        )
    return t


def _ping_table(summary: Summary) -> Table:
    t = Table(title="ping (ICMP echo)", box=box.SIMPLE, pad_edge=False)
    for col in ("ping", "path", "replies", "rtt avg", "min-max", "1st echo"):
        t.add_column(col)
    for p in summary.pings:
        t.add_row(
            f"{p.src} -> {p.dst}",
            p.path,
            f"{p.received}/{p.sent}",
            f"{p.avg_ms:.3f} ms" if p.avg_ms else "-",
            f"{p.min_ms:.3f}-{p.max_ms:.3f}" if p.avg_ms else "-",
            f"{p.first_ms:.2f} ms" if p.first_ms else "-",
        )
    return t


def _result_lines(summary: Summary) -> list[str]:
    """iperf3, security group, isolation, trace and agent metrics, a line each."""
    lines = []
    if summary.iperf3:
        r = summary.iperf3
        lines.append(
            f"iperf3 {r['from']} -> {r['to']} ({r['to_ip']}:{r['port']}): "
            f"[bold]{r['gbit_s']:.2f} Gbit/s[/], {r['retransmits']} retransmits, "
            f"MSS {r['mss']}"
        )
    if summary.security_group:
        lines.append(
            "security group on a4: "
            + ", ".join(
                f"{port} {res}" + (" (dropped)" if res == "timeout" else "")
                for port, res in summary.security_group.items()
            )
        )
    if summary.isolation:
        ok = all(c["ok"] for c in summary.isolation)
        lines.append(
            f"tenant isolation: {'[green]holds[/]' if ok else '[red]BROKEN[/]'} ("
            f"{sum(c['ok'] for c in summary.isolation)}/{len(summary.isolation)} checks)"
        )
    if summary.trace:
        lines.append(
            f"what-if trace a1 -> a4 tcp/5201: {summary.trace['verdict']}; "
            f"tcp/22: {summary.trace['ssh_verdict']}"
        )
    lines += _northsouth_lines(summary)
    for host, m in summary.agents.items():
        short = host.removeprefix(summary.lab + "-")
        lines.append(
            f"agent {short}: {m['upcalls']:.0f} upcalls, {m['flows_installed']:.0f} "
            f"flows installed ({m['flows']:.0f} now)"
        )
    return lines


def _northsouth_lines(summary: Summary) -> list[str]:
    ns = summary.northsouth
    lines = []
    if ns.get("bgp"):
        lines.append(
            "BGP upstream <-> " + ", ".join(f"{n}: {info}" for n, info in ns["bgp"].items())
        )
    if ns.get("upstream_nexthops"):
        spread = ", ".join(f"{n} via {h}" for h, n in sorted(ns["spread"].items()))
        lines.append(
            f"upstream ECMP: {len(ns['upstream_nexthops'])} paths to the floating range; "
            f"flows by hash: {spread}"
        )
    if ns.get("floating_ip"):
        f = ns["floating_ip"]
        lines.append(
            f"external host -> {f['floating_ip']} ({f['vm']}): tcp {f['tcp']}, "
            f"{f['ping_replies']}/3 pings"
        )
    if ns.get("snat"):
        n = ns["snat"]
        lines.append(f"{n['vm']} -> external host: tcp {n['tcp']}, seen as {n['external_saw']}")
    return lines


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.command("demo")(demo)


__all__ = ["register"]
