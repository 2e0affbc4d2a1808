"""The native REST API (``/api/v1``): a thin HTTP skin over :class:`ObjectService`.

Routes are generated from :data:`netloom.model.kinds.KINDS`, one identical set per collection,
so a new kind needs no handler code. Handlers only translate HTTP to service calls:

* bodies are read by hand, not by FastAPI's body binding, so that the size limit is enforced
  *before* anything is parsed (413), a non-JSON media type is refused (415) and malformed JSON
  or a wrong type is a 400 with our ``{"code", "message", "field"}`` shape, never FastAPI's 422;
* optimistic concurrency follows RFC 9110: every object answer carries ``ETag: "<version>"``
  (a strong validator, §8.8.3) and a ``version`` field; ``If-Match`` (§13.1.1) makes a write
  conditional and answers 412 on mismatch; a ``version`` field in the body does the same for
  clients without header control and answers 409;
* PATCH is a JSON Merge Patch (RFC 7396); PUT replaces the record (system-owned fields kept).

What the API decides for the caller:

* a rule without ``position`` goes after its chain's last rule; a taken position inserts the
  rule and moves the rules from there on down by one, in the same commit; ``GET
  /api/v1/rules?chain_id=C`` lists a chain's rules in evaluation order;
* a router port's address makes its connected and local routes (``system: true``); they move
  and go with the address and cannot be changed by hand (409);
* a port without ``mac`` gets a generated, locally administered one; a fixed IP must lie in
  one of the bridge's DHCP subnets (any address on a bridge without one) and be unique on the
  bridge; ``"auto"`` in ``fixed_ips`` is replaced by a free address of the bridge's subnets;
* references between two tenants' objects are refused unless the target is ``shared``;
  ``tenant_id`` is fixed at creation (a PUT without it keeps it);
* names are unique per kind in their scope: the tenant (bridges, routers, chains, groups), the
  parent (a device's ports, a router's routes, a chain's rules, a bridge's subnets) or the
  whole cloud (tenants, hosts, tunnel zones); ``""`` is no name.

The OpenAPI document (``/api/v1/openapi.json``) carries, for every collection, the request
schemas (``<Kind>Create``, ``<Kind>Patch``) and the answer schema (``<Kind>``) generated from the
pydantic records.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import netloom
from netloom.api import openapi
from netloom.api.service import ObjectService
from netloom.errors import (
    InvalidInput,
    NetloomError,
    PayloadTooLarge,
    VersionConflict,
)
from netloom.model import integrity
from netloom.model.kinds import KINDS, Kind
from netloom.model.types import Id

PREFIX = "/api/v1"
Handler = Callable[..., Awaitable[Response]]


class UnsupportedMediaType(NetloomError):
    code = "unsupported_media_type"
    status = 415


class PreconditionFailed(VersionConflict):
    """``If-Match`` named another version (RFC 9110 §13.1.1: 412, not 409)."""

    code = "precondition_failed"
    status = 412


class BindingRequest(BaseModel):
    """Plug a host interface into a port (the port becomes exterior)."""

    model_config = ConfigDict(extra="forbid")
    host_id: Id
    interface_name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,15}$")


class LinkRequest(BaseModel):
    """Link this port to a peer port (both become interior)."""

    model_config = ConfigDict(extra="forbid")
    peer_id: Id


def _error(exc: NetloomError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


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


async def _read_json(request: Request, limit: int) -> Any:
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
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidInput("a JSON body is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique_members)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


async def _read_object(request: Request, limit: int) -> dict[str, Any]:
    body = await _read_json(request, limit)
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, not {_JSON_TYPES[type(body)]}")
    return body


def _if_match(request: Request) -> int | None:
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


def _expect(request: Request, body: dict[str, Any] | None) -> tuple[int | None, bool]:
    """The caller's expected version and whether it came from ``If-Match``. A ``version``
    member of the body is removed from it (it is not a record field)."""
    header = _if_match(request)
    field = body.pop("version", None) if body is not None else None
    if field is not None and (isinstance(field, bool) or not isinstance(field, int) or field < 1):
        raise InvalidInput("version must be a positive integer", field="version")
    if header is not None and field is not None and header != field:
        raise InvalidInput("If-Match and the body's version disagree", field="version")
    return (header, True) if header is not None else (field, False)


async def _conditional(call: Callable[[], Any], from_header: bool) -> Any:
    try:
        return await run_in_threadpool(call)
    except VersionConflict as exc:
        if from_header and exc.field == "version":
            raise PreconditionFailed(
                f"If-Match does not match: {exc.message}", field="If-Match"
            ) from None
        raise


def _cascade(request: Request) -> bool:
    raw = request.query_params.get("cascade", "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise InvalidInput(f"cascade must be true or false, not {raw!r}", field="cascade")


def _answer(
    doc: dict[str, Any], version: int, status: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": f'"{version}"'}
    if location:
        headers["Location"] = location
    return JSONResponse({**doc, "version": version}, status_code=status, headers=headers)


# -- routes --------------------------------------------------------------------------------------


def _collection_routes(app: FastAPI, service: ObjectService, k: Kind, limit: int) -> None:
    base = f"{PREFIX}/{k.collection}"
    name = k.record.__name__
    tag: list[str | Enum] = [k.collection]

    async def create(request: Request) -> Response:
        body = await _read_object(request, limit)
        doc, version = await run_in_threadpool(service.create, k.name, body)
        return _answer(doc, version, 201, f"{base}/{doc['id']}")

    async def list_(request: Request) -> Response:
        filters = dict(request.query_params)
        items = await run_in_threadpool(service.list, k.name, filters)
        return JSONResponse({"items": [{**d, "version": v} for d, v in items]})

    async def get(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.get, k.name, id)
        return _answer(doc, version)

    async def replace(request: Request, id: str) -> Response:
        body = await _read_object(request, limit)
        expect, hdr = _expect(request, body)
        doc, version = await _conditional(
            lambda: service.replace(k.name, id, body, expect_version=expect), hdr
        )
        return _answer(doc, version)

    async def patch(request: Request, id: str) -> Response:
        body = await _read_object(request, limit)
        expect, hdr = _expect(request, body)
        doc, version = await _conditional(
            lambda: service.update(k.name, id, body, expect_version=expect), hdr
        )
        return _answer(doc, version)

    async def delete(request: Request, id: str) -> Response:
        cascade = _cascade(request)
        expect, hdr = _expect(request, None)
        await _conditional(
            lambda: service.delete(k.name, id, cascade=cascade, expect_version=expect), hdr
        )
        return Response(status_code=204)

    filters = [
        {"name": f, "in": "query", "required": False, "schema": {"type": "string"}}
        for f in k.filters
    ]
    routes: list[tuple[str, str, Handler, dict[str, Any], str]] = [
        (
            "POST",
            base,
            create,
            {**openapi.body(f"{name}Create"), **openapi.returns(name, "201")},
            f"create a {k.name}",
        ),
        (
            "GET",
            base,
            list_,
            {"parameters": filters, **openapi.returns(name, many=True)},
            f"list {k.collection} (filters: {', '.join(k.filters) or 'none'})",
        ),
        ("GET", f"{base}/{{id}}", get, openapi.returns(name), f"read a {k.name}"),
        (
            "PUT",
            f"{base}/{{id}}",
            replace,
            {**openapi.body(f"{name}Create"), **openapi.returns(name)},
            f"replace a {k.name}",
        ),
        (
            "PATCH",
            f"{base}/{{id}}",
            patch,
            {**openapi.body(f"{name}Patch"), **openapi.returns(name)},
            f"update a {k.name} (JSON Merge Patch)",
        ),
        (
            "DELETE",
            f"{base}/{{id}}",
            delete,
            {"responses": {"204": {"description": "deleted"}}},
            f"delete a {k.name} (?cascade=true also deletes its children)",
        ),
    ]
    for method, path, handler, extra, summary in routes:
        app.add_api_route(
            path,
            handler,
            methods=[method],
            openapi_extra=extra,
            tags=tag,
            summary=summary,
            name=f"{method.lower()}_{k.name}_{path.count('{')}",
            response_class=JSONResponse,
        )


def _port_routes(app: FastAPI, service: ObjectService, limit: int) -> None:
    base = f"{PREFIX}/ports/{{id}}"
    port_tag: list[str | Enum] = ["ports"]

    async def bind(request: Request, id: str) -> Response:
        body = await _read_object(request, limit)
        req = _parse(BindingRequest, body)
        doc, version = await run_in_threadpool(
            service.bind_port, id, req.host_id, req.interface_name
        )
        return _answer(doc, version)

    async def unbind(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.unbind_port, id)
        return _answer(doc, version)

    async def link(request: Request, id: str) -> Response:
        req = _parse(LinkRequest, await _read_object(request, limit))
        doc, version = await run_in_threadpool(service.link_ports, id, req.peer_id)
        return _answer(doc, version)

    async def unlink(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.unlink_port, id)
        return _answer(doc, version)

    for method, path, handler, extra, summary in (
        (
            "POST",
            f"{base}/binding",
            bind,
            {**openapi.body("BindingRequest"), **openapi.returns("Port")},
            "bind a port to a host interface",
        ),
        ("DELETE", f"{base}/binding", unbind, openapi.returns("Port"), "unbind a port"),
        (
            "POST",
            f"{base}/link",
            link,
            {**openapi.body("LinkRequest"), **openapi.returns("Port")},
            "link two ports (both peer_id fields, one commit)",
        ),
        ("DELETE", f"{base}/link", unlink, openapi.returns("Port"), "unlink a port and its peer"),
    ):
        app.add_api_route(
            path,
            handler,
            methods=[method],
            openapi_extra=extra,
            tags=port_tag,
            summary=summary,
            name=f"{method.lower()}_port_{path.rsplit('/', 1)[1]}",
        )


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise integrity.invalid_from(exc) from None


def _install_error_handlers(app: FastAPI) -> None:
    async def netloom_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NetloomError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        messages = {
            404: f"no such resource: {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        body = {
            "code": codes.get(exc.status_code, f"http_{exc.status_code}"),
            "message": messages.get(exc.status_code, str(exc.detail)),
            "field": None,
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        return _error(InvalidInput(f"{field}: {first.get('msg', 'invalid input')}", field=field))

    app.add_exception_handler(NetloomError, netloom_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(service: ObjectService, *, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The ASGI application of the native API over ``service``."""
    app = FastAPI(
        title="netloom native API",
        version=netloom.__version__,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    _install_error_handlers(app)
    kinds = list(KINDS.values())

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "revision": await run_in_threadpool(service.revision)}

    @app.get(PREFIX, tags=["meta"])
    async def index() -> dict[str, Any]:
        return {
            "version": "v1",
            "collections": [
                {
                    "name": k.collection,
                    "kind": k.name,
                    "href": f"{PREFIX}/{k.collection}",
                    "filters": list(k.filters),
                    "read_only": sorted(k.read_only),
                    "children": [c for c, _ in k.children],
                }
                for k in kinds
            ],
        }

    for k in kinds:
        _collection_routes(app, service, k, max_body_bytes)
    _port_routes(app, service, max_body_bytes)

    openapi.install(app, kinds, (BindingRequest, LinkRequest), description=__doc__ or "")
    return app


__all__ = ["PREFIX", "PreconditionFailed", "UnsupportedMediaType", "create_app"]
