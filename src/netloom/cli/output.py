"""How the CLI shows records and errors.

Two audiences: people get rich tables (lists, ids cut to 8 characters) and key/value views (one
record); scripts choose ``-f json|yaml|value|csv`` (full ids) and ``-c`` columns; ``--json`` is
``-f json``: the API's JSON, untouched, one document per command. Errors are printed as ONE line
on stderr by :func:`netloom.errors.print_error`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from netloom.cli import columns
from netloom.model.kinds import Kind

Doc = dict[str, Any]
Names = Mapping[str, str]

FORMATS = ("table", "json", "yaml", "value", "csv")


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


@dataclass(frozen=True)
class View:
    """How records are printed: ``-f FORMAT``, ``-c COLUMN`` (repeatable), ``--long``."""

    format: str = "table"
    columns: tuple[str, ...] = ()
    long: bool = False


def _plain(kind: Kind, docs: Sequence[Doc], cols: Sequence[str], names: Names) -> list[Doc]:
    return [{c: columns.value(kind, d, c, names) for c in cols} for d in docs]


def _print_yaml(body: Any) -> None:
    sys.stdout.write(yaml.safe_dump(body, sort_keys=False, default_flow_style=False))


def _print_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([cell(v) for v in r])


def _print_values(rows: Iterable[Sequence[Any]]) -> None:
    for r in rows:
        sys.stdout.write(" ".join(cell(v) for v in r) + "\n")


def render_list(
    kind: Kind,
    docs: Sequence[Doc],
    view: View = View(),
    names: Names | None = None,
    raw: Any = None,
) -> None:
    """A list in ``view.format``. json/yaml without ``-c`` print the records whole (json: the
    API's answer ``raw`` untouched when given); every other form prints the columns, with the
    names of referenced objects (``names``: id -> name) next to their ids."""
    names = names or {}
    if view.format in ("json", "yaml") and not view.columns:
        if view.format == "json":
            print_json(raw if raw is not None else list(docs))
        else:
            _print_yaml([{k: d[k] for k in record_keys(kind, d)} for d in docs])
        return
    base = list_columns(kind, docs, view.long)
    cols = columns.pick(kind, base, view.columns)
    rows = [[columns.value(kind, d, c, names) for c in cols] for d in docs]
    if view.format == "json":
        print_json(_plain(kind, docs, cols, names))
    elif view.format == "yaml":
        _print_yaml(_plain(kind, docs, cols, names))
    elif view.format == "csv":
        _print_csv(cols, rows)
    elif view.format == "value":
        _print_values(rows)
    else:
        _table(kind, cols, rows, f"{kind.collection} ({len(docs)})")


def list_columns(kind: Kind, docs: Sequence[Doc], long: bool = False) -> list[str]:
    """The columns of a list without ``-c``: the fields, each reference followed by its name
    column (``long``: every one; else those set in some row)."""
    return columns.with_names(kind, columns.columns_for(kind, docs, long), None if long else docs)


def _table(kind: Kind, cols: Sequence[str], rows: Sequence[Sequence[Any]], title: str) -> None:
    """A rich table; id columns show :data:`columns.SHORT_ID`-character ids and never wrap."""
    ids = columns.id_columns(kind)
    table = Table(title=title, title_justify="left")
    for c in cols:
        if c in ids:
            table.add_column(c, no_wrap=True, overflow="ellipsis")
        else:
            table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(
            *(cell(columns.short_id(v) if c in ids else v) for c, v in zip(cols, r, strict=True))
        )
    console().print(table)


def record_keys(kind: Kind, doc: Doc) -> list[str]:
    """A record's keys in the model's order, then anything else the API added (``version``)."""
    keys = ["id", *(k for k in kind.record.model_fields if k != "id")]
    return [k for k in keys if k in doc] + [k for k in doc if k not in keys]


def render_record(kind: Kind, doc: Doc, view: View = View(), names: Names | None = None) -> None:
    """One record in ``view.format``: a field/value view for people (full ids, each followed by
    the referenced object's name), or the chosen fields for scripts."""
    names = names or {}
    if view.format == "json" and not view.columns:
        print_json(doc)
        return
    cols = columns.pick(kind, record_keys(kind, doc), view.columns)
    values = [columns.value(kind, doc, c, names) for c in cols]
    if view.format == "json":
        print_json(dict(zip(cols, values, strict=True)))
    elif view.format == "yaml":
        _print_yaml(dict(zip(cols, values, strict=True)))
    elif view.format == "csv":
        _print_csv(cols, [values])
    elif view.format == "value":
        _print_values([v] for v in values)
    else:
        _field_table(kind, cols, values, names)


def _field_table(kind: Kind, cols: Sequence[str], values: Sequence[Any], names: Names) -> None:
    refs = {r.field for r in kind.refs if not r.many}
    table = Table(show_header=False, box=None, padding=(0, 2), title=kind.name.replace("_", "-"))
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for c, v in zip(cols, values, strict=True):
        text = cell(v)
        if c in refs and v and str(v) in names:
            text += f" ({names[str(v)]})"
        table.add_row(c, text)
    console().print(table)


def render_rows(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for h in header:
        if h == "id" or h.endswith("_id"):
            table.add_column(h, no_wrap=True)  # an id is never cut mid-string
        else:
            table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*(cell(v) for v in r))
    console().print(table)


def info(message: str) -> None:
    console().print(message, highlight=False)


__all__ = [
    "FORMATS",
    "View",
    "cell",
    "console",
    "info",
    "list_columns",
    "print_json",
    "record_keys",
    "render_list",
    "render_record",
    "render_rows",
]
