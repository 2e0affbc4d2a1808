"""The tag sub-resource of every Neutron resource (``standard-attr-tag``):
``/{collection}/{id}/tags[/{tag}]``. A tag change is a write of the Neutron document only
(its revision goes up); no native record carries tags."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from netloom.api.neutron import docs, faults
from netloom.api.neutron.request import read_body
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx

MAX_TAG = 255


def _check(tag: Any) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG or "," in tag:
        raise faults.bad_request(f"Invalid input for tags. Reason: '{tag}' is not a valid tag.")
    return tag


def _write(
    service: ObjectService,
    resource: str,
    id: str,
    caller: docs.Caller,
    change: Callable[[list[str]], list[str]],
) -> list[str]:
    if not caller.can_write:
        raise docs.policy_denied(f"update_{resource}:tags")

    def plan(tx: Tx) -> list[str]:
        old = docs.get_own(tx, resource, id, caller)
        new_tags = change(list(old["tags"]))
        if new_tags != old["tags"]:
            docs.put(tx, resource, docs.stamp({**old, "tags": new_tags}, old))
        return new_tags

    return service.transact(plan)


def _read(service: ObjectService, resource: str, id: str, caller: docs.Caller) -> Doc:
    return service.transact(lambda tx: docs.get(tx, resource, id, caller))


def routes(
    app: FastAPI,
    service: ObjectService,
    base: str,
    resource: str,
    auth: Callable[[Request], Awaitable[docs.Caller]],
) -> None:
    async def get_all(request: Request, id: str) -> Response:
        doc = await run_in_threadpool(_read, service, resource, id, await auth(request))
        return JSONResponse({"tags": doc["tags"]})

    async def replace(request: Request, id: str) -> Response:
        caller = await auth(request)
        body = await read_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise faults.bad_request("Invalid tags body")
        wanted = sorted({_check(t) for t in body["tags"]})
        new = await run_in_threadpool(_write, service, resource, id, caller, lambda _: wanted)
        return JSONResponse({"tags": new})

    async def clear(request: Request, id: str) -> Response:
        caller = await auth(request)
        await run_in_threadpool(_write, service, resource, id, caller, lambda _: [])
        return Response(status_code=204)

    app.add_api_route(base + "/{id}/tags", get_all, methods=["GET"])
    app.add_api_route(base + "/{id}/tags", replace, methods=["PUT"])
    app.add_api_route(base + "/{id}/tags", clear, methods=["DELETE"])
    _one_tag_routes(app, service, base, resource, auth)


def _one_tag_routes(
    app: FastAPI,
    service: ObjectService,
    base: str,
    resource: str,
    auth: Callable[[Request], Awaitable[docs.Caller]],
) -> None:
    async def has(request: Request, id: str, tag: str) -> Response:
        doc = await run_in_threadpool(_read, service, resource, id, await auth(request))
        if tag not in doc["tags"]:
            raise faults.not_found("tag", tag)
        return Response(status_code=204)

    async def add(request: Request, id: str, tag: str) -> Response:
        caller = await auth(request)
        _check(tag)
        await run_in_threadpool(_write, service, resource, id, caller, lambda t: sorted({*t, tag}))
        return Response(status_code=201)

    async def remove(request: Request, id: str, tag: str) -> Response:
        caller = await auth(request)

        def drop(have: list[str]) -> list[str]:
            if tag not in have:
                raise faults.not_found("tag", tag)
            return [t for t in have if t != tag]

        await run_in_threadpool(_write, service, resource, id, caller, drop)
        return Response(status_code=204)

    app.add_api_route(base + "/{id}/tags/{tag}", has, methods=["GET"])
    app.add_api_route(base + "/{id}/tags/{tag}", add, methods=["PUT"])
    app.add_api_route(base + "/{id}/tags/{tag}", remove, methods=["DELETE"])


__all__ = ["routes"]
