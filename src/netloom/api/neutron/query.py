"""List queries of the Neutron API: filters (repeated values: any of them), tag filters,
``fields=``, sorting (``sort_key``/``sort_dir``, repeated) and pagination (``limit``,
``marker``, ``page_reverse``, and the ``<collection>_links`` of the answer), as neutron's
``api_common`` does them."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from netloom.api.neutron import attrs, faults
from netloom.api.neutron.attrs import Attr
from netloom.api.tx import Doc

PAGING = ("limit", "marker", "page_reverse", "sort_key", "sort_dir", "fields")
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
MAX_LIMIT = 10_000


@dataclass
class Query:
    filters: dict[str, list[str]] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False


def _single(params: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    return values[-1] if values else None


def _filters(
    q: Query,
    params: Sequence[tuple[str, str]],
    attrmap: Mapping[str, Attr],
    aliases: Sequence[str],
) -> None:
    for key, value in params:
        if key in PAGING:
            continue
        if key in TAG_FILTERS:
            q.tags.setdefault(key, set()).update(t for t in value.split(",") if t)
        elif key in attrmap or key in aliases:
            q.filters.setdefault(key, []).append(value)
        else:
            raise faults.bad_request(f"[{key}] is invalid attribute for filtering")


def _sorting(q: Query, params: Sequence[tuple[str, str]], attrmap: Mapping[str, Attr]) -> None:
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    if dirs and len(dirs) != len(keys):
        raise faults.bad_request("The number of sort_keys and sort_dirs must be same")
    for i, key in enumerate(keys):
        if key not in attrmap:
            raise faults.bad_request(f"{key} is an invalid attribute for sort_keys")
        direction = dirs[i] if dirs else "asc"
        if direction not in ("asc", "desc"):
            raise faults.bad_request(f"{direction} is an invalid value for sort_dirs")
        q.sort.append((key, direction == "desc"))


def parse(
    params: Sequence[tuple[str, str]], attrmap: Mapping[str, Attr], aliases: Sequence[str] = ()
) -> Query:
    """The query of a list request (400 for an unknown filter or sort key, a bad limit)."""
    q = Query()
    _filters(q, params, attrmap, aliases)
    q.fields = [v for k, v in params if k == "fields"]
    _sorting(q, params, attrmap)
    limit = _single(params, "limit")
    if limit is not None:
        if not limit.isdigit():
            raise faults.bad_request(f"Limit must be an integer 0 or greater and not '{limit}'")
        q.limit = min(int(limit), MAX_LIMIT) or None
    q.marker = _single(params, "marker")
    reverse = _single(params, "page_reverse")
    if reverse is not None:
        try:
            q.page_reverse = attrs.to_bool(reverse)
        except attrs.Reason as exc:
            raise faults.bad_request(f"Invalid input for page_reverse. Reason: {exc}.") from None
    return q


def _matches_value(have: Any, wanted: str) -> bool:
    if isinstance(have, bool):
        try:
            return have == attrs.to_bool(wanted)
        except attrs.Reason:
            return False
    if isinstance(have, list):
        return any(_matches_value(item, wanted) for item in have)
    if isinstance(have, dict):
        key, sep, value = wanted.partition("=")
        return bool(sep) and str(have.get(key)) == value
    if have is None:
        return wanted in ("", "None")
    return str(have) == wanted


def matches(doc: Doc, q: Query) -> bool:
    for key, values in q.filters.items():
        have = doc.get(key)
        if key in ("ip_address", "subnet_id"):  # shorthand of fixed_ips=<key>=<value>
            have = [ip.get(key) for ip in doc.get("fixed_ips", [])]
        if not any(_matches_value(have, v) for v in values):
            return False
    tags = set(doc.get("tags") or ())
    return all(_tags_match(k, want, tags) for k, want in q.tags.items())


def _tags_match(how: str, want: set[str], tags: set[str]) -> bool:
    if how == "tags":
        return want <= tags
    if how == "tags-any":
        return bool(want & tags)
    if how == "not-tags":
        return not want <= tags
    return not want & tags


def _order(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True))


def _field_order(key: str, doc: Doc) -> tuple[int, Any]:
    return _order(doc.get(key))


def ordered(docs: list[Doc], q: Query) -> list[Doc]:
    """Sorted by the sort keys (each in its direction), then by id."""
    out = sorted(docs, key=lambda d: str(d["id"]))
    for key, desc in reversed(q.sort):
        out.sort(key=functools.partial(_field_order, key), reverse=desc)
    return out


def page(docs: list[Doc], q: Query, marker: Doc | None) -> list[Doc]:
    """The page after (or with ``page_reverse``, before) the marker."""
    items = ordered([d for d in docs if marker is None or d["id"] != marker["id"]], q)
    if marker is not None:
        with_marker = ordered([*items, marker], q)
        at = next(i for i, d in enumerate(with_marker) if d["id"] == marker["id"])
        items = with_marker[:at] if q.page_reverse else with_marker[at + 1 :]
    if q.page_reverse:
        items = items[::-1]
    if q.limit is not None:
        items = items[: q.limit]
    return items[::-1] if q.page_reverse else items


def links(
    url: str, params: Sequence[tuple[str, str]], q: Query, items: list[Doc]
) -> list[dict[str, str]]:
    """The ``next`` and ``previous`` links of a page (only with ``limit``)."""
    if q.limit is None:
        return []
    keep = [(k, v) for k, v in params if k not in ("marker", "page_reverse")]
    full = len(items) >= q.limit
    out = []
    if items and ((full and not q.page_reverse) or (q.page_reverse and q.marker)):
        out.append(
            {"rel": "next", "href": f"{url}?{urlencode([*keep, ('marker', items[-1]['id'])])}"}
        )
    if items and ((full and q.page_reverse) or (not q.page_reverse and q.marker)):
        back = [*keep, ("marker", items[0]["id"]), ("page_reverse", "True")]
        out.append({"rel": "previous", "href": f"{url}?{urlencode(back)}"})
    return out


def project(doc: Doc, fields: list[str]) -> Doc:
    if not fields:
        return doc
    return {k: v for k, v in doc.items() if k in fields}


__all__ = ["PAGING", "Query", "links", "matches", "ordered", "page", "parse", "project"]
