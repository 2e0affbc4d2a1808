"""Which columns a list or a record shows, and the value of each: record fields, and for every
reference field ``X_id`` a derived ``X_name`` column holding the referenced object's name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic.fields import FieldInfo

from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS, Kind, Ref

Doc = dict[str, Any]

MAX_COLUMNS = 8
SHORT_ID = 8

# Columns a list shows right after id and name, before the kind's filter fields.
PREFERRED: dict[str, tuple[str, ...]] = {
    "port": ("device_id", "type", "fixed_ips", "address", "mac", "host_id"),
    "rule": ("chain_id", "position", "action"),
    "route": ("router_id", "dst", "type", "next_hop_port_id", "next_hop_gateway", "system"),
    "dhcp_subnet": ("bridge_id", "cidr", "gateway"),
    "bgp_peer": ("router_id", "address", "asn", "local_as"),
    "bgp_network": ("router_id", "prefix"),
}


def _defaults(kind: Kind) -> dict[str, Any]:
    fields: dict[str, FieldInfo] = kind.record.model_fields
    out: dict[str, Any] = {}
    for name, info in fields.items():
        if name == "id":
            continue
        default = info.get_default(call_default_factory=True)
        out[name] = default.value if hasattr(default, "value") else default
    return out


def columns_for(kind: Kind, docs: Sequence[Doc], long: bool = False) -> list[str]:
    """The record fields a list shows: id, name, the kind's preferred and filter fields, then
    any other field that differs from its default in at least one row, capped at
    :data:`MAX_COLUMNS` so a table stays readable; ``long``: every field, uncapped."""
    defaults = _defaults(kind)
    ordered = ["id"]
    if "name" in defaults:
        ordered.append("name")
    for f in (*PREFERRED.get(kind.name, ()), *kind.filters):
        if f not in ordered and f in defaults:
            ordered.append(f)
    for name, default in defaults.items():
        if name not in ordered and (long or any(d.get(name, default) != default for d in docs)):
            ordered.append(name)
    return ordered if long else ordered[:MAX_COLUMNS]


def name_refs(kind: Kind) -> dict[str, Ref]:
    """Derived column -> its reference: ``device_name`` -> the ``device_id`` ref (single
    references to kinds that have names)."""
    return {
        r.field[: -len("_id")] + "_name": r
        for r in kind.refs
        if not r.many
        and r.field.endswith("_id")
        and all("name" in KINDS[t].filters for t in r.target)
    }


def with_names(kind: Kind, cols: Sequence[str], docs: Sequence[Doc] | None = None) -> list[str]:
    """``cols`` with each reference's name column placed right after its id column (given
    ``docs``: only where one of them has that reference set)."""
    by_field = {r.field: c for c, r in name_refs(kind).items()}
    out: list[str] = []
    for c in cols:
        out.append(c)
        if c in by_field and (docs is None or any(d.get(c) for d in docs)):
            out.append(by_field[c])
    return out


def id_columns(kind: Kind) -> set[str]:
    """Columns holding ids (shortened in tables): ``id`` and every reference field."""
    return {"id", *(r.field for r in kind.refs if r.subfield is None)}


def pick(kind: Kind, available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The ``-c`` columns, in the order given; an unknown one is an error naming the choices."""
    if not wanted:
        return list(available)
    known = {*available, *kind.record.model_fields, *name_refs(kind), "version"}
    for c in wanted:
        if c not in known:
            choices = ", ".join(with_names(kind, list(available)))
            raise InvalidInput(f"no column {c!r} (columns: {choices})", field="column")
    return list(wanted)


def value(kind: Kind, doc: Doc, col: str, names: Mapping[str, str]) -> Any:
    """A column's value in ``doc``: a field, or the name of the object a reference names."""
    ref = name_refs(kind).get(col)
    if ref is not None and col not in doc:
        target = doc.get(ref.field)
        return names.get(str(target)) if target else None
    return doc.get(col)


def name_columns(kind: Kind, cols: Sequence[str]) -> list[Ref]:
    """The references whose names the columns ``cols`` need."""
    refs = name_refs(kind)
    return [refs[c] for c in cols if c in refs]


def short_id(value: Any) -> Any:
    """An id cut to :data:`SHORT_ID` characters (lists of ids element-wise)."""
    if isinstance(value, str):
        return value[:SHORT_ID]
    if isinstance(value, list):
        return [short_id(v) for v in value]
    return value


__all__ = [
    "MAX_COLUMNS",
    "PREFERRED",
    "SHORT_ID",
    "columns_for",
    "id_columns",
    "name_columns",
    "name_refs",
    "pick",
    "short_id",
    "value",
    "with_names",
]
