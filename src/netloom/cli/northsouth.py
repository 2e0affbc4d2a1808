"""``netloom bench northsouth``: parses the options and runs :mod:`netloom.bench.northsouth`."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from netloom.bench.northsouth.run import PARTS, Options, render, run
from netloom.bench.northsouth.throughput import Load
from netloom.bench.perf.workloads import TESTS
from netloom.bench.procs import Progress, run_and_print


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("northsouth")
    def northsouth(
        gateways: Annotated[int, typer.Option(help="gateway hosts")] = 6,
        hosts: Annotated[int, typer.Option(help="compute hosts, a floating IP VM each")] = 2,
        parts: Annotated[str, typer.Option(help="comma-separated parts")] = ",".join(PARTS),
        tests: Annotated[str, typer.Option(help="comma-separated tests")] = ",".join(TESTS),
        reps: Annotated[int, typer.Option(help="interleaved throughput repetitions")] = 3,
        duration: Annotated[int, typer.Option(help="seconds per throughput test")] = 5,
        connections: Annotated[int, typer.Option(help="connections of the spread")] = 600,
        prefixes: Annotated[int, typer.Option(help="prefixes the upstream announces")] = 1000,
        streams: Annotated[int, typer.Option(help="failover streams per gateway")] = 4,
        after: Annotated[float, typer.Option(help="seconds measured after the kill")] = 5.0,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
        detail: Annotated[bool, typer.Option(help="with --json: the measurements too")] = False,
    ) -> None:
        """North-south through a lab's gateways: throughput ratios to a kernel-routed path,
        the spread of connections over the gateways, a gateway's failover under load, 1000
        learned routes in and out."""
        if os.geteuid() != 0:
            typer.echo("bench northsouth needs root (network namespaces)", err=True)
            raise typer.Exit(2)
        opts = Options(
            gateways=gateways,
            hosts=hosts,
            parts=_csv(parts),
            load=Load(_csv(tests), reps, duration),
            connections=connections,
            prefixes=prefixes,
            streams_per_gateway=streams,
            after=after,
        )

        def job(progress: Progress) -> dict[str, Any]:
            res = run(opts, progress)
            if as_json and not detail:
                res.pop("detail")
            return res

        run_and_print(job, render, as_json)


__all__ = ["register"]
