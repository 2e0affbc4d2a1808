"""Names to ids: a reference may be an object's id, its unique name (looked up through the
kind's ``name`` filter) or a unique prefix of its id (matched against the listed collection)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from netloom.errors import Conflict, InvalidInput, NetloomError, NotFound
from netloom.model.kinds import KINDS, Kind, Ref
from netloom.plan.client import Doc, PlanClient

MIN_PREFIX = 4
_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]*$")
_SHOWN_MATCHES = 5


def is_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_prefix(value: str) -> bool:
    """``value`` may be the start of an id: at least :data:`MIN_PREFIX` hex digits (dashes
    allowed where a UUID has them) and not a whole id."""
    text = value.lower()
    digits = text.replace("-", "")
    return (
        len(digits) >= MIN_PREFIX
        and len(text) < 36
        and _PREFIX.match(text) is not None
        and not is_id(value)
    )


class Resolver:
    """Resolves ids or unique names of objects, remembering the answers (use one per run)."""

    def __init__(self, client: PlanClient) -> None:
        self.client = client
        self._cache: dict[tuple[tuple[str, ...], str], tuple[str, str]] = {}
        self._known: dict[str, str] = {}  # id -> kind name, of objects this run created

    def remember(self, kind: str, id: str) -> None:
        """``id`` is a ``kind`` (just created): resolving it later needs no request."""
        self._known[id] = kind

    def find(
        self, targets: tuple[str, ...], value: str, field: str | None = None
    ) -> tuple[str, str]:
        """(kind name, id) of the object ``value`` names among ``targets`` kinds.

        An id is checked only when several kinds are possible (to learn which); a name must
        match exactly one object across them; failing that, a hex prefix must start the id of
        exactly one object of them."""
        key = (targets, value)
        if key in self._cache:
            return self._cache[key]
        found = (
            self._by_id(targets, value) if is_id(value) else self._by_name(targets, value, field)
        )
        self._cache[key] = found
        return found

    def _by_id(self, targets: tuple[str, ...], value: str) -> tuple[str, str]:
        if len(targets) == 1:
            return targets[0], value
        if self._known.get(value) in targets:
            return self._known[value], value
        for t in targets:
            try:
                self.client.get(KINDS[t].collection, value)
            except NetloomError as exc:
                if getattr(exc, "status", None) == 404:
                    continue
                raise
            return t, value
        raise NotFound(f"no {' or '.join(targets)} with id {value}")

    def _by_name(self, targets: tuple[str, ...], value: str, field: str | None) -> tuple[str, str]:
        named = [t for t in targets if "name" in KINDS[t].filters]
        what = " or ".join(t.replace("_", "-") for t in targets)
        if not named and not is_prefix(value):
            raise InvalidInput(f"{value!r} is not an id (a {what} has no name)", field=field)
        hits = [
            (t, str(d["id"]))
            for t in named
            for d in self.client.list(KINDS[t].collection, {"name": value})
            if d.get("name") == value  # the API may ignore an unknown filter: check
        ]
        if len(hits) > 1:
            raise Conflict(f"{len(hits)} objects named {value!r}: use an id", field=field)
        if hits:
            return hits[0]
        if is_prefix(value):
            return self._by_prefix(targets, value, field)
        raise NotFound(f"no {what} named {value!r}", field=field)

    def _by_prefix(
        self, targets: tuple[str, ...], value: str, field: str | None
    ) -> tuple[str, str]:
        """The one object of ``targets`` whose id starts with ``value`` (one list per kind)."""
        prefix = value.lower()
        hits = [
            (t, str(d["id"]))
            for t in targets
            for d in self.client.list(KINDS[t].collection)
            if str(d.get("id", "")).startswith(prefix)
        ]
        what = " or ".join(t.replace("_", "-") for t in targets)
        if not hits:
            raise NotFound(f"no {what} named or with an id starting {value!r}", field=field)
        if len(hits) > 1:
            shown = ", ".join(f"{t.replace('_', '-')} {i}" for t, i in hits[:_SHOWN_MATCHES])
            more = ", ..." if len(hits) > _SHOWN_MATCHES else ""
            raise Conflict(
                f"id prefix {value!r} matches {len(hits)} objects ({shown}{more}):"
                " give more characters",
                field=field,
            )
        return hits[0]

    def ident(self, kind: Kind, value: str) -> str:
        return self.find((kind.name,), value)[1]

    def refs(self, kind: Kind, data: Doc) -> Doc:
        """Replace names by ids in every reference field of ``data`` (ids pass through)."""
        out = dict(data)
        for ref in kind.refs:
            value = out.get(ref.field)
            if value is None:
                continue
            if not ref.many:
                if isinstance(value, str) and value:
                    out[ref.field] = self.find(ref.target, value, ref.field)[1]
            elif isinstance(value, list):
                out[ref.field] = [self._ref_item(ref, v) for v in value]
        return out

    def _ref_item(self, ref: Ref, item: Any) -> Any:
        if ref.subfield is None:
            return self.find(ref.target, item, ref.field)[1] if isinstance(item, str) else item
        if isinstance(item, dict) and isinstance(item.get(ref.subfield), str):
            sub = self.find(ref.target, item[ref.subfield], f"{ref.field}.{ref.subfield}")[1]
            return {**item, ref.subfield: sub}
        return item


def infer_port_type(resolver: Resolver, data: Doc) -> Doc:
    """A port's ``type`` follows from its device: fill it in when it was left out."""
    if data.get("type") or not isinstance(data.get("device_id"), str):
        return data
    device_kind, _ = resolver.find(("bridge", "router"), data["device_id"], "device_id")
    return {**data, "type": device_kind}


__all__ = ["MIN_PREFIX", "Resolver", "infer_port_type", "is_id", "is_prefix"]
