"""The `netloom` command line.

Each area contributes its commands from its own module through
``register(app: typer.Typer, bench: typer.Typer) -> None``; this file only assembles them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="netloom: network virtualization overlay",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(
    help="Benchmarks: each prints figures measured in one run.", no_args_is_help=True
)
app.add_typer(bench, name="bench")

# Command modules, in help order. Each defines register(app, bench).
COMMAND_MODULES = (
    "netloom.cli.cluster",
    "netloom.cli.objects",
    "netloom.cli.trace",
    "netloom.cli.flows",
    "netloom.cli.simlog",
    "netloom.cli.lab",
    "netloom.cli.agent",
    "netloom.cli.doctor",
    "netloom.cli.demo",
    "netloom.bench.fanout",
    "netloom.bench.sim",
    "netloom.bench.insights",
    "netloom.bench.datapath",
    "netloom.bench.perf.compare",
    "netloom.bench.perf.profile",
    "netloom.cli.northsouth",
    "netloom.cli.failover",
    "netloom.bench.scale",
    "netloom.bench.dense_host.run",
    "netloom.bench.neutron",
)


@app.command()
def version() -> None:
    """Print the version."""
    from netloom import __version__

    typer.echo(__version__)


def _register_all() -> None:
    """Every module must import: a missing one is a broken installation and fails loudly."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app, bench)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
