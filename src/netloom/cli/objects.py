"""Object commands: a group per kind of :data:`netloom.model.kinds.KINDS`, named like the kind
with dashes (``tunnel-zone``), and ``netloom apply -f``.

Every group has ``create``, ``list``, ``show``, ``update`` and ``delete``
(:mod:`netloom.cli.crud`); ports also get ``bind``/``unbind``/``link``/``unlink``
(:mod:`netloom.cli.ports`); ``apply`` creates a whole topology from one plan file
(:mod:`netloom.cli.apply`). Reference fields (``--tenant-id``...) and the ``ID`` arguments accept
a unique name as well as an id (:class:`netloom.plan.Resolver`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from netloom.cli.apply import apply_cmd
from netloom.cli.common import Settings, guarded, print_version
from netloom.cli.crud import kind_commands
from netloom.cli.ports import port_commands
from netloom.model.kinds import KINDS, Kind


def _root_options(
    ctx: typer.Context,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help=(
                "API URL for object commands, or a comma-separated list tried in turn"
                " (default $NETLOOM_API or http://127.0.0.1:8181)"
            ),
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="object commands print the API's JSON")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=print_version, help="Print the version."),
    ] = False,
) -> None:
    """netloom: network virtualization overlay."""
    del version
    ctx.obj = Settings(api=api, json=json_out)


def kind_app(kind: Kind) -> typer.Typer:
    """The command group of one kind."""
    name = kind.name.replace("_", "-")
    group = typer.Typer(help=f"Manage {kind.collection.replace('_', ' ')}.", no_args_is_help=True)
    kind_commands(kind, group)
    if kind.name == "port":
        port_commands(group)
    group.info.name = name
    return group


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add one group per kind, ``apply``, and the root ``--api``/``--json`` options (only if
    no other module claimed the root callback)."""
    del bench
    if app.registered_callback is None:
        app.callback()(_root_options)
    for kind in KINDS.values():
        app.add_typer(kind_app(kind), name=kind.name.replace("_", "-"))
    app.command("apply")(guarded(apply_cmd))


__all__ = ["kind_app", "register"]
