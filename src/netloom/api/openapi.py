"""The OpenAPI document of the native API: component schemas generated from the records
(``<Kind>``, ``<Kind>Create``, ``<Kind>Patch``), the request/answer fragments of each route, and
the clean-up that leaves FastAPI's own 422 answers out (this API answers 400 + Error)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from netloom.model.kinds import Kind


def schemas(kinds: list[Kind], models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """Component schemas for every kind: ``<Name>`` (answer), ``<Name>Create``, ``<Name>Patch``,
    plus the nested models they share."""
    ref = "#/components/schemas/{model}"
    out: dict[str, Any] = {}
    for k in kinds:
        name = k.record.__name__
        full = k.record.model_json_schema(ref_template=ref, mode="serialization")
        out.update(full.pop("$defs", {}))
        props = dict(full.get("properties", {}))
        for field in k.read_only:
            if field in props:
                props[field] = {**props[field], "readOnly": True}
        props["version"] = {
            "type": "integer",
            "minimum": 1,
            "readOnly": True,
            "description": "store version; also the ETag",
        }
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


def returns(schema: str, status: str = "200", many: bool = False) -> dict[str, Any]:
    item = {"$ref": f"#/components/schemas/{schema}"}
    body: dict[str, Any] = (
        {"type": "object", "properties": {"items": {"type": "array", "items": item}}}
        if many
        else item
    )
    errors = {
        code: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code, text in (
            ("400", "invalid input"),
            ("404", "not found"),
            ("409", "conflict"),
            ("412", "If-Match failed"),
        )
    }
    return {
        "responses": {
            status: {"description": "OK", "content": {"application/json": {"schema": body}}},
            **errors,
        }
    }


def install(
    app: FastAPI, kinds: list[Kind], models: Sequence[type[BaseModel]], description: str
) -> None:
    """Serve the document built from the app's routes and the kinds' schemas."""
    components = schemas(kinds, models)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=description
            )
            found = schema.setdefault("components", {}).setdefault("schemas", {})
            # this API answers bad input with 400 + Error, never FastAPI's 422
            for name in ("HTTPValidationError", "ValidationError"):
                found.pop(name, None)
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            found.update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


__all__ = ["body", "install", "returns", "schemas"]
