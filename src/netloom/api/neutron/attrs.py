"""Attribute maps of Neutron resources and the checks of a request body against them
(neutron-lib ``api.definitions`` and ``api.validators``, in the part this API implements)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netloom.api.neutron import faults

Convert = Callable[[Any], Any]
MISSING: Any = object()
MAX_NAME = 255
_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


class Reason(ValueError):
    """Why one attribute's value is refused (becomes "Invalid input for X. Reason: ...")."""


@dataclass(frozen=True)
class Attr:
    """One attribute: whether a create (POST) or an update (PUT) may set it, its default on
    create (``MISSING``: required), and its conversion (raises :class:`Reason`)."""

    post: bool = True
    put: bool = True
    default: Any = None
    convert: Convert | None = None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Reason(f"'{value}' cannot be converted to boolean")


def string(max_len: int = MAX_NAME) -> Convert:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Reason(f"'{value}' is not a valid string")
        if len(value) > max_len:
            raise Reason(f"'{value}' exceeds maximum length of {max_len}")
        return value

    return convert


def to_uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else _no_uuid(value)
    except ValueError:
        return _no_uuid(value)


def _no_uuid(value: Any) -> str:
    raise Reason(f"'{value}' is not a valid UUID")


def to_ip(value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise Reason(f"'{value}' is not a valid IP address") from None


def to_ip_or_none(value: Any) -> str | None:
    return None if value is None else to_ip(value)


def to_cidr(value: Any) -> str:
    """A network prefix with its host bits zero (neutron-lib ``validate_subnet``)."""
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Reason(f"'{value}' is not a valid IP subnet") from None
    if str(net) != value and str(net.network_address) != value.split("/")[0]:
        raise Reason(f"'{value}' isn't a recommended CIDR, '{net}' is recommended")
    return str(net)


def to_ip_or_cidr(value: Any) -> str:
    if isinstance(value, str) and "/" in value:
        return to_cidr(value)
    return to_ip(value)


def to_mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value):
        raise Reason(f"'{value}' is not a valid MAC address")
    mac = value.lower().replace("-", ":")
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        raise Reason(f"'{value}' is not a valid unicast MAC address")
    return mac


def list_of(item: Convert, max_len: int | None = None, *, unique: bool = False) -> Convert:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise Reason(f"'{value}' is not a list")
        out = [item(v) for v in value]
        if unique and len({repr(v) for v in out}) != len(out):
            raise Reason(f"Duplicate items in the list: '{value}'")
        if max_len is not None and len(out) > max_len:
            raise Reason(f"'{value}' has more than {max_len} items")
        return out

    return convert


def dict_of(keys: Mapping[str, Convert], required: tuple[str, ...] = ()) -> Convert:
    def convert(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Reason(f"'{value}' is not a dictionary")
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise Reason(f"Unexpected keys supplied: {', '.join(unknown)}")
        missing = [k for k in required if k not in value]
        if missing:
            raise Reason(f"Validation of dictionary's keys failed. Expected keys: {missing}")
        return {k: keys[k](v) for k, v in value.items()}

    return convert


def any_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Reason(f"'{value}' is not a dictionary")
    return value


def one_of(*allowed: Any) -> Convert:
    def convert(value: Any) -> Any:
        if value not in allowed:
            raise Reason(f"'{value}' is not in {list(allowed)}")
        return value

    return convert


def to_int(lo: int, hi: int) -> Convert:
    def convert(value: Any) -> int:
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or str(number) != str(value).strip():
            raise Reason(f"'{value}' is not an integer")
        if not lo <= number <= hi:
            raise Reason(f"'{value}' is not in range {lo} through {hi}")
        return number

    return convert


def optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


TAGS = Attr(post=False, put=False, default=[])

# the standard attributes every resource has (neutron-lib ``standard_attr``)
STANDARD: dict[str, Attr] = {
    "description": Attr(default="", convert=string()),
    "tags": TAGS,
    "created_at": Attr(post=False, put=False),
    "updated_at": Attr(post=False, put=False),
    "revision_number": Attr(post=False, put=False),
}

OWNED: dict[str, Attr] = {
    "id": Attr(put=False, default=MISSING, convert=to_uuid),
    "name": Attr(default="", convert=string()),
    "tenant_id": Attr(put=False, convert=string()),
    "project_id": Attr(put=False, convert=string()),
}


def parse(resource: str, body: Any, attrs: Mapping[str, Attr], *, create: bool) -> dict[str, Any]:
    """The converted attributes of ``{resource: {...}}`` (400 for anything else). On create,
    absent attributes take their default (absent ``id``: none, the caller makes one)."""
    if not isinstance(body, dict) or set(body) != {resource}:
        raise faults.bad_request(f"Unable to find '{resource}' in request body")
    given = body[resource]
    if not isinstance(given, dict):
        raise faults.bad_request(f"Unable to find '{resource}' in request body")
    unknown = sorted(set(given) - set(attrs))
    if unknown:
        raise faults.bad_request(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    out = {name: _given(name, attrs[name], value, create=create) for name, value in given.items()}
    if create:
        for name, attr in attrs.items():
            if name in out or not attr.post or name == "id":
                continue
            if attr.default is MISSING:
                raise faults.bad_request(
                    f"Failed to parse request. Required attribute '{name}' not specified"
                )
            out[name] = _copy(attr.default)
    return out


def _given(name: str, attr: Attr, value: Any, *, create: bool) -> Any:
    if create and not attr.post:
        raise faults.bad_request(f"Attribute '{name}' not allowed in POST")
    if not create and not attr.put:
        raise faults.bad_request(f"Cannot update read-only attribute {name}")
    return _convert(name, attr, value)


def _convert(name: str, attr: Attr, value: Any) -> Any:
    if attr.convert is None:
        return value
    try:
        return attr.convert(value)
    except Reason as exc:
        raise faults.bad_request(f"Invalid input for {name}. Reason: {exc}.") from None


def _copy(value: Any) -> Any:
    if isinstance(value, list | dict):
        return type(value)(value)
    return value


def check_project(given: dict[str, Any], caller: Any) -> str:
    """The project of a new object: ``project_id``/``tenant_id`` of the body (equal if both;
    another project than the caller's only for an admin), else the caller's (neutron
    ``_populate_tenant_id``)."""
    values = {given.pop(k) for k in ("project_id", "tenant_id") if given.get(k) is not None}
    if len(values) > 1:
        raise faults.bad_request("'project_id' and 'tenant_id' do not match")
    project = caller.project_id
    chosen = values.pop() if values else project
    if not caller.is_admin and chosen != project:
        raise faults.bad_request(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project in"
            " request requires admin privileges"
        )
    if not chosen:
        raise faults.bad_request(
            "Running without keystone AuthN requires that tenant_id is specified"
        )
    return str(chosen)


__all__ = [
    "MISSING",
    "OWNED",
    "STANDARD",
    "Attr",
    "Reason",
    "any_dict",
    "check_project",
    "dict_of",
    "list_of",
    "one_of",
    "optional",
    "parse",
    "string",
    "to_bool",
    "to_cidr",
    "to_int",
    "to_ip",
    "to_ip_or_cidr",
    "to_ip_or_none",
    "to_mac",
    "to_uuid",
]
