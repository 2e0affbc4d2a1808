"""The Neutron v2.0 API (its own port, 9696 by default): the versions document at ``/``, the
resource index at ``/v2.0``, extensions, and one identical set of routes per resource whose
writes are translations (see :mod:`netloom.api.neutron`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from netloom.api.keystone import KeystoneAuth
from netloom.api.neutron import (
    docs,
    extensions,
    faults,
    floatingips,
    networks,
    ports,
    query,
    router_ifaces,
    routers,
    security_groups,
    sg_rules,
    subnets,
    tags,
)
from netloom.api.neutron import request as request_
from netloom.api.neutron.request import read_body
from netloom.api.service import ObjectService
from netloom.errors import NetloomError, NeutronFault

VERSION = "v2.0"
PREFIX = f"/{VERSION}"

Authenticate = Callable[[Request], Awaitable[docs.Caller]]


RESOURCES: dict[str, Any] = {
    "networks": networks,
    "subnets": subnets,
    "ports": ports,
    "security-groups": security_groups,
    "security-group-rules": sg_rules,
    "routers": routers,
    "floatingips": floatingips,
}
FILTER_ALIASES = {"ports": ("ip_address", "subnet_id")}
# a port's delete disassociates its floating IPs: it lives with them
DELETES: dict[str, Callable[..., None]] = {"ports": floatingips.delete_port}


def keystone(auth: KeystoneAuth) -> Authenticate:
    """Callers identified by their Keystone token (401 without a valid one)."""

    async def caller(request: Request) -> docs.Caller:
        who = await run_in_threadpool(auth.identify, list(request.headers.items()))
        return docs.Caller(who.project_id, who.is_admin, who.roles, who.can_write)

    return caller


def writer(caller: docs.Caller, rule: str) -> docs.Caller:
    """A reader's writes are refused (Neutron's default policy: 403)."""
    if not caller.can_write:
        raise docs.policy_denied(rule)
    return caller


NOAUTH_PROJECT = "admin"


async def noauth(request: Request) -> docs.Caller:
    """Without Keystone every caller is an admin of project ``X-Project-Id`` (``admin``
    without the header, so that a client that cannot name one, as the ``openstack`` CLI
    without Keystone, still can create); a body may name any project."""
    project = request.headers.get("x-project-id") or NOAUTH_PROJECT
    return docs.Caller(project_id=project, is_admin=True)


def _list(service: ObjectService, collection: str, request: Request, caller: docs.Caller) -> Any:
    mod = RESOURCES[collection]
    params = list(request.query_params.multi_items())
    q = query.parse(params, mod.ATTRS, FILTER_ALIASES.get(collection, ()))
    kind = docs.kind(mod.RESOURCE)
    found = [it.data for it in service.store.list(kind)]
    items = [d for d in found if docs.visible(d, caller) and query.matches(d, q)]
    marker = None
    if q.marker is not None:
        item = service.store.get(kind, q.marker) if _is_uuid(q.marker) else None
        if item is None or not docs.visible(item.data, caller):
            raise faults.not_found(mod.RESOURCE, q.marker)
        marker = item.data
    page = query.page(items, q, marker)
    key = collection.replace("-", "_")  # the body's key: security_groups at /security-groups
    body: dict[str, Any] = {key: [query.project(d, q.fields) for d in page]}
    links = query.links(f"{request_.base_url(request)}{request.url.path}", params, q, page)
    if links:
        body[f"{key}_links"] = links
    return body


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _show(service: ObjectService, resource: str, id: str, caller: docs.Caller) -> Any:
    item = service.store.get(docs.kind(resource), id) if _is_uuid(id) else None
    if item is None or not docs.visible(item.data, caller):
        raise faults.not_found(resource, id)
    return item.data


def _routes(app: FastAPI, service: ObjectService, collection: str, auth: Authenticate) -> None:
    mod = RESOURCES[collection]
    name = mod.RESOURCE
    base = f"{PREFIX}/{collection}"

    async def list_(request: Request) -> Response:
        caller = await auth(request)
        body = await run_in_threadpool(_list, service, collection, request, caller)
        return JSONResponse(body)

    async def create(request: Request) -> Response:
        caller = writer(await auth(request), f"create_{name}")
        body = await read_body(request)
        doc = await run_in_threadpool(docs.serial, mod.create, service, caller, body)
        return JSONResponse({name: doc}, status_code=201)

    async def show(request: Request, id: str) -> Response:
        caller = await auth(request)
        doc = await run_in_threadpool(_show, service, name, id, caller)
        return JSONResponse({name: query.project(doc, request.query_params.getlist("fields"))})

    async def update(request: Request, id: str) -> Response:
        caller = writer(await auth(request), f"update_{name}")
        body = await read_body(request)
        if_match = request.headers.get("if-match")
        doc = await run_in_threadpool(docs.serial, mod.update, service, caller, id, body, if_match)
        return JSONResponse({name: doc})

    async def delete(request: Request, id: str) -> Response:
        caller = writer(await auth(request), f"delete_{name}")
        if_match = request.headers.get("if-match")
        remove = DELETES.get(collection) or mod.delete
        await run_in_threadpool(docs.serial, remove, service, caller, id, if_match)
        return Response(status_code=204)

    app.add_api_route(base, list_, methods=["GET"])
    app.add_api_route(base, create, methods=["POST"])
    app.add_api_route(base + "/{id}", show, methods=["GET"])
    app.add_api_route(base + "/{id}", update, methods=["PUT"])
    app.add_api_route(base + "/{id}", delete, methods=["DELETE"])
    tags.routes(app, service, base, name, auth)


def _interface_routes(app: FastAPI, service: ObjectService, auth: Authenticate) -> None:
    async def add(request: Request, id: str) -> Response:
        caller = writer(await auth(request), "add_router_interface")
        body = await read_body(request)
        return JSONResponse(
            await run_in_threadpool(docs.serial, router_ifaces.add, service, caller, id, body)
        )

    async def remove(request: Request, id: str) -> Response:
        caller = writer(await auth(request), "remove_router_interface")
        body = await read_body(request)
        answer = await run_in_threadpool(
            docs.serial, router_ifaces.remove, service, caller, id, body
        )
        return JSONResponse(answer)

    app.add_api_route(PREFIX + "/routers/{id}/add_router_interface", add, methods=["PUT"])
    app.add_api_route(PREFIX + "/routers/{id}/remove_router_interface", remove, methods=["PUT"])


def _meta_routes(app: FastAPI) -> None:
    async def versions(request: Request) -> Response:
        link = {"href": f"{request_.base_url(request)}{PREFIX}/", "rel": "self"}
        return JSONResponse({"versions": [{"id": VERSION, "status": "CURRENT", "links": [link]}]})

    async def index(request: Request) -> Response:
        resources = [
            {
                "name": mod.RESOURCE,
                "collection": collection,
                "links": [
                    {"href": f"{request_.base_url(request)}{PREFIX}/{collection}", "rel": "self"}
                ],
            }
            for collection, mod in RESOURCES.items()
        ]
        return JSONResponse({"resources": resources})

    async def ext_list(request: Request) -> Response:
        return JSONResponse({"extensions": extensions.listing()})

    async def ext_show(request: Request, alias: str) -> Response:
        for ext in extensions.listing():
            if ext["alias"] == alias:
                return JSONResponse({"extension": ext})
        raise NeutronFault(404, "HTTPNotFound", f"Extension with alias {alias} does not exist")

    app.add_api_route("/", versions, methods=["GET"])
    app.add_api_route(PREFIX, index, methods=["GET"])
    app.add_api_route(PREFIX + "/", index, methods=["GET"])
    app.add_api_route(PREFIX + "/extensions", ext_list, methods=["GET"])
    app.add_api_route(PREFIX + "/extensions/{alias}", ext_show, methods=["GET"])


def _error_handlers(app: FastAPI) -> None:
    async def netloom_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NetloomError)
        return faults.response(faults.from_native(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}
        messages = {404: "The resource could not be found.", 405: "Method not allowed."}
        fault = NeutronFault(
            exc.status_code,
            kinds.get(exc.status_code, f"HTTP{exc.status_code}"),
            messages.get(exc.status_code, str(exc.detail)),
        )
        return faults.response(fault)

    app.add_exception_handler(NetloomError, netloom_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def create_app(service: ObjectService, auth: Authenticate = noauth) -> FastAPI:
    """The ASGI application of the Neutron API over ``service``; ``auth`` says who calls."""
    app = FastAPI(title="netloom Neutron API", openapi_url=None, docs_url=None, redoc_url=None)
    _error_handlers(app)
    _meta_routes(app)
    for collection in RESOURCES:
        _routes(app, service, collection, auth)
    _interface_routes(app, service, auth)
    return app


__all__ = [
    "DELETES",
    "NOAUTH_PROJECT",
    "PREFIX",
    "RESOURCES",
    "Authenticate",
    "create_app",
    "keystone",
    "noauth",
    "writer",
]
