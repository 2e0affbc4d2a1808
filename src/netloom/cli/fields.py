"""CLI options from the model: what the pydantic record says about each field, in CLI terms,
and option strings turned into JSON values (errors name the field).

The CLI validates only what it must to build a request (JSON syntax, integers); the API is the
one place that checks records, so the CLI and the API can never disagree on what is valid.
"""

from __future__ import annotations

import enum
import inspect
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from netloom.errors import InvalidInput
from netloom.model.kinds import Kind, Ref
from netloom.model.values import IP_PROTOCOLS, RULE_VALUE_FORMS, parse_int

Doc = dict[str, Any]
Shape = Literal["str", "bool", "int", "list", "json_list", "json"]


@dataclass(frozen=True)
class FieldSpec:
    name: str  # record field: "tenant_id"
    shape: Shape
    required: bool
    choices: tuple[str, ...] = ()
    item_int: bool = False  # list of ints
    model: type[BaseModel] | None = None  # nested record of json / json_list fields
    ref: Ref | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def param(self) -> str:
        return "f_" + self.name

    def help(self) -> str:
        parts: list[str] = []
        if self.ref is not None:
            targets = " or ".join(t.replace("_", "-") for t in self.ref.target)
            parts.append(f"{targets} id, unique id prefix or unique name")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.name == "nw_proto":
            parts.append("a number or " + ", ".join(IP_PROTOCOLS))
        if self.shape == "list":
            parts.append("repeatable or comma-separated")
        if self.model is not None:
            keys = ", ".join(self.model.model_fields)
            if self.shape == "json_list":
                parts.append(f"JSON object or list of objects {{{keys}}}; repeatable")
            else:
                parts.append(f"JSON object {{{keys}}}")
                if set(self.model.model_fields) == {"start", "end"}:
                    parts[-1] += " or N or N-M"
        if self.required:
            parts.append("required on create")
        return "; ".join(parts)


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the value type."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _spec(kind: Kind, name: str) -> FieldSpec:
    info = kind.record.model_fields[name]
    tp = _unwrap(info.annotation)
    ref = next((r for r in kind.refs if r.field == name), None)
    required = info.is_required()
    origin = get_origin(tp)
    if tp is bool:
        return FieldSpec(name, "bool", required)
    if tp is int:
        return FieldSpec(name, "int", required)
    if origin is Literal:
        return FieldSpec(name, "str", required, tuple(str(a) for a in get_args(tp)), ref=ref)
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return FieldSpec(name, "str", required, tuple(str(e.value) for e in tp), ref=ref)
    if origin is list:
        item = _unwrap(get_args(tp)[0])
        if _is_model(item):
            return FieldSpec(name, "json_list", required, model=item, ref=ref)
        return FieldSpec(name, "list", required, item_int=item is int, ref=ref)
    if _is_model(tp):
        return FieldSpec(name, "json", required, model=tp, ref=ref)
    return FieldSpec(name, "str", required, ref=ref)


def field_specs(kind: Kind) -> list[FieldSpec]:
    """The writable fields of a kind (``id`` and system-owned fields excluded)."""
    return [
        _spec(kind, n) for n in kind.record.model_fields if n != "id" and n not in kind.read_only
    ]


# Value parsing: option strings -> JSON values.


def parse_json(field: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON: {exc.msg} at char {exc.pos}", field=field) from None


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """Turn what click collected for one option into the JSON value of the field."""
    if spec.shape == "bool":
        return bool(raw)
    if spec.name in RULE_VALUE_FORMS and spec.shape in ("int", "json"):
        return RULE_VALUE_FORMS[spec.name](spec.name, str(raw))  # 22, 1000-2000, tcp
    if spec.shape == "int":
        return parse_int(spec.name, str(raw))
    if spec.shape == "list":
        items = [p.strip() for chunk in raw for p in str(chunk).split(",") if p.strip()]
        return [parse_int(spec.name, i) for i in items] if spec.item_int else items
    if spec.shape == "json_list":
        out: list[Any] = []
        for chunk in raw:
            value = parse_json(spec.name, chunk)
            out.extend(value if isinstance(value, list) else [value])
        return out
    if spec.shape == "json":
        return parse_json(spec.name, str(raw))
    if spec.choices and str(raw) not in spec.choices:
        raise InvalidInput(f"{raw!r} is not one of {', '.join(spec.choices)}", field=spec.name)
    return str(raw)


def load_data(raw: str | None) -> Doc:
    """``--data '{json}'`` or ``--data @file.json`` (``@-``: stdin)."""
    if raw is None:
        return {}
    text = read_text(raw[1:], "data") if raw.startswith("@") else raw
    value = parse_json("data", text)
    if not isinstance(value, dict):
        raise InvalidInput("--data must be a JSON object", field="data")
    return value


def read_text(path: str, field: str) -> str:
    """The text of a file, or of stdin for ``-``; an unreadable file names ``field``."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field=field) from None


def parse_filters(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"filter {pair!r} is not field=value", field="filter")
        out[key.strip().replace("-", "_")] = value
    return out


__all__ = [
    "FieldSpec",
    "field_specs",
    "load_data",
    "parse_filters",
    "parse_json",
    "parse_value",
    "read_text",
]
