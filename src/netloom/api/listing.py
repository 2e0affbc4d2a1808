"""Sorting and pagination of list answers.

A list is sorted by ``sort_key`` (any field of the record; ``id`` by default, and a chain's
rules in evaluation order) in ``sort_dir`` order, ties broken by id. ``limit`` cuts a page;
``marker`` is the id of the last object of the previous page: the next page starts after it
in the same order (the marker need not match the filters, but must exist).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netloom.api.client import LIST_PARAMS
from netloom.api.tx import REFS, ref_id, split_ref
from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS, Kind
from netloom.store.base import Item, Store

PARAMS = LIST_PARAMS
MAX_LIMIT = 10_000

SortKey = tuple[Any, ...]


@dataclass(frozen=True)
class ListQuery:
    """What a list request asks for beyond its filters."""

    sort_key: str | None = None
    sort_dir: str = "asc"
    limit: int | None = None
    marker: str | None = None


def parse(kind: Kind, params: Mapping[str, str]) -> ListQuery:
    """The list query of ``params`` (400 for a value that is not one)."""
    sort_key = params.get("sort_key")
    if sort_key is not None and sort_key not in kind.record.model_fields:
        allowed = ", ".join(sorted(kind.record.model_fields))
        raise InvalidInput(
            f"cannot sort {kind.collection} by {sort_key!r} (fields: {allowed})", field="sort_key"
        )
    sort_dir = params.get("sort_dir", "asc")
    if sort_dir not in ("asc", "desc"):
        raise InvalidInput(f"sort_dir must be asc or desc, not {sort_dir!r}", field="sort_dir")
    raw_limit = params.get("limit")
    limit = None
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise InvalidInput(
                f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw_limit!r}", field="limit"
            )
        limit = int(raw_limit)
    marker = params.get("marker")
    if marker == "":
        raise InvalidInput("marker must be the id of an object", field="marker")
    return ListQuery(sort_key, sort_dir, limit, marker)


def _value(value: Any) -> SortKey:
    """A total order over JSON values: null first, then numbers, strings, the rest."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool | int | float):
        return (1, value, "")
    if isinstance(value, str):
        return (2, 0, value)
    return (3, 0, json.dumps(value, sort_keys=True))


def sort_key(kind: str, query: ListQuery, doc: Mapping[str, Any]) -> SortKey:
    """Where ``doc`` goes in the list: by ``query.sort_key``, else by id (a chain's rules in
    evaluation order); ties by id."""
    ident = str(doc.get("id"))
    if query.sort_key is not None:
        return (_value(doc.get(query.sort_key)), ident)
    if kind == "rule":
        return (str(doc.get("chain_id")), int(doc.get("position") or 0), ident)
    return (ident,)


def page(
    kind: str, items: list[tuple[Any, int]], query: ListQuery, marker: Mapping[str, Any] | None
) -> tuple[list[tuple[Any, int]], bool]:
    """One page of ``items`` (record, version) in the query's order, after the ``marker``
    record, and whether more follow it."""

    def order(pair: tuple[Any, int]) -> SortKey:
        return sort_key(kind, query, pair[0])

    items = sorted(items, key=order, reverse=query.sort_dir == "desc")
    if marker is not None:
        after = sort_key(kind, query, marker)
        if query.sort_dir == "desc":
            items = [it for it in items if order(it) < after]
        else:
            items = [it for it in items if order(it) > after]
    if query.limit is not None and len(items) > query.limit:
        return items[: query.limit], True
    return items, False


def candidates(store: Store, kind: str, wanted: Mapping[str, Any]) -> list[Item]:
    """The records a filtered list may return (the caller applies the filters): with a filter
    on a reference to one kind (the routes of a router, those learned from a peer), the records
    its target's reverse-reference document names, read by id; else every record of the kind."""
    for ref in KINDS[kind].refs:
        value = wanted.get(ref.field)
        if isinstance(value, str) and len(ref.target) == 1 and not ref.many:
            doc = store.get(REFS, ref_id(ref.target[0], value))
            referrers = doc.data["referrers"] if doc is not None else {}
            keys = [split_ref(r) for r, fields in referrers.items() if ref.field in fields]
            got = store.get_many(sorted(key for key in keys if key[0] == kind))
            return [it for it in got if it is not None]
    return store.list(kind)


__all__ = [
    "MAX_LIMIT",
    "PARAMS",
    "ListQuery",
    "SortKey",
    "candidates",
    "page",
    "parse",
    "sort_key",
]
