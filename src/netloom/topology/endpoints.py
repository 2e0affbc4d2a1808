"""Topology endpoints: the cluster processes an agent may talk to, tried in turn."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from netloom.errors import InvalidInput

Address = tuple[str, int]


def endpoints(address: Address | Sequence[Address]) -> tuple[Address, ...]:
    """One endpoint or a list of them, as a non-empty tuple."""
    if not address:
        raise InvalidInput("no topology endpoint given", field="topology")
    host, port = address[0], address[-1]
    if len(address) == 2 and isinstance(host, str) and isinstance(port, int):
        return ((host, port),)
    return tuple(a for a in address if not isinstance(a, str | int))


def first_endpoint(host_id: str, count: int) -> int:
    """Where a host starts in a list of ``count`` endpoints: spread by its id, so that a rack
    of agents given the same list does not crowd the first cluster process."""
    return zlib.crc32(host_id.encode()) % count


__all__ = ["Address", "endpoints", "first_endpoint"]
