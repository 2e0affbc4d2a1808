"""The one exception tree of netloom.

Every error a caller can act on derives from :class:`NetloomError` and carries a stable
``code`` (used as the JSON ``code`` of API errors and the CLI's one-line message) and, where one
input field is to blame, that ``field``.

    NetloomError
    ├── InvalidInput        400  malformed or unknown field, bad CIDR/MAC, wrong type
    │   └── ConfigError          a config file that cannot be used (names file, line, key)
    ├── NotAuthenticated    401  no valid token (Keystone)
    ├── Forbidden           403  the token's roles do not allow it
    ├── NotFound            404  no such object
    ├── Conflict            409
    │   ├── VersionConflict      compare-and-set failed (someone else wrote first)
    │   ├── AlreadyExists        duplicate id or unique value (MAC, tunnel key, name...)
    │   ├── InUse                deleting an object others still reference
    │   └── (VersionConflict) PreconditionFailed  412  If-Match / If-None-Match failed
    ├── PayloadTooLarge     413
    ├── UnsupportedMediaType 415  a body that is not JSON
    ├── RequestTimeout      408  the body did not arrive in time
    ├── StoreError          503  the NSDB cannot be reached or failed
    │   └── Compacted            a watch resumed from a revision the store no longer keeps
    ├── DatapathError       500  the kernel datapath refused an operation
    ├── GatewayError        500  an uplink's routing sidecar failed (namespace, bird)
    ├── Untranslatable      500  a flow's output port has no known location (agent)
    ├── NotYet              503  the simulation needs an object or state not loaded yet
    ├── LabError            500  a lab namespace, process or probe did not do what it should
    ├── NeutronFault        (Neutron's status)  an error of the Neutron API, by Neutron's type name
    ├── ApiError            (the API's status)  an error answer of the REST API, client side
    └── ApiUnreachable      503  no HTTP exchange with the API happened at all
"""

from __future__ import annotations

import sys


class NetloomError(Exception):
    """Base of every netloom error."""

    code: str = "error"
    status: int = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidInput(NetloomError):
    code = "invalid_input"
    status = 400


class ConfigError(InvalidInput):
    """A config file that is missing, not TOML, or has an unknown table or key or a bad value;
    the message names the file, the line and the key."""

    code = "bad_config"


class NotAuthenticated(NetloomError):
    """No valid token (RFC 9110 §15.5.2)."""

    code = "unauthorized"
    status = 401


class Forbidden(NetloomError):
    """A valid token whose roles do not allow the request (RFC 9110 §15.5.4)."""

    code = "forbidden"
    status = 403


class NotFound(NetloomError):
    code = "not_found"
    status = 404


class Conflict(NetloomError):
    code = "conflict"
    status = 409


class VersionConflict(Conflict):
    code = "version_conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class InUse(Conflict):
    code = "in_use"


class PreconditionFailed(VersionConflict):
    """A conditional header failed (RFC 9110 §13.1.1: 412, not 409)."""

    code = "precondition_failed"
    status = 412


class UnsupportedMediaType(NetloomError):
    """A request body that is not JSON (RFC 9110 §15.5.16)."""

    code = "unsupported_media_type"
    status = 415


class RequestTimeout(NetloomError):
    """The body did not arrive in time (fewer bytes than Content-Length; RFC 9110 §15.5.9)."""

    code = "request_timeout"
    status = 408


class PayloadTooLarge(NetloomError):
    code = "payload_too_large"
    status = 413


class StoreError(NetloomError):
    code = "store_unavailable"
    status = 503


class Compacted(StoreError):
    code = "compacted"
    status = 410


class DatapathError(NetloomError):
    """The datapath refused an operation; ``errno`` when the kernel said why."""

    code = "datapath_error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, field=field)
        self.errno = errno


class GatewayError(NetloomError):
    """A gateway's routing sidecar failed (namespace, interfaces, bird's control socket)."""

    code = "gateway_error"
    status = 500


class Untranslatable(NetloomError):
    """An output port has no known location (unbound, or its host has no tunnel IP)."""

    code = "untranslatable"
    status = 500

    def __init__(self, port_id: str) -> None:
        super().__init__(f"no location for port {port_id}", field="port_id")
        self.port_id = port_id


class NotYet(NetloomError):
    """Raised inside the simulation when a needed object or state is not available; the
    simulation turns it into a NOT_YET result naming ``what`` (it never escapes ``simulate``)."""

    code = "not_yet"
    status = 503

    def __init__(self, what: tuple[str, ...]) -> None:
        super().__init__(":".join(what))
        self.what = what


class LabError(NetloomError):
    code = "lab_error"
    status = 500


class DemoStepFailed(LabError):
    """A demo step did not do what it shows; ``step`` names it."""

    code = "demo_step_failed"

    def __init__(self, message: str, *, step: str = "") -> None:
        super().__init__(message, field=None)
        self.step = step


class SetupUnavailable(NetloomError):
    """A benchmark setup cannot be built on this machine (e.g. no BPF): the benchmark skips
    it with this message rather than failing the whole run."""

    code = "setup_unavailable"
    status = 501


class NeutronFault(NetloomError):
    """An error of the Neutron API as Neutron reports it: its status code and its exception's
    type name (``fault``: ``NetworkNotFound``, ``IpAddressAlreadyAllocated``...)."""

    code = "neutron_fault"

    def __init__(self, status: int, fault: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.fault = fault


class ApiError(NetloomError):
    """An error the API returned; ``code`` is the API's stable code (``invalid_input``...)."""

    def __init__(self, code: str, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code
        self.status = status


class ApiUnreachable(NetloomError):
    """No HTTP exchange happened at all (connection refused, DNS, timeout)."""

    code = "unreachable"
    status = 503

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot reach the API at {url}")
        self.url = url
        self.detail = detail


# One line per error: ``error: <code>: <message> (field: x)`` on stderr, so that a shell script
# can grep it and a person is not buried in a traceback.


def error_line(exc: BaseException) -> str:
    """The single stderr line of a failed command."""
    if isinstance(exc, ApiUnreachable):
        return f"error: {exc.message}"
    if isinstance(exc, NetloomError):
        message = " ".join(exc.message.split())  # one line, whatever the server sent
        tail = f" (field: {exc.field})" if exc.field else ""
        return f"error: {exc.code}: {message}{tail}"
    return f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"


def print_error(exc: BaseException) -> None:
    sys.stderr.write(error_line(exc) + "\n")
    sys.stderr.flush()


__all__ = [
    "AlreadyExists",
    "ApiError",
    "ApiUnreachable",
    "Compacted",
    "ConfigError",
    "Conflict",
    "DatapathError",
    "DemoStepFailed",
    "Forbidden",
    "GatewayError",
    "InUse",
    "InvalidInput",
    "LabError",
    "NetloomError",
    "NeutronFault",
    "NotAuthenticated",
    "NotFound",
    "NotYet",
    "PayloadTooLarge",
    "PreconditionFailed",
    "RequestTimeout",
    "SetupUnavailable",
    "StoreError",
    "UnsupportedMediaType",
    "Untranslatable",
    "VersionConflict",
    "error_line",
    "print_error",
]
