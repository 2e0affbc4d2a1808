"""Plumbing shared by the object commands: per-command settings, one-line failures, how one
record is shown, the progress display."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netloom.api.client import default_api_url
from netloom.cli import output
from netloom.errors import ApiUnreachable, NetloomError, print_error
from netloom.model.kinds import Kind

Doc = dict[str, Any]

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3

IDENT = Annotated[str, typer.Argument(help="id, or unique name", metavar="ID")]


@dataclass
class Settings:
    api: str | None = None
    json: bool = False


def settings(ctx: typer.Context | None, api: str | None, json_out: bool) -> Settings:
    """Per-command options win over the root ``netloom --api/--json`` ones, which win over
    ``$NETLOOM_API``."""
    root = ctx.find_root().obj if ctx is not None else None
    base = root if isinstance(root, Settings) else Settings()
    return Settings(api=api or base.api or default_api_url(), json=json_out or base.json)


def fail(exc: BaseException) -> NoReturn:
    print_error(exc)
    raise typer.Exit(EXIT_UNREACHABLE if isinstance(exc, ApiUnreachable) else EXIT_FAILED)


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Every failure becomes one stderr line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except NetloomError as exc:
            fail(exc)
        except KeyboardInterrupt:
            fail(NetloomError("interrupted"))

    return wrapper


def show(kind: Kind, doc: Doc, opts: Settings) -> None:
    if opts.json:
        output.print_json(doc)
    else:
        output.render_record(kind, doc)


def progress(total: int | None = None) -> Progress:
    """A progress display on stderr (stdout stays clean for ``--json``), drawn only on a
    terminal so logs and pipes get no control characters."""
    err = Console(file=sys.stderr)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if total is None:
        columns = [TextColumn("{task.description}"), TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


__all__ = [
    "EXIT_FAILED",
    "EXIT_UNREACHABLE",
    "IDENT",
    "Settings",
    "fail",
    "guarded",
    "progress",
    "settings",
    "show",
]
