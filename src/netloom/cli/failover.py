"""``netloom bench failover``: parses the options and runs :mod:`netloom.bench.failover`."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from netloom.bench.failover import Options, render, run
from netloom.bench.procs import Progress, run_and_print


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("failover")
    def failover(
        clients: Annotated[int, typer.Option(help="threads creating ports")] = 8,
        hosts: Annotated[int, typer.Option(help="hosts, one pinging VM each")] = 3,
        before: Annotated[float, typer.Option(help="seconds of load before the kill")] = 1.5,
        after: Annotated[float, typer.Option(help="seconds of load after the kill")] = 4.0,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Kill -9 one of three cluster processes (one ZooKeeper ensemble) while clients create
        ports and VMs ping across hosts: retried calls, lost or duplicated ports, the agents'
        reconnection time, lost pings."""
        if os.geteuid() != 0:
            typer.echo("bench failover needs root (network namespaces)", err=True)
            raise typer.Exit(2)
        if clients < 1 or hosts < 2 or before < 0 or after <= 0:
            typer.echo("error: --clients >= 1, --hosts >= 2, --before >= 0, --after > 0", err=True)
            raise typer.Exit(2)
        opts = Options(clients=clients, hosts=hosts, before=before, after=after)

        def job(progress: Progress) -> dict[str, Any]:
            return run(opts, progress)

        run_and_print(job, render, as_json)


__all__ = ["register"]
