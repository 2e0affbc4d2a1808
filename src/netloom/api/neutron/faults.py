"""Neutron's errors: its status codes, its exception type names and its error body
``{"NeutronError": {"type", "message", "detail"}}`` (neutron-lib ``exceptions``)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from netloom.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidInput,
    NetloomError,
    NeutronFault,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)


def bad_request(message: str, fault: str = "HTTPBadRequest") -> NeutronFault:
    return NeutronFault(400, fault, message)


def invalid_input(message: str) -> NeutronFault:
    """neutron-lib ``InvalidInput``: "Invalid input for operation: ..."."""
    return NeutronFault(400, "InvalidInput", f"Invalid input for operation: {message}.")


def not_found(resource: str, id: str) -> NeutronFault:
    """``NetworkNotFound``, ``SubnetNotFound``, ``PortNotFound``... (404)."""
    fault = "".join(p.capitalize() for p in resource.split("_")) + "NotFound"
    label = resource.replace("_", " ").capitalize()
    return NeutronFault(404, fault, f"{label} {id} could not be found.")


def conflict(fault: str, message: str) -> NeutronFault:
    return NeutronFault(409, fault, message)


def unsupported(message: str) -> NeutronFault:
    return NeutronFault(400, "InvalidInput", f"Invalid input for operation: {message}.")


def from_native(exc: NetloomError) -> NeutronFault:
    """A native error raised while translating, as Neutron would name it."""
    if isinstance(exc, NeutronFault):
        return exc
    if isinstance(exc, AlreadyExists) and exc.field == "mac":
        return conflict("MacAddressInUse", f"Unable to complete operation: {exc.message}")
    if isinstance(exc, NotAuthenticated):
        return NeutronFault(401, "HTTPUnauthorized", exc.message)
    if isinstance(exc, Forbidden):
        return NeutronFault(403, "PolicyNotAuthorized", exc.message)
    if isinstance(exc, PreconditionFailed):
        return NeutronFault(412, "PreconditionFailed", exc.message)
    if isinstance(exc, Conflict):
        return conflict("Conflict", exc.message)
    if isinstance(exc, NotFound):
        return NeutronFault(404, "NotFound", exc.message)
    if isinstance(exc, InvalidInput):
        return invalid_input(exc.message)
    if isinstance(exc, PayloadTooLarge):
        return NeutronFault(413, "RequestEntityTooLarge", exc.message)
    return NeutronFault(exc.status, type(exc).__name__, exc.message)


def response(fault: NeutronFault) -> JSONResponse:
    body = {"NeutronError": {"type": fault.fault, "message": fault.message, "detail": ""}}
    return JSONResponse(body, status_code=fault.status)


__all__ = [
    "bad_request",
    "conflict",
    "from_native",
    "invalid_input",
    "not_found",
    "response",
    "unsupported",
]
