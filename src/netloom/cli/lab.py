"""``netloom lab``: a whole netloom deployment in network namespaces on this machine.

``lab up`` builds the underlay switch, host and VM namespaces, the cluster (inside the switch
namespace, on 192.0.2.1), a default tenant topology and, when this installation has it, one
``netloom agent`` per host; ``lab status`` shows it, ``lab exec VM -- CMD`` runs a command in a
VM, ``lab down`` removes everything the lab made (also after a crash halfway). See
:mod:`netloom.lab.lab` for the layout and why the cluster lives in the switch namespace.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from netloom.cli.output import console, print_json
from netloom.errors import InvalidInput, NetloomError, NotFound, print_error
from netloom.lab import nsexec
from netloom.lab.addressing import MAX_CLUSTERS
from netloom.lab.lab import Lab, labs
from netloom.lab.lab import down as lab_down

lab_app = typer.Typer(help="A netloom lab in network namespaces.", no_args_is_help=True)
vm_app = typer.Typer(help="VMs booted on ports, as Nova/os-vif does.", no_args_is_help=True)
lab_app.add_typer(vm_app, name="vm")

NameOpt = Annotated[str | None, typer.Option("--name", help="lab name (default: the only lab)")]
StaticIpOpt = Annotated[
    bool,
    typer.Option(
        "--static-ip/--no-static-ip",
        help="write each VM's fixed IP into the VM (else: leave it to DHCP)",
    ),
]
DatapathOpt = Annotated[
    str | None,
    typer.Option("--datapath", help="the agents' datapath: memory | bpf (default: the agent's)"),
]
GatewaysOpt = Annotated[
    int,
    typer.Option(
        "--gateways",
        help="gateway hosts gw1..gwN with uplinks to an upstream router (bird2) and an "
        "external host behind it; a provider router with BGP, floating IPs and SNAT",
    ),
]
FloatingIpsOpt = Annotated[
    int | None,
    typer.Option(
        "--floating-ips",
        help="with --gateways: how many VMs get a floating IP (default: vm1 of each host)",
    ),
]
BfdOpt = Annotated[bool, typer.Option("--bfd/--no-bfd", help="BFD on the uplinks' BGP sessions")]


def _fail(exc: BaseException) -> typer.Exit:
    print_error(exc)
    return typer.Exit(1)


def _resolve(name: str | None) -> str:
    """The lab a command is about: ``--name``, else the only lab that exists."""
    if name:
        return name
    existing = labs()
    if len(existing) == 1:
        return existing[0]
    if not existing:
        raise NotFound("no lab is up (`netloom lab up` creates one)", field="name")
    raise InvalidInput(f"several labs exist ({', '.join(existing)}): pass --name", field="name")


@lab_app.command("up")
def up(
    hosts: Annotated[int, typer.Option("--hosts", help="number of hosts")] = 2,
    vms_per_host: Annotated[int, typer.Option("--vms-per-host", help="VMs on each host")] = 2,
    mtu: Annotated[int, typer.Option("--mtu", help="underlay MTU: 1500 or 9000")] = 1500,
    store: Annotated[str, typer.Option("--store", help="sqlite | zookeeper")] = "sqlite",
    clusters: Annotated[
        int, typer.Option("--clusters", help="cluster processes (several: --store zookeeper)")
    ] = 1,
    name: Annotated[str | None, typer.Option("--name", help="lab name (default: random)")] = None,
    tx_off: Annotated[bool, typer.Option("--tx-off", help="ethtool -K eth0 tx off in VMs")] = False,
    static_ip: StaticIpOpt = True,
    agents: Annotated[
        bool, typer.Option("--agents/--no-agents", help="start a netloom agent per host")
    ] = True,
    datapath: DatapathOpt = None,
    gateways: GatewaysOpt = 0,
    floating_ips: FloatingIpsOpt = None,
    bfd: BfdOpt = True,
    keep_on_error: Annotated[
        bool, typer.Option("--keep-on-error", help="leave a failed lab for inspection")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Create a lab: underlay, hosts, VMs, cluster, default topology, agents (and with
    --gateways: gateway hosts, the upstream router, the external host)."""
    try:
        if store not in ("sqlite", "zookeeper"):
            raise InvalidInput(f"--store must be sqlite or zookeeper, not {store}", field="store")
        if not 1 <= clusters <= MAX_CLUSTERS or (clusters > 1 and store != "zookeeper"):
            raise InvalidInput(
                f"--clusters must be 1, or up to {MAX_CLUSTERS} with --store zookeeper",
                field="clusters",
            )
        lab = Lab.create(
            name, mtu=mtu, store="zookeeper" if store == "zookeeper" else "sqlite", tx_off=tx_off
        )
    except NetloomError as exc:
        raise _fail(exc) from None
    try:
        lab.up(
            hosts,
            vms_per_host,
            static_ip=static_ip,
            agents=agents,
            datapath=datapath,
            gateways=gateways,
            floating_ips=floating_ips,
            bfd=bfd,
            clusters=clusters,
        )
    except BaseException as exc:
        _failed(lab, exc, keep_on_error=keep_on_error)
        raise typer.Exit(1) from None
    _show(lab.status(), as_json)


def _failed(lab: Lab, exc: BaseException, *, keep_on_error: bool) -> None:
    print_error(exc)
    if keep_on_error:
        sys.stderr.write(
            f"lab {lab.name} left as it is; `netloom lab down --name {lab.name}` removes it\n"
        )
    else:
        lab.down()
        sys.stderr.write(f"lab {lab.name} removed again\n")


@lab_app.command("status")
def status(
    name: NameOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Hosts, VMs, cluster URL and which of the lab's processes are alive; restarts agents
    that died (at most 5 restarts in 2 minutes each, with back-off)."""
    try:
        if name is None and not labs():
            if as_json:
                print_json([])
            else:
                console().print("no lab is up")
            return
        lab = Lab.load(_resolve(name))
        for action in lab.supervise():
            sys.stderr.write(f"{action}\n")
        _show(lab.status(), as_json)
    except NetloomError as exc:
        raise _fail(exc) from None


@lab_app.command("list")
def list_() -> None:
    """Names of the labs that have a state file."""
    for n in labs():
        typer.echo(n)


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_(
    vm: Annotated[
        str, typer.Argument(help="VM (h1-vm1, its netns name or its IP), host (h1, gw1), ext or up")
    ],
    command: Annotated[list[str], typer.Argument(help="the command, after --")],
    name: NameOpt = None,
) -> None:
    """Run a command inside a VM's namespace (``netloom lab exec h1-vm1 -- ip addr``), a
    host's (``h1``, ``gw1``), the external host's (``ext``) or the upstream router's (``up``)."""
    try:
        target = Lab.load(_resolve(name)).netns_of(vm)
        argv = nsexec.nsenter_argv(target, command)
    except NetloomError as exc:
        raise _fail(exc) from None
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise _fail(exc) from None


@lab_app.command("down")
def down(
    name: NameOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="every lab")] = False,
) -> None:
    """Remove everything a lab created; a no-op when nothing is left."""
    try:
        if all_:
            targets = labs()
        elif name is None and not labs():
            targets = []
        else:
            targets = [_resolve(name)]
        for target in targets:
            removed = lab_down(target)
            typer.echo(f"lab {target}: removed {len(removed)} item(s)")
            for item in removed:
                typer.echo(f"  {item}")
        if not targets:
            typer.echo("nothing to remove")
    except NetloomError as exc:
        raise _fail(exc) from None


@vm_app.command("add")
def vm_add(
    port: Annotated[str, typer.Option("--port", help="the port's id (Neutron or native)")],
    host: Annotated[str, typer.Option("--host", help="the lab host to boot on (h1, h2 ...)")],
    vm: Annotated[
        str | None, typer.Option("--vm", help="VM name (default: the port id's first 8 chars)")
    ] = None,
    dhcp: Annotated[bool, typer.Option("--dhcp/--no-dhcp", help="take an address by DHCP")] = True,
    name: NameOpt = None,
) -> None:
    """Boot a VM on a port as Nova/os-vif does: its host-side interface is ``tap`` + the
    first 11 characters of the port id (bind the port with ``binding:host_id`` = the host's
    NSDB name, ``<lab>-h1``: ``openstack port set --host <lab>-h1 PORT``), its address by
    DHCP from the agent."""
    try:
        got = Lab.load(_resolve(name)).boot_vm(port, host, vm or port[:8], dhcp=dhcp)
    except NetloomError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"vm {got.name}: netns {got.netns}, {got.host_if} on {got.host}, mac {got.mac}, "
        f"ip {got.ip or '-'}"
    )


@vm_app.command("del")
def vm_del(
    vm: Annotated[str, typer.Argument(help="the VM (its lab name or namespace)")],
    name: NameOpt = None,
) -> None:
    """Delete a VM (its tap goes with it: the agent reports the port unplugged)."""
    try:
        Lab.load(_resolve(name)).remove_vm(vm)
    except NetloomError as exc:
        raise _fail(exc) from None
    typer.echo(f"vm {vm}: deleted")


# -- display -------------------------------------------------------------------------------------


def _show(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(st)
        return
    out = console()
    cl = st["cluster"]
    out.print(
        f"[bold]lab {st['name']}[/]  phase={st['phase']}  mtu={st['mtu']} "
        f"(VMs {st['vm_mtu']})  store={st['store']}  tx_off={st['tx_off']}"
    )
    if st["error"]:
        out.print(f"[red]error: {st['error']}[/]")
    if cl:
        out.print(
            f"cluster: api {cl['api_url']}  topology {cl['topology']}  "
            f"alive={cl['alive']}  (netns {cl['netns']})"
        )
        out.print(f"  reach it: {cl['reach']}")
    hosts = Table(title="hosts")
    for col in ("host", "netns", "underlay", "host id", "alive", "agent pids"):
        hosts.add_column(col)
    for h in st["hosts"]:
        hosts.add_row(
            h["name"],
            h["netns"] + ("" if h["exists"] else " (gone)"),
            h["underlay_ip"],
            (h["host_id"] or "")[:8],
            _yn(h["alive"]),
            ",".join(str(p) for p in h["agent_pids"]) or "-",
        )
    out.print(hosts)
    vms = Table(title="VMs")
    for col in ("vm", "netns", "host", "host if", "mac", "ip", "port"):
        vms.add_column(col)
    for v in st["vms"]:
        vms.add_row(
            v["name"],
            v["netns"] + ("" if v["exists"] else " (gone)"),
            v["host"],
            v["host_if"],
            v["mac"],
            v["ip"] or "",
            (v["port_id"] or "")[:8],
        )
    out.print(vms)
    _show_outside(st)
    out.print(
        f"agents: {st['agents']}; processes alive: "
        f"{sum(1 for p in st['processes'] if p['alive'])}/{len(st['processes'])}"
    )


def _show_outside(st: dict[str, Any]) -> None:
    o = st.get("outside")
    if not o:
        return
    out = console()
    out.print(
        f"outside: upstream router netns {o['upstream_netns']} (bird2, AS {o['upstream_as']}, "
        f"birdc -s {o['bird_socket']}), external host netns {o['external_netns']}"
    )
    for u in st["uplinks"]:
        out.print(
            f"  uplink gw{u['index']}: {u['host']} {u['host_if']} (port {u['port_address']}) "
            f"<-> upstream {u['upstream_if']} {u['upstream_address']}"
        )
    fips = [f"{v['name']} {v['floating_ip']}" for v in st["vms"] if v.get("floating_ip")]
    if fips:
        out.print(f"  floating IPs: {', '.join(fips)}; the other VMs leave through SNAT")


def _yn(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.add_typer(lab_app, name="lab")


__all__ = ["lab_app", "register"]
