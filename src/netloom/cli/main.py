"""The `netloom` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="netloom: network virtualization overlay", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the version."""
    from netloom import __version__

    typer.echo(__version__)


def main() -> None:
    app()
