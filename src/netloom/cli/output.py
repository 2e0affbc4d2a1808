"""How the CLI shows records and errors.

Two audiences: scripts get ``--json`` (the API's JSON, untouched, one document per command),
people get rich tables (lists) and key/value views (one record). Errors are printed as ONE line
on stderr by :func:`netloom.errors.print_error`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from netloom.model.kinds import Kind

Doc = dict[str, Any]

MAX_COLUMNS = 8


def console() -> Console:
    """A console on the *current* stdout (tests swap sys.stdout; a module-level console would
    keep writing to the old one)."""
    return Console(file=sys.stdout, soft_wrap=False)


def print_json(body: Any) -> None:
    """The API's JSON as the API sent it (keys in order), indented for diffing."""
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


def cell(value: Any) -> str:
    """A compact text form of a field value: scalars as-is, lists comma-separated, nested
    objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return ", ".join(str(v) for v in value)
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _defaults(kind: Kind) -> dict[str, Any]:
    fields: dict[str, FieldInfo] = kind.record.model_fields
    out: dict[str, Any] = {}
    for name, info in fields.items():
        if name == "id":
            continue
        default = info.get_default(call_default_factory=True)
        out[name] = default.value if hasattr(default, "value") else default
    return out


def columns_for(kind: Kind, docs: Sequence[Doc]) -> list[str]:
    """Which columns a list shows: id, name, the kind's filter fields, then any other field
    that differs from its default in at least one row; capped so a table stays readable
    (``show`` and ``--json`` have everything)."""
    defaults = _defaults(kind)
    ordered = ["id"]
    if "name" in defaults:
        ordered.append("name")
    ordered += [f for f in kind.filters if f not in ordered and f in defaults]
    for name, default in defaults.items():
        if name in ordered:
            continue
        if any(d.get(name, default) != default for d in docs):
            ordered.append(name)
    return ordered[:MAX_COLUMNS]


def render_list(kind: Kind, docs: Sequence[Doc]) -> None:
    cols = columns_for(kind, docs)
    table = Table(title=f"{kind.collection} ({len(docs)})", title_justify="left")
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=c == "id")
    for d in docs:
        table.add_row(*(cell(d.get(c)) for c in cols))
    console().print(table)


def render_record(kind: Kind, doc: Doc) -> None:
    """Every field of one record, in the model's order, then anything else the API added
    (``version``...)."""
    table = Table(show_header=False, box=None, padding=(0, 2), title=kind.name.replace("_", "-"))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    keys = ["id", *(k for k in kind.record.model_fields if k != "id")]
    keys += [k for k in doc if k not in keys]
    for k in keys:
        if k in doc:
            table.add_row(k, cell(doc[k]))
    console().print(table)


def render_rows(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*(cell(v) for v in r))
    console().print(table)


def info(message: str) -> None:
    console().print(message, highlight=False)


__all__ = [
    "cell",
    "columns_for",
    "console",
    "info",
    "print_json",
    "render_list",
    "render_record",
    "render_rows",
]
