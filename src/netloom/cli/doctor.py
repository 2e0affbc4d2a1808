"""``netloom doctor``: what this host lacks for its role (the checks are
:mod:`netloom.deploy.doctor`, the facts :mod:`netloom.deploy.probe`); ``--packages`` prints the
role's Debian packages, one per line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netloom.deploy.config import DEFAULT_CONFIG, signature_options
from netloom.deploy.packages import ROLES, packages
from netloom.errors import NetloomError, print_error

RoleOpt = Annotated[str, typer.Option("--role", help="agent | gateway | cluster | zookeeper")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help=f"the hosts' config file (default: {DEFAULT_CONFIG} if present)"),
]
PackagesOpt = Annotated[
    bool, typer.Option("--packages", help="print the role's Debian packages, one per line")
]


def doctor(
    role: RoleOpt = "agent", config: ConfigOpt = None, packages_: PackagesOpt = False
) -> None:
    """Check this host for its role: kernel and BPF features, bpffs, tc, packages (bird2 on
    gateways), clock, underlay MTU, ZooKeeper; exit 1 when something required is missing."""
    from netloom.cli.cluster import cluster
    from netloom.deploy.doctor import diagnose, failed
    from netloom.deploy.probe import gather, planned

    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}, not {role!r}", err=True)
        raise typer.Exit(2)
    if packages_:
        typer.echo("\n".join(packages(role)))
        return
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    try:
        plan = planned(config, signature_options(cluster, ("ctx", "config")))
    except NetloomError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    findings = diagnose(gather(role, plan))
    for f in findings:
        typer.echo(f"{f.status:<8} {f.check:<10} {f.detail}")
        if f.fix and f.status != "OK":
            typer.echo(f"{'':<19} fix: {f.fix}")
    if failed(findings):
        raise typer.Exit(1)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.command("doctor")(doctor)


__all__ = ["doctor", "register"]
