"""The OpenAPI document of the native API: component schemas generated from the records
(``<Kind>``, ``<Kind>Create``, ``<Kind>Patch``), the parameters, request and answer fragments of
each route, and the clean-up of what FastAPI adds (its 422 answers: this API answers 400 +
Error) and of developer markup in descriptions (reStructuredText roles and literals)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from netloom.api import listing, views
from netloom.model.kinds import SECRET_MASK, Kind

DESCRIPTION = """The native API of netloom: one collection per kind of topology object, all alike.

Conventions:

* Bodies are JSON (`application/json`, else 415), at most 1 MiB (else 413), and must arrive in
  time (a body shorter than its Content-Length gets 408).
* Errors are `{"code", "message", "field"}`. Malformed JSON, a wrong type, a value that fails
  validation and a bad query parameter are all **400**; this API never answers 422. An unknown
  object (or list `marker`) is 404; a broken invariant (duplicate name, object in use, version
  conflict) is 409.
* Every object answer carries `ETag: "<version>"` and a `version` field. `If-Match` makes a
  write conditional (412 when it does not match); a `version` member in a PUT/PATCH body does
  the same with 409. `If-None-Match` on GET answers 304 when it matches (`*` matches any
  object); on a write it fails the write with 412.
* PATCH is a JSON Merge Patch (RFC 7396); PUT replaces the record (system-owned fields kept).
* Lists answer `{"items": [...], "next": "<url>"}`. They are sorted by `sort_key` (default
  `id`; the rules of `?chain_id=C` in evaluation order) and `sort_dir` (`asc`, `desc`); with
  `limit`, `next` (and a `Link: <url>; rel="next"` header) gives the next page, whose `marker`
  is the id of the last object of this one; the last page has no `next`.
* DELETE refuses an object that others still use (409); `?cascade=true` deletes its children
  with it.

What the API decides for the caller:

* a rule without `position` goes after its chain's last rule; a taken position inserts the rule
  and moves the rules from there on down by one, in the same commit;
* a router port's address makes its connected and local routes (`system: true`); they move and
  go with the address and cannot be changed by hand (409);
* a port without `mac` gets a generated, locally administered one; a fixed IP must lie in one
  of the bridge's DHCP subnets (any address on a bridge without one) and be unique on the
  bridge; `"auto"` in `fixed_ips` is replaced by a free address of the bridge's subnets;
* references between two tenants' objects are refused unless the target is `shared`;
  `tenant_id` is fixed at creation (a PUT without it keeps it);
* a bgp_peer's address must lie on the subnet of an uplink of its router (a router port bound
  to a host, with an address); one peer per address and router, one bgp_network per prefix
  and router; the peer's `password` is write-only and its `status` is the session as the
  gateway agent reports it; routes learned from a peer (`learned_from`) are written by the
  cluster from the agent's reports, go with the peer, the uplink or the session, and cannot
  be changed by hand (409);
* names are unique per kind in their scope: the tenant (bridges, routers, chains, groups), the
  parent (a device's ports, a router's routes, a chain's rules, a bridge's subnets) or the
  whole cloud (tenants, hosts, tunnel zones); `""` is no name.
"""

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str) -> str:
    """``text`` without reStructuredText markup: a role keeps its last dotted name (or its
    title), a literal becomes a Markdown code span."""

    def role(m: re.Match[str]) -> str:
        target = m.group(1).strip()
        return f"`{target.rsplit('.', 1)[-1] if ' ' not in target else target}`"

    return _LITERAL.sub(r"`\1`", _ROLE.sub(role, text))


def _scrub(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                node[key] = plain(value)
            else:
                _scrub(value)
    elif isinstance(node, list):
        for value in node:
            _scrub(value)


def _answer_props(k: Kind, full: dict[str, Any]) -> dict[str, Any]:
    """The properties of a kind's answer schema: its fields (system-owned ones read-only,
    secret ones described), the answer-only views and the version."""
    props = dict(full.get("properties", {}))
    for field in k.read_only:
        if field in props:
            props[field] = {**props[field], "readOnly": True}
    for field in k.secret:
        props[field] = {
            **props[field],
            "description": f"write-only: answered as {SECRET_MASK!r} when set, null when"
            " not; given back as the mask on a write, the stored value is kept",
        }
    props.update(views.VIEWS.get(k.name, {}))
    props["version"] = {
        "type": "integer",
        "minimum": 1,
        "readOnly": True,
        "description": "store version; also the ETag",
    }
    return props


def schemas(kinds: list[Kind], models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """Component schemas for every kind: ``<Name>`` (answer), ``<Name>Create``, ``<Name>Patch``,
    plus the nested models they share."""
    ref = "#/components/schemas/{model}"
    out: dict[str, Any] = {}
    for k in kinds:
        name = k.record.__name__
        full = k.record.model_json_schema(ref_template=ref, mode="serialization")
        out.update(full.pop("$defs", {}))
        props = _answer_props(k, full)
        out[name] = {**full, "properties": props}
        create = k.record.model_json_schema(ref_template=ref, mode="validation")
        out.update(create.pop("$defs", {}))
        cprops = {f: s for f, s in create.get("properties", {}).items() if f not in k.read_only}
        out[f"{name}Create"] = {
            **create,
            "title": f"{name}Create",
            "properties": cprops,
            "additionalProperties": False,
        }
        pprops = {
            **cprops,
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "expected version (compare-and-set)",
            },
        }
        out[f"{name}Patch"] = {
            "title": f"{name}Patch",
            "type": "object",
            "properties": pprops,
            "additionalProperties": False,
            "description": f"JSON Merge Patch (RFC 7396) of a {name}; null removes a field",
        }
    for model in models:
        out[model.__name__] = model.model_json_schema(ref_template=ref)
    out["Error"] = {
        "type": "object",
        "required": ["code", "message", "field"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
        },
    }
    return out


def body(schema: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


_ERRORS = {
    "400": "invalid input: malformed JSON, a wrong type, a value that fails validation or a bad "
    "query parameter",
    "404": "no such object",
    "408": "the body did not arrive in time",
    "409": "conflict: the object is in use, a name or address is taken, or the version differs",
    "412": "If-Match does not match, or If-None-Match matches",
    "413": "the body is too large",
    "415": "the body is not JSON",
}
_READ = ("400", "404")
_WRITE = ("400", "404", "408", "409", "412", "413", "415")
_ETAG = {"ETag": {"description": "the object's version", "schema": {"type": "string"}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def returns(
    schema: dict[str, Any] | str,
    status: str = "200",
    errors: Sequence[str] = _WRITE,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answers of an operation: ``schema`` (a component name or a schema) under
    ``status``, and the Error answers ``errors``."""
    body = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    ok: dict[str, Any] = {"description": "OK", "content": _json(body)}
    if headers:
        ok["headers"] = headers
    out: dict[str, Any] = {status: ok}
    for code in errors:
        out[code] = {
            "description": _ERRORS[code],
            "content": _json({"$ref": "#/components/schemas/Error"}),
        }
    return {"responses": out}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _list_operation(k: Kind) -> dict[str, Any]:
    name = k.record.__name__
    params = [
        _query(f, f"only the {k.collection} whose {f} is this", {"type": "string"})
        for f in k.filters
    ]
    params += [
        _query(
            "limit",
            "at most this many items (then `next` names the next page)",
            {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT},
        ),
        _query("marker", "the id of the last item of the previous page", {"type": "string"}),
        _query(
            "sort_key",
            "the field to sort by (default id; a chain's rules: evaluation order)",
            {"type": "string", "enum": sorted(k.record.model_fields)},
        ),
        _query(
            "sort_dir",
            "sort direction",
            {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
        ),
    ]
    page = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            "next": {
                "type": "string",
                "description": "the URL of the next page (absent on the last)",
            },
        },
    }
    link = {
        "Link": {"description": 'the next page: `<url>; rel="next"`', "schema": {"type": "string"}}
    }
    return {"parameters": params, **returns(page, errors=_READ, headers=link)}


def collection_operations(k: Kind, base: str) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """``(method, path, handler, OpenAPI fragment, summary)`` of a collection's routes."""
    name = k.record.__name__
    one = f"{base}/{{id}}"
    if_match = _header("If-Match", "write only if the object's ETag is this")
    if_none = _header("If-None-Match", "GET: 304 if the ETag is one of these (`*`: any)")
    cascade = _query(
        "cascade",
        "also delete the object's children (else 409 while it has any)",
        {"type": "boolean", "default": False},
    )
    get_ok = returns(name, errors=("404",), headers=_ETAG)
    get_ok["responses"]["304"] = {"description": "not modified (If-None-Match)", "headers": _ETAG}
    write = {"parameters": [if_match, if_none]}
    deleted = returns(name, errors=("400", "404", "409", "412"))["responses"]
    deleted.pop("200")
    return [
        (
            "POST",
            base,
            "create",
            {**body(f"{name}Create"), **returns(name, "201", headers=_ETAG)},
            f"create a {k.name}",
        ),
        (
            "GET",
            base,
            "list",
            _list_operation(k),
            f"list {k.collection} (filters: {', '.join(k.filters) or 'none'})",
        ),
        ("GET", one, "get", {"parameters": [if_none], **get_ok}, f"read a {k.name}"),
        (
            "PUT",
            one,
            "replace",
            {**write, **body(f"{name}Create"), **returns(name, headers=_ETAG)},
            f"replace a {k.name}",
        ),
        (
            "PATCH",
            one,
            "patch",
            {**write, **body(f"{name}Patch"), **returns(name, headers=_ETAG)},
            f"update a {k.name} (JSON Merge Patch)",
        ),
        (
            "DELETE",
            one,
            "delete",
            {
                "parameters": [if_match, if_none, cascade],
                "responses": {"204": {"description": "deleted"}, **deleted},
            },
            f"delete a {k.name}",
        ),
    ]


def port_operations(base: str) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """``(method, path, handler, OpenAPI fragment, summary)`` of a port's sub-resources."""
    plain_write = returns("Port", errors=("404", "409"))
    return [
        (
            "POST",
            f"{base}/binding",
            "bind",
            {**body("BindingRequest"), **returns("Port")},
            "bind a port to a host interface",
        ),
        ("DELETE", f"{base}/binding", "unbind", plain_write, "unbind a port"),
        (
            "POST",
            f"{base}/link",
            "link",
            {**body("LinkRequest"), **returns("Port")},
            "link two ports (both peer_id fields, one commit)",
        ),
        ("DELETE", f"{base}/link", "unlink", plain_write, "unlink a port and its peer"),
    ]


def trace_operation() -> dict[str, Any]:
    """``POST /trace``: a TraceRequest in, the simulation's result out."""
    answer = {
        "type": "object",
        "required": ["verdict", "outputs", "actions", "trace", "assumed"],
        "properties": {
            "verdict": {"type": "string"},
            "in_port_id": {"type": ["string", "null"]},
            "outputs": {"type": "array", "items": {"type": "string"}},
            "actions": {"type": "array"},
            "match": {"type": "object"},
            "cacheable": {"type": "boolean"},
            "awaiting": {"type": "array"},
            "generated": {"type": "array"},
            "changes": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "trace": {},
            "assumed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "what the trace assumed (e.g. a SNAT port block)",
            },
        },
    }
    return {**body("TraceRequest"), **returns(answer, errors=("400", "404", "408", "413", "415"))}


def install(app: FastAPI, kinds: list[Kind], models: Sequence[type[BaseModel]]) -> None:
    """Serve the document built from the app's routes and the kinds' schemas."""
    components = schemas(kinds, models)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=DESCRIPTION
            )
            found = schema.setdefault("components", {}).setdefault("schemas", {})
            # this API answers bad input with 400 + Error, never FastAPI's 422
            for name in ("HTTPValidationError", "ValidationError"):
                found.pop(name, None)
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            found.update(components)
            _scrub(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


__all__ = [
    "DESCRIPTION",
    "body",
    "collection_operations",
    "install",
    "plain",
    "port_operations",
    "returns",
    "schemas",
    "trace_operation",
]
