"""The flow history over HTTP: ``/api/v1/insights/flows`` (JSON, paged, read only).

Query parameters are read by hand (as the rest of the API) so that a bad one is a 400 with
the API's error shape. Times are Unix seconds; a flow belongs to a window when it overlaps it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from netloom.api import openapi
from netloom.errors import InvalidInput, NotFound
from netloom.insights.history import FlowHistory
from netloom.insights.queries import (
    MAX_BUCKET_S,
    MAX_LIMIT,
    MIN_BUCKET_S,
    TALKER_KEYS,
    FlowFilter,
)
from netloom.model.flowrecord import FlowRecord

BASE = "/insights/flows"
_TEXT = {"type": "string"}
_NUMBER = {"type": "number"}
_FILTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "since": ("flows last seen at or after this time (Unix seconds)", _NUMBER),
    "until": ("flows first seen at or before this time (Unix seconds)", _NUMBER),
    "port_id": ("flows that entered or left by this port", _TEXT),
    "peer_port_id": ("with port_id: only flows between the two ports, either way", _TEXT),
    "ip": ("flows from or to this address", _TEXT),
    "peer_ip": ("with ip: only flows between the two addresses, either way", _TEXT),
    "security_group_id": ("flows decided by a rule of this security group", _TEXT),
    "rule_id": ("flows decided by this rule", _TEXT),
    "host_id": ("flows through this host (ingress or egress)", _TEXT),
    "project_id": ("flows of this project (the in-port's)", _TEXT),
    "verdict": (
        "forward | drop | reject",
        {"type": "string", "enum": ["forward", "drop", "reject"]},
    ),
    "proto": ("IP protocol number", {"type": "integer", "minimum": 0, "maximum": 255}),
}
_BUCKET = {"type": "number", "minimum": MIN_BUCKET_S, "maximum": MAX_BUCKET_S}
_FLOAT_PARAMS = ("since", "until", "bucket")
_INT_PARAMS = ("proto", "limit", "rules")


def _param(request: Request, name: str) -> Any:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        if name in _FLOAT_PARAMS:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if name in _INT_PARAMS:
            return int(value)
    except ValueError:
        raise InvalidInput(f"{name}: not a number: {value!r}", field=name) from None
    return value


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _filter(request: Request, allowed: tuple[str, ...]) -> FlowFilter:
    unknown = sorted(set(request.query_params) - set(_FILTERS) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown query parameter {unknown[0]!r}", field=unknown[0])
    return FlowFilter(**{name: _param(request, name) for name in _FILTERS})


def flow_json(record: FlowRecord) -> dict[str, Any]:
    """A flow record as the API answers it (the record's fields, lists for tuples)."""
    return dataclasses.asdict(record)


def _handlers(history: FlowHistory) -> dict[str, Callable[..., Any]]:
    async def list_flows(request: Request) -> Response:
        where = _filter(request, ("limit", "marker"))
        limit = _default(_param(request, "limit"), 100)
        page = await run_in_threadpool(history.flows, where, limit, _param(request, "marker"))
        nxt = None
        if page.marker is not None:
            params = {**request.query_params, "marker": page.marker}
            nxt = f"{request.url.path}?{urlencode(params)}"
        headers = {"Link": f'<{nxt}>; rel="next"'} if nxt else None
        body = {"flows": [flow_json(r) for r in page.items], "next": nxt}
        return JSONResponse(body, headers=headers)

    async def top(request: Request) -> Response:
        where = _filter(request, ("by", "limit"))
        by = _default(_param(request, "by"), "source")
        limit = _default(_param(request, "limit"), 10)
        talkers = await run_in_threadpool(history.top_talkers, where, by, limit)
        columns = TALKER_KEYS.get(by, ())
        body = [
            {**dict(zip(columns, t.key, strict=True)), "bytes": t.bytes, "packets": t.packets}
            | {"flows": t.flows}
            for t in talkers
        ]
        return JSONResponse({"by": by, "talkers": body})

    async def drops(request: Request) -> Response:
        where = _filter(request, ("bucket", "rules"))
        bucket = _default(_param(request, "bucket"), 60.0)
        rules = _default(_param(request, "rules"), 10)
        points = await run_in_threadpool(history.drops_by_rule, where, bucket, rules)
        body = [dataclasses.asdict(p) for p in points]
        return JSONResponse({"bucket": bucket, "drops": body})

    async def one(flow_id: str) -> Response:
        record = await run_in_threadpool(history.get, flow_id)
        if record is None:
            raise NotFound(f"no flow {flow_id!r}", field="flow_id")
        return JSONResponse(flow_json(record))

    return {"list": list_flows, "top": top, "drops": drops, "one": one}


# -- the OpenAPI document -------------------------------------------------------------------


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description} | {
        "schema": schema
    }


_FLOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "one kernel flow: identity, what the simulation decided, kernel counters",
    "properties": {
        f.name: {"type": "array", "items": _TEXT}
        if f.name in ("devices", "rules", "security_groups", "nat")
        else {}
        for f in dataclasses.fields(FlowRecord)
    },
}
_COUNT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
_LIMIT = _query("limit", f"at most this many (1..{MAX_LIMIT})", _COUNT)


def _operation(summary: str, extra: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, Any]:
    params = [_query(n, d, s) for n, (d, s) in _FILTERS.items()] + extra
    return {"parameters": params, **openapi.returns(answer, errors=("400",))}


def _operations() -> dict[str, dict[str, Any]]:
    array = {"type": "array"}
    return {
        "list": _operation(
            "flows",
            [_LIMIT, _query("marker", "the next page (from the answer's next)", _TEXT)],
            {
                "type": "object",
                "properties": {
                    "flows": {"type": "array", "items": _FLOW_SCHEMA},
                    "next": {"type": ["string", "null"], "description": "the next page"},
                },
            },
        ),
        "top": _operation(
            "top talkers",
            [
                _query("by", "source | destination | pair | port", {"enum": list(TALKER_KEYS)}),
                _LIMIT,
            ],
            {"type": "object", "properties": {"by": _TEXT, "talkers": array}},
        ),
        "drops": _operation(
            "drops by rule",
            [
                _query("bucket", "seconds per time bucket (default 60)", _BUCKET),
                _query("rules", "the rules with the most drops (default 10)", _COUNT),
            ],
            {"type": "object", "properties": {"bucket": _NUMBER, "drops": array}},
        ),
        "one": openapi.returns(_FLOW_SCHEMA, errors=("404",)),
    }


_SUMMARIES = {
    "list": ("", "list_flows", "flows, the last seen first, paged (limit, marker)"),
    "top": ("/top", "top_talkers", "top talkers by bytes: addresses, pairs or ports"),
    "drops": ("/drops", "drops_by_rule", "dropped flows per rule and time bucket"),
    "one": ("/{flow_id}", "get_flow", "one flow"),
}


def install(app: FastAPI, prefix: str, history: FlowHistory) -> None:
    """Serve ``history`` under ``<prefix>/insights/flows``."""
    handlers = _handlers(history)
    operations = _operations()
    for key in ("list", "top", "drops", "one"):  # the fixed paths before /{flow_id}
        path, name, summary = _SUMMARIES[key]
        app.add_api_route(
            f"{prefix}{BASE}{path}",
            handlers[key],
            methods=["GET"],
            openapi_extra=operations[key],
            tags=["insights"],
            summary=summary,
            name=name,
        )


__all__ = ["BASE", "flow_json", "install"]
