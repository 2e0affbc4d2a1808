"""Plumbing shared by the object commands: per-command settings, one-line failures, how one
record is shown, the progress display."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netloom.api.client import ApiClient, default_api_url
from netloom.cli import columns as cols
from netloom.cli import output
from netloom.errors import ApiUnreachable, InvalidInput, NetloomError, print_error
from netloom.model.kinds import KINDS, Kind

Doc = dict[str, Any]

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3


IDENT = Annotated[str, typer.Argument(help="id, unique id prefix or unique name", metavar="ID")]
FORMAT = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="output format: " + ", ".join(output.FORMATS) + " (default table)",
        metavar="|".join(output.FORMATS),
    ),
]
COLUMN = Annotated[
    list[str] | None,
    typer.Option("--column", "-c", help="show this column (repeatable)", metavar="COLUMN"),
]


@dataclass
class Settings:
    api: str | None = None
    json: bool = False
    view: output.View = field(default_factory=output.View)


def settings(
    ctx: typer.Context | None,
    api: str | None,
    json_out: bool,
    fmt: str | None = None,
    columns: list[str] | None = None,
    long: bool = False,
) -> Settings:
    """Per-command options win over the root ``netloom --api/--json`` ones, which win over
    ``$NETLOOM_API``. ``--json`` is ``-f json``."""
    root = ctx.find_root().obj if ctx is not None else None
    base = root if isinstance(root, Settings) else Settings()
    if fmt is not None and fmt not in output.FORMATS:
        raise InvalidInput(
            f"format {fmt!r}: want one of {', '.join(output.FORMATS)}", field="format"
        )
    chosen = "json" if json_out or (fmt is None and base.json) else fmt or base.view.format
    view = output.View(chosen, tuple(columns or ()), long)
    return Settings(api=api or base.api or default_api_url(), json=chosen == "json", view=view)


def opts_of(kw: dict[str, Any]) -> Settings:
    """The settings of a command built on :func:`common_params`, from its keyword arguments."""
    return settings(
        kw["ctx"],
        kw["api"],
        kw["json_out"],
        kw.get("fmt"),
        kw.get("columns"),
        kw.get("long", False),
    )


def kw_param(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def common_params(view: bool = True) -> list[inspect.Parameter]:
    """``--api``, ``--json`` and (``view``) ``-f``/``-c`` of every object command."""
    shown = [kw_param("fmt", FORMAT), kw_param("columns", COLUMN)] if view else []
    return [
        *shown,
        kw_param("ctx", typer.Context),
        kw_param(
            "api",
            Annotated[
                str | None,
                typer.Option(
                    "--api",
                    help="API URL, or a comma-separated list tried in turn (default $NETLOOM_API or http://127.0.0.1:8181)",
                ),
            ],
        ),
        kw_param(
            "json_out",
            Annotated[bool, typer.Option("--json", help="print the API's JSON")],
            False,
        ),
    ]


def with_signature(fn: Callable[..., None], params: list[inspect.Parameter]) -> Callable[..., None]:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    return fn


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


def names_of(
    client: ApiClient, kind: Kind, docs: Sequence[Doc], shown: Sequence[str]
) -> dict[str, str]:
    """id -> name of the objects the references in ``docs`` name, for the name columns among
    ``shown``: one list call per referenced kind, whatever the number of rows."""
    targets: set[str] = set()
    for ref in cols.name_columns(kind, shown):
        if any(d.get(ref.field) for d in docs):
            targets.update(ref.target)
    return {
        str(d["id"]): str(d.get("name") or "")
        for t in sorted(targets)
        for d in client.list(KINDS[t].collection)
    }


def show(kind: Kind, doc: Doc, opts: Settings, client: ApiClient | None = None) -> None:
    """One record as ``opts`` asks; with ``client``, references show their object's name."""
    view = opts.view
    names: dict[str, str] = {}
    if client is not None and (view.format == "table" or view.columns):
        shown = list(view.columns) or cols.with_names(kind, output.record_keys(kind, doc))
        names = names_of(client, kind, [doc], shown)
    output.render_record(kind, doc, view, names)


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


def print_version(value: bool) -> None:
    """``netloom --version``: ``netloom <version>``, then exit."""
    if value:
        from netloom import __version__

        typer.echo(f"netloom {__version__}")
        raise typer.Exit()


__all__ = [
    "COLUMN",
    "EXIT_FAILED",
    "EXIT_UNREACHABLE",
    "FORMAT",
    "IDENT",
    "Settings",
    "common_params",
    "fail",
    "guarded",
    "kw_param",
    "names_of",
    "opts_of",
    "print_version",
    "progress",
    "settings",
    "show",
    "with_signature",
]
