"""Port sub-commands: ``bind``/``unbind`` (a port to a host interface) and ``link``/``unlink``
(two ports, an interior link)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli.common import COLUMN, FORMAT, IDENT, Settings, guarded, settings, show
from netloom.model.kinds import KINDS
from netloom.plan import Resolver

_PORT = KINDS["port"]


def _port_bind(
    ctx: typer.Context,
    port: IDENT,
    host: Annotated[str, typer.Option("--host", help="host id or name")],
    interface: Annotated[str, typer.Option("--interface", help="interface name on that host")],
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
    fmt: FORMAT = None,
    columns: COLUMN = None,
) -> None:
    """Bind a port to an interface of a host (makes it exterior)."""
    opts = settings(ctx, api, json_out, fmt, columns)
    with ApiClient(opts.api) as client:
        r = Resolver(client)
        show(
            _PORT,
            client.bind_port(r.ident(_PORT, port), r.ident(KINDS["host"], host), interface),
            opts,
            client,
        )


def _port_unbind(
    ctx: typer.Context,
    port: IDENT,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
    fmt: FORMAT = None,
    columns: COLUMN = None,
) -> None:
    """Remove a port's binding."""
    opts = settings(ctx, api, json_out, fmt, columns)
    with ApiClient(opts.api) as client:
        _after(client, client.unbind_port(Resolver(client).ident(_PORT, port)), port, opts)


def _port_link(
    ctx: typer.Context,
    port: IDENT,
    peer: Annotated[str, typer.Option("--peer", help="peer port id or name")],
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
    fmt: FORMAT = None,
    columns: COLUMN = None,
) -> None:
    """Link two ports (interior link, e.g. router port <-> bridge port)."""
    opts = settings(ctx, api, json_out, fmt, columns)
    with ApiClient(opts.api) as client:
        r = Resolver(client)
        show(_PORT, client.link_ports(r.ident(_PORT, port), r.ident(_PORT, peer)), opts, client)


def _port_unlink(
    ctx: typer.Context,
    port: IDENT,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
    fmt: FORMAT = None,
    columns: COLUMN = None,
) -> None:
    """Remove a port's link (both sides)."""
    opts = settings(ctx, api, json_out, fmt, columns)
    with ApiClient(opts.api) as client:
        _after(client, client.unlink_port(Resolver(client).ident(_PORT, port)), port, opts)


def _after(client: ApiClient, body: Any, port: str, opts: Settings) -> None:
    """Show what an unbind/unlink answered; an empty answer shows the port as it is now."""
    if isinstance(body, dict):
        show(_PORT, body, opts, client)
    elif not opts.json:
        doc = client.get(_PORT.collection, Resolver(client).ident(_PORT, port))
        show(_PORT, doc, opts, client)


def port_commands(group: typer.Typer) -> None:
    """Add ``bind``, ``unbind``, ``link`` and ``unlink`` to the port group."""
    group.command("bind")(guarded(_port_bind))
    group.command("unbind")(guarded(_port_unbind))
    group.command("link")(guarded(_port_link))
    group.command("unlink")(guarded(_port_unlink))


__all__ = ["port_commands"]
