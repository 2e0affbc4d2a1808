"""The native REST API (``/api/v1``): a thin HTTP skin over :class:`ObjectService`.

Routes are generated from :data:`netloom.model.kinds.KINDS`, one identical set per collection,
so a new kind needs no handler code. Handlers only translate HTTP to service calls; what the API
decides for its callers is written once, for them, in :data:`netloom.api.openapi.DESCRIPTION`.

* bodies are read by hand (:mod:`netloom.api.http`), not by FastAPI's body binding, so that the
  size limit is enforced *before* anything is parsed (413), a non-JSON media type is refused
  (415), a body shorter than its Content-Length times out (408), and malformed JSON, a wrong
  type or a value that fails validation is a 400 with our ``{"code", "message", "field"}``
  shape: the API never answers 422;
* optimistic concurrency follows RFC 9110: every object answer carries ``ETag: "<version>"``
  and a ``version`` field; ``If-Match`` makes a write conditional (412), ``If-None-Match``
  makes a read conditional (304) and a write fail (412) when it matches;
* lists are sorted and paged by :mod:`netloom.api.listing`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import netloom
from netloom.api import http, insights, listing, openapi, views, whatif
from netloom.api.service import ObjectService
from netloom.api.simlog import simlog_routes
from netloom.api.tx import Doc
from netloom.errors import InvalidInput, NetloomError
from netloom.insights.history import FlowHistory
from netloom.insights.simlog import SimLogStore
from netloom.model import integrity
from netloom.model.kinds import KINDS, Kind
from netloom.model.types import Id

PREFIX = "/api/v1"
Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Limits:
    """What one request may cost: its body's size and the time it may take to arrive."""

    body_bytes: int = 1 << 20
    body_timeout: float = 30.0


class BindingRequest(BaseModel):
    """Plug a host interface into a port (the port becomes exterior)."""

    model_config = ConfigDict(extra="forbid")
    host_id: Id
    interface_name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,15}$")


class LinkRequest(BaseModel):
    """Link this port to a peer port (both become interior)."""

    model_config = ConfigDict(extra="forbid")
    peer_id: Id


# -- routes --------------------------------------------------------------------------------------


def _next_page(request: Request, params: dict[str, str], last_id: str) -> str:
    return f"{request.url.path}?{urlencode({**params, 'marker': last_id})}"


async def _preconditions(
    request: Request, service: ObjectService, kind: str, id: str, body: dict[str, Any] | None
) -> tuple[int | None, str | None]:
    """The version a write expects and the header that asked for it. A matching
    ``If-None-Match`` (RFC 9110 §13.1.2) expects a version no object has, so the write still
    reports a bad body (400) before it fails (412)."""
    expect, header = http.expect(request, body)
    if "if-none-match" in request.headers:
        _, version = await run_in_threadpool(service.get, kind, id)
        if http.none_match(request, version):
            return http.NEVER, "If-None-Match"
    return expect, header


Answer = Callable[..., Response]


def _answerer(service: ObjectService, k: Kind) -> Answer:
    """The object answer of kind ``k``: the record as the API shows it (see views)."""

    def answer(doc: Doc, version: int, status: int = 200, location: str | None = None) -> Response:
        return http.answer(views.public(service.store, k.name, doc), version, status, location)

    return answer


def _read_handlers(service: ObjectService, k: Kind) -> dict[str, Handler]:
    answer = _answerer(service, k)

    async def list_(request: Request) -> Response:
        params = dict(request.query_params)
        query = listing.parse(k, params)
        filters = {f: v for f, v in params.items() if f not in listing.PARAMS}
        items, more = await run_in_threadpool(service.list_page, k.name, filters, query)
        shown = [(views.public(service.store, k.name, d), v) for d, v in items]
        body: dict[str, Any] = {"items": [{**d, "version": v} for d, v in shown]}
        headers = {}
        if more:
            body["next"] = _next_page(request, params, str(items[-1][0]["id"]))
            headers["Link"] = f'<{body["next"]}>; rel="next"'
        return JSONResponse(body, headers=headers)

    async def get(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.get, k.name, id)
        if http.none_match(request, version):
            return Response(status_code=304, headers={"ETag": f'"{version}"'})
        return answer(doc, version)

    return {"list": list_, "get": get}


def _write_handlers(service: ObjectService, k: Kind, lim: Limits) -> dict[str, Handler]:
    base = f"{PREFIX}/{k.collection}"
    answer = _answerer(service, k)

    async def body_of(request: Request) -> dict[str, Any]:
        body = await http.read_object(request, lim.body_bytes, lim.body_timeout)
        return views.from_input(k.name, body)

    async def create(request: Request) -> Response:
        body = await body_of(request)
        doc, version = await run_in_threadpool(service.create, k.name, body)
        return answer(doc, version, 201, f"{base}/{doc['id']}")

    async def replace(request: Request, id: str) -> Response:
        body = await body_of(request)
        expect, hdr = await _preconditions(request, service, k.name, id, body)
        doc, version = await http.conditional(
            lambda: service.replace(k.name, id, body, expect_version=expect), hdr
        )
        return answer(doc, version)

    async def patch(request: Request, id: str) -> Response:
        body = await body_of(request)
        expect, hdr = await _preconditions(request, service, k.name, id, body)
        doc, version = await http.conditional(
            lambda: service.update(k.name, id, body, expect_version=expect), hdr
        )
        return answer(doc, version)

    async def delete(request: Request, id: str) -> Response:
        cascade = http.cascade(request)
        expect, hdr = await _preconditions(request, service, k.name, id, None)
        await http.conditional(
            lambda: service.delete(k.name, id, cascade=cascade, expect_version=expect), hdr
        )
        return Response(status_code=204)

    return {"create": create, "replace": replace, "patch": patch, "delete": delete}


def _object_handlers(service: ObjectService, k: Kind, lim: Limits) -> dict[str, Handler]:
    return {**_read_handlers(service, k), **_write_handlers(service, k, lim)}


def _collection_routes(app: FastAPI, service: ObjectService, k: Kind, lim: Limits) -> None:
    base = f"{PREFIX}/{k.collection}"
    h = _object_handlers(service, k, lim)
    tag: list[str | Enum] = [k.collection]
    for method, path, op, extra, summary in openapi.collection_operations(k, base):
        app.add_api_route(
            path,
            h[op],
            methods=[method],
            openapi_extra=extra,
            tags=tag,
            summary=summary,
            name=f"{method.lower()}_{k.name}_{path.count('{')}",
            response_class=JSONResponse,
        )


def _port_routes(app: FastAPI, service: ObjectService, lim: Limits) -> None:
    base = f"{PREFIX}/ports/{{id}}"
    port_tag: list[str | Enum] = ["ports"]

    async def bind(request: Request, id: str) -> Response:
        body = await http.read_object(request, lim.body_bytes, lim.body_timeout)
        req = _parse(BindingRequest, body)
        doc, version = await run_in_threadpool(
            service.bind_port, id, req.host_id, req.interface_name
        )
        return http.answer(doc, version)

    async def unbind(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.unbind_port, id)
        return http.answer(doc, version)

    async def link(request: Request, id: str) -> Response:
        body = await http.read_object(request, lim.body_bytes, lim.body_timeout)
        req = _parse(LinkRequest, body)
        doc, version = await run_in_threadpool(service.link_ports, id, req.peer_id)
        return http.answer(doc, version)

    async def unlink(request: Request, id: str) -> Response:
        doc, version = await run_in_threadpool(service.unlink_port, id)
        return http.answer(doc, version)

    handlers = {"bind": bind, "unbind": unbind, "link": link, "unlink": unlink}
    for method, path, op, extra, summary in openapi.port_operations(base):
        app.add_api_route(
            path,
            handlers[op],
            methods=[method],
            openapi_extra=extra,
            tags=port_tag,
            summary=summary,
            name=f"{method.lower()}_port_{path.rsplit('/', 1)[1]}",
        )


def _trace_route(app: FastAPI, service: ObjectService, lim: Limits) -> None:
    async def trace(request: Request) -> Response:
        body = await http.read_object(request, lim.body_bytes, lim.body_timeout)
        req = _parse(whatif.TraceRequest, body)
        return JSONResponse(await run_in_threadpool(whatif.trace, service, req))

    app.add_api_route(
        f"{PREFIX}/trace",
        trace,
        methods=["POST"],
        openapi_extra=openapi.trace_operation(),
        tags=["trace"],
        summary="what-if: the path a probe packet from a VM port would take (nothing is sent)",
        name="post_trace",
    )


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise integrity.invalid_from(exc) from None


def _install_error_handlers(app: FastAPI) -> None:
    async def netloom_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NetloomError)
        return http.error_response(exc)

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
        invalid = InvalidInput(f"{field}: {first.get('msg', 'invalid input')}", field=field)
        return http.error_response(invalid)

    app.add_exception_handler(NetloomError, netloom_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _meta_routes(app: FastAPI, service: ObjectService, kinds: list[Kind]) -> None:
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


Guard = Callable[[list[tuple[str, str]]], object]
Next = Callable[[Request], Awaitable[Response]]


def _install_guard(app: FastAPI, guard: Guard) -> None:
    """Every request under the API prefix must pass ``guard`` (given its headers; it raises
    a NetloomError: 401, 403) before anything else."""

    @app.middleware("http")
    async def check(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path.startswith(PREFIX):
            try:
                await run_in_threadpool(guard, list(request.headers.items()))
            except NetloomError as exc:
                return http.error_response(exc)
        return await call_next(request)


def create_app(  # noqa: PLR0913 (keyword-only options, each with its default)
    service: ObjectService,
    *,
    max_body_bytes: int = 1 << 20,
    body_timeout: float = 30.0,
    guard: Guard | None = None,
    history: FlowHistory | None = None,
    simlog: SimLogStore | None = None,
) -> FastAPI:
    """The ASGI application of the native API over ``service``. A request body larger than
    ``max_body_bytes`` is refused (413); one that has not arrived after ``body_timeout``
    seconds is given up (408). ``guard``: who may call it (Keystone: admins only).
    ``history``: also serve the flow history (``/insights/flows``); ``simlog``: the agents'
    simulation log (``/insights/simlog``)."""
    app = FastAPI(
        title="netloom native API",
        version=netloom.__version__,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    _install_error_handlers(app)
    if guard is not None:
        _install_guard(app, guard)
    kinds = list(KINDS.values())
    lim = Limits(max_body_bytes, body_timeout)
    _meta_routes(app, service, kinds)
    for k in kinds:
        _collection_routes(app, service, k, lim)
    _port_routes(app, service, lim)
    _trace_route(app, service, lim)
    if history is not None:
        insights.install(app, PREFIX, history)
    if simlog is not None:
        simlog_routes(app, PREFIX, simlog)
    openapi.install(app, kinds, (BindingRequest, LinkRequest, whatif.TraceRequest))
    return app


__all__ = ["PREFIX", "Guard", "Limits", "create_app"]
