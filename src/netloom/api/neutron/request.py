"""Reading a Neutron request: its JSON body (Neutron's 400 "Malformed request body")."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from netloom.api.neutron import faults
from netloom.errors import NeutronFault

MAX_BODY = 1 << 20


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise NeutronFault(413, "RequestEntityTooLarge", "Request is too large.")
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise faults.bad_request("Malformed request body") from None


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


__all__ = ["MAX_BODY", "base_url", "read_body"]
