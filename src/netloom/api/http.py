"""HTTP plumbing of the native API: reading a JSON body (media type, size, time limits),
the conditional headers of RFC 9110 (``If-Match``, ``If-None-Match``) and the object answer
with its ``ETag``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from netloom.errors import (
    InvalidInput,
    NetloomError,
    PayloadTooLarge,
    PreconditionFailed,
    RequestTimeout,
    UnsupportedMediaType,
    VersionConflict,
)


def error_response(exc: NetloomError) -> JSONResponse:
    headers = {"Connection": "close"} if isinstance(exc, RequestTimeout) else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


# -- request decoding ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 8259 §4: with duplicate names "the behavior of software ... is unpredictable";
    refuse them rather than silently keep one."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The decoded JSON body. The declared length and then the bytes actually received are
    checked against ``limit`` before any parsing (a slow or lying client gets 413 too)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json (got {media or 'no content type'})",
            field="Content-Type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    try:
        raw = await asyncio.wait_for(_receive(request, limit), timeout)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g} s", field="Content-Length"
        ) from None
    except ClientDisconnect:
        raise InvalidInput("the client went away before the body was complete") from None
    if not raw.strip():
        raise InvalidInput("a JSON body is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique_members)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


async def _receive(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request, limit: int, timeout: float) -> dict[str, Any]:
    body = await read_json(request, limit, timeout)
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, not {_JSON_TYPES[type(body)]}")
    return body


def if_match(request: Request) -> int | None:
    """The version ``If-Match`` asks for: None for absent or ``*``; -1 for tags that cannot
    be one of our versions (they never match, so the write fails with 412)."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        tag = tag.removeprefix("W/")  # weak comparison is not allowed for If-Match; see below
        if len(tag) >= 2 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
            versions.add(int(tag[1:-1]))
    if len(versions) > 1:
        raise InvalidInput("If-Match may name only one version", field="If-Match")
    return versions.pop() if versions else -1


def _tags(header: str) -> set[str]:
    """The opaque tags of an entity-tag list, weak prefixes dropped (weak comparison)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def none_match(request: Request, version: int) -> bool:
    """Whether ``If-None-Match`` names the current version (RFC 9110 §13.1.2: ``*`` matches
    any current representation; tags compare weakly)."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    return header.strip() == "*" or f'"{version}"' in _tags(header)


def expect(request: Request, body: dict[str, Any] | None) -> tuple[int | None, str | None]:
    """The caller's expected version and the header that asked for it (None: the body's
    ``version`` member, or nothing). The ``version`` member is removed from the body (it is not
    a record field)."""
    header = if_match(request)
    field = body.pop("version", None) if body is not None else None
    if field is not None and (isinstance(field, bool) or not isinstance(field, int) or field < 1):
        raise InvalidInput("version must be a positive integer", field="version")
    if header is not None and field is not None and header != field:
        raise InvalidInput("If-Match and the body's version disagree", field="version")
    return (header, "If-Match") if header is not None else (field, None)


NEVER = -1
"""An expected version no object has: the write fails once its body has been validated."""


async def conditional(call: Callable[[], Any], header: str | None) -> Any:
    """Run a write; a version mismatch the caller asked for by ``header`` is a 412."""
    try:
        return await run_in_threadpool(call)
    except VersionConflict as exc:
        if header is not None and exc.field == "version":
            verb = "matches" if header == "If-None-Match" else "does not match"
            raise PreconditionFailed(f"{header} {verb}: {exc.message}", field=header) from None
        raise


def cascade(request: Request) -> bool:
    raw = request.query_params.get("cascade", "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise InvalidInput(f"cascade must be true or false, not {raw!r}", field="cascade")


def answer(
    doc: dict[str, Any], version: int, status: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": f'"{version}"'}
    if location:
        headers["Location"] = location
    return JSONResponse({**doc, "version": version}, status_code=status, headers=headers)


__all__ = [
    "NEVER",
    "answer",
    "cascade",
    "conditional",
    "error_response",
    "expect",
    "if_match",
    "none_match",
    "read_json",
    "read_object",
]
