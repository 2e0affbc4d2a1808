"""The config file (``/etc/netloom/netloom.toml``): one table per command, ``[cluster]`` and
``[agent]``, each key a long flag name without its ``--`` (``host-timeout = 5.0``).

A command describes its flags as :class:`Option` records (derived from its own parser, so the
keys never drift from the flags); :func:`load_table` reads its table, checks the names and the
TOML types and converts the values. The values' rules stay with the command's own checks:
:meth:`ConfigTable.locate` turns the :class:`InvalidInput` they raise for a value that came from
the file into a :class:`ConfigError` naming the file, the line and the key. Standard library
only (``tomllib``), so the agent's entry point stays light.
"""

from __future__ import annotations

import argparse
import inspect
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from netloom.errors import ConfigError, InvalidInput

DEFAULT_CONFIG = Path("/etc/netloom/netloom.toml")
TABLES = ("cluster", "agent")  # the commands that read the file, one table each
_TOML_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Option:
    """One flag as a config key: ``key`` (the flag without ``--``) sets ``dest`` from a TOML
    value of type ``kind``, through ``convert`` (which raises ValueError for a bad value)."""

    key: str
    dest: str
    kind: type
    convert: Callable[[Any], Any] = _same
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigTable:
    """One command's table of a config file: converted values and their lines, by ``dest``."""

    path: Path
    table: str
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def error(self, dest: str, message: str) -> ConfigError:
        """A ConfigError naming the file, the line and the key of ``dest``."""
        return ConfigError(
            f"{self.path}:{self.lines[dest]}: [{self.table}] {self.keys[dest]}: {message}",
            field=self.keys[dest],
        )

    def locate(self, exc: InvalidInput, used: Mapping[str, Any]) -> InvalidInput:
        """``exc`` about a value the file gave (``used[field]`` is the file's value: no flag
        replaced it) as a ConfigError naming its line; any other error unchanged."""
        dest = exc.field
        if dest is None or dest not in self.values or used.get(dest) != self.values[dest]:
            return exc
        return self.error(dest, exc.message)


def load_table(path: Path, table: str, options: Iterable[Option]) -> ConfigTable:
    """Read ``path`` and return its ``[table]``; ConfigError for a missing or unreadable file,
    bad TOML, an unknown table or key, a wrong type or a value ``convert`` refuses."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the config file: {reason}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}:{_syntax_error(str(exc))}") from None
    lines = _key_lines(text)
    for name, value in doc.items():
        if not isinstance(value, dict) or name not in TABLES:
            line = lines.get(("", name), 1)
            raise ConfigError(
                f"{path}:{line}: unknown table [{name}] (the tables are "
                + ", ".join(f"[{t}]" for t in TABLES)
                + ")",
                field=name,
            )
    by_key = {o.key: o for o in options}
    out = ConfigTable(path, table)
    for key, value in doc.get(table, {}).items():
        line = lines.get((table, key), lines.get(("", table), 1))
        option = by_key.get(key)
        if option is None:
            known = ", ".join(sorted(by_key))
            raise ConfigError(
                f"{path}:{line}: [{table}] unknown key {key!r} (known: {known})", field=key
            )
        out.values[option.dest] = _convert(option, value, f"{path}:{line}: [{table}] {key}")
        out.lines[option.dest] = line
        out.keys[option.dest] = key
    return out


def _convert(option: Option, value: Any, where: str) -> Any:
    ok = isinstance(value, option.kind) and not (option.kind is not bool and type(value) is bool)
    if option.kind is float and type(value) is int:
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(
            f"{where}: expected {_TOML_NAMES[option.kind]}, got {type(value).__name__} {value!r}",
            field=option.key,
        )
    if option.choices and value not in option.choices:
        raise ConfigError(
            f"{where}: {value!r} is not one of {', '.join(option.choices)}", field=option.key
        )
    try:
        return option.convert(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: bad value {value!r}: {exc}", field=option.key) from None


def _syntax_error(message: str) -> str:
    """tomllib's ``... (at line L, column C)`` as ``L:C: not TOML: ...``."""
    m = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if m is None:
        return f" not TOML: {message}"
    return f"{m[1]}:{m[2]}: not TOML: {message[: m.start()].strip()}"


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*([A-Za-z0-9_.-]+|"[^"]*"|'[^']*')\s*=""")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Where each ``(table, key)`` is written (tables themselves under ``("", name)``): a
    line scan good for the flat tables of this file (tomllib does not report positions)."""
    out: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header[1]
            out.setdefault(("", table), number)
            continue
        key = _KEY.match(line)
        if key:
            name = key[1].strip("\"'")
            where = table
            if not table and "." in name:  # a dotted key at the top: agent.mtu = 1500
                where, _, name = name.partition(".")
                out.setdefault(("", where), number)
            out.setdefault((where, name), number)
    return out


# ---------------------------------------------------------------------------------------------
# Options derived from a command's own parser.


def argparse_options(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> list[Option]:
    """The long flags of an argparse parser as config keys (not ``--help`` nor ``skip``):
    ``store_true``/``store_false`` flags take true or false, typed flags their type."""
    out = []
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in ("help", *skip):
            continue
        key = longs[0].removeprefix("--")
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            negate = isinstance(action, argparse._StoreFalseAction)
            out.append(Option(key, action.dest, bool, (lambda v: not v) if negate else _same))
            continue
        kind: type = str
        convert: Callable[[Any], Any] = _same
        if action.type in (int, float):
            kind = typing.cast(type, action.type)
        if callable(action.type):
            convert = action.type
        choices = tuple(str(c) for c in action.choices) if action.choices else ()
        out.append(Option(key, action.dest, kind, convert, choices))
    return out


def signature_options(func: Callable[..., Any], skip: Sequence[str] = ()) -> list[Option]:
    """The parameters of a command function as config keys (``host_timeout`` ↔
    ``host-timeout``), typed by their annotations (str, int, float, bool or Path)."""
    hints = typing.get_type_hints(func)
    out = []
    for name in inspect.signature(func).parameters:
        if name in skip:
            continue
        base = _base_type(hints[name])
        kind = str if base is Path else base
        out.append(Option(name.replace("_", "-"), name, kind, Path if base is Path else _same))
    return out


def _base_type(hint: Any) -> type:
    """``T`` out of ``T`` or ``T | None``."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        hint = args[0]
    if hint not in _TOML_NAMES and hint is not Path:
        raise TypeError(f"no config key type for {hint!r}")
    return typing.cast(type, hint)


__all__ = [
    "DEFAULT_CONFIG",
    "TABLES",
    "ConfigTable",
    "Option",
    "argparse_options",
    "load_table",
    "signature_options",
]
