"""The one exception tree of netloom.

Every error a caller can act on derives from :class:`NetloomError` and carries a stable
``code`` (used as the JSON ``code`` of API errors and the CLI's one-line message) and, where one
input field is to blame, that ``field``.

    NetloomError
    ├── InvalidInput        400  malformed or unknown field, bad CIDR/MAC, wrong type
    ├── NotFound            404  no such object
    ├── Conflict            409
    │   ├── VersionConflict      compare-and-set failed (someone else wrote first)
    │   ├── AlreadyExists        duplicate id or unique value (MAC, tunnel key, name...)
    │   └── InUse                deleting an object others still reference
    ├── PayloadTooLarge     413
    ├── StoreError          503  the NSDB cannot be reached or failed
    │   └── Compacted            a watch resumed from a revision the store no longer keeps
    ├── DatapathError       500  the kernel datapath refused an operation
    └── LabError            500  a lab namespace, process or probe did not do what it should
"""

from __future__ import annotations


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
    code = "datapath_error"
    status = 500


class LabError(NetloomError):
    code = "lab_error"
    status = 500


__all__ = [
    "AlreadyExists",
    "Compacted",
    "Conflict",
    "DatapathError",
    "InUse",
    "InvalidInput",
    "LabError",
    "NetloomError",
    "NotFound",
    "PayloadTooLarge",
    "StoreError",
    "VersionConflict",
]
