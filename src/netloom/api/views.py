"""What the API answers for a stored record beyond its fields, and the reverse on input.

* A secret field (:attr:`~netloom.model.kinds.Kind.secret`, a peer's password) is answered as
  :data:`~netloom.model.kinds.SECRET_MASK` when set, ``null`` when not: never its value.
* A bgp_peer carries its session's ``status`` as the gateway agent last reported it
  (:data:`~netloom.api.tx.BGP_STATUS`): read-only, ignored on input so GET-modify-PUT works.
"""

from __future__ import annotations

from typing import Any

from netloom.api.tx import BGP_STATUS, Doc
from netloom.errors import InvalidInput
from netloom.model.bgp import SessionState
from netloom.model.kinds import KINDS, SECRET_MASK, Kind
from netloom.store.base import Store

# the status of a peer no agent has reported on (or whose agent is gone)
NO_STATUS: Doc = {
    "state": SessionState.DOWN.value,
    "since": None,
    "routes": 0,
    "port_id": None,
    "host_id": None,
    "bfd_up": None,
}
# answer-only fields of a kind, with their JSON schema (the OpenAPI document shows them)
VIEWS: dict[str, dict[str, Any]] = {
    "bgp_peer": {
        "status": {
            "type": "object",
            "readOnly": True,
            "description": (
                "the session as the gateway agent running it last reported it: `state` (RFC"
                " 4271 states, `down` when no agent runs it or its host is down), `since`"
                " (epoch seconds of the last change), `routes` (prefixes learned), `port_id`"
                " and `host_id` (the uplink and its gateway), `bfd_up`; ignored on input"
            ),
            "properties": {
                "state": {"type": "string", "enum": [s.value for s in SessionState]},
                "since": {"type": ["number", "null"]},
                "routes": {"type": "integer"},
                "port_id": {"type": ["string", "null"]},
                "host_id": {"type": ["string", "null"]},
                "bfd_up": {"type": ["boolean", "null"]},
            },
        }
    }
}
VIEW_FIELDS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in VIEWS.items()}


def public(store: Store, kind: str, doc: Doc) -> Doc:
    """``doc`` as the API answers it."""
    k = KINDS[kind]
    if not k.secret and kind not in VIEW_FIELDS:
        return doc
    out = dict(doc)
    for field in k.secret:
        out[field] = SECRET_MASK if out.get(field) is not None else None
    if kind == "bgp_peer":
        item = store.get(BGP_STATUS, str(doc["id"]))
        out["status"] = {**NO_STATUS, **item.data} if item is not None else dict(NO_STATUS)
    return out


def check_secrets(kind: Kind, body: Doc) -> None:
    """A new record's secret fields hold real values, never the answer's mask."""
    for field in sorted(kind.secret):
        if body.get(field) == SECRET_MASK:
            raise InvalidInput(
                f"{field}: {SECRET_MASK!r} stands for a stored value; give the value itself",
                field=field,
            )


def keep_secrets(kind: Kind, old: Doc, draft: Doc) -> Doc:
    """A write that gives a secret field back as the mask keeps the stored value."""
    for field in kind.secret:
        if draft.get(field) == SECRET_MASK:
            if old.get(field) is None:
                draft.pop(field)
            else:
                draft[field] = old[field]
    return draft


def from_input(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A request body without the answer-only fields of ``kind``."""
    drop = VIEW_FIELDS.get(kind)
    if not drop or not drop & body.keys():
        return body
    return {f: v for f, v in body.items() if f not in drop}


__all__ = [
    "NO_STATUS",
    "VIEWS",
    "VIEW_FIELDS",
    "check_secrets",
    "from_input",
    "keep_secrets",
    "public",
]
