"""SNAT port blocks leased through the NSDB (MidoNet's model): a host translates to a router's
NAT address using ports only from blocks it leased, so no two hosts ever pick the same port and
no host asks anyone per connection.

One internal document per (router, NAT address), :data:`~netloom.api.tx.SNAT_BLOCKS`
``<router>:<address>`` = ``{"blocks": {"<k>": host}}``; block ``k`` is ports
``SNAT_PORT_MIN + k * SNAT_BLOCK_SIZE`` onwards. A lease is one compare-and-set of that
document, so two hosts racing for a block cannot both win on any backend; a dead host's blocks
are released (:func:`release`).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from netloom.api.service import ObjectService
from netloom.api.tx import SNAT_BLOCKS, Tx, check_id
from netloom.errors import Conflict, InvalidInput, NotFound

SNAT_PORT_MIN = 1024  # below are the well-known ports (RFC 6335 §6): never a SNAT source
SNAT_BLOCK_SIZE = 64  # MidoNet's block size
SNAT_BLOCKS_PER_ADDRESS = (65536 - SNAT_PORT_MIN) // SNAT_BLOCK_SIZE

__all__ = ["SNAT_BLOCK_SIZE", "SNAT_PORT_MIN", "block_ports", "lease", "release"]


def block_ports(k: int) -> tuple[int, int]:
    """The first and last port of block ``k``."""
    start = SNAT_PORT_MIN + k * SNAT_BLOCK_SIZE
    return start, start + SNAT_BLOCK_SIZE - 1


def lease(service: ObjectService, host_id: str, device_id: str, ip: str) -> tuple[int, int]:
    """Lease the lowest free block of (router ``device_id``, address ``ip``) to ``host_id``."""
    try:
        check_id("router", device_id)
        address = str(IPv4Address(ip))
    except (NotFound, ValueError):
        raise InvalidInput(
            f"no router {device_id!r} or no address {ip!r}", field="device"
        ) from None
    if service.store.get("router", device_id) is None:
        raise InvalidInput(f"device: no router {device_id}", field="device")
    key = f"{device_id}:{address}"

    def plan(tx: Tx) -> tuple[int, int]:
        doc = tx.get(SNAT_BLOCKS, key) or {"blocks": {}}
        taken = doc["blocks"]
        for k in range(SNAT_BLOCKS_PER_ADDRESS):
            if str(k) not in taken:
                taken[str(k)] = host_id
                tx.put(SNAT_BLOCKS, key, doc)
                return block_ports(k)
        raise Conflict(f"every SNAT port block of {address} on router {device_id} is leased")

    return service.run(plan)


def release(service: ObjectService, host_ids: set[str]) -> int:
    """Release every block the hosts hold; the number released."""
    released = 0
    for item in service.store.list(SNAT_BLOCKS):
        if not host_ids & set(item.data["blocks"].values()):
            continue

        def plan(tx: Tx, key: str = item.id) -> int:
            doc = tx.get(SNAT_BLOCKS, key)
            if doc is None:
                return 0
            keep = {k: h for k, h in doc["blocks"].items() if h not in host_ids}
            if keep:
                tx.put(SNAT_BLOCKS, key, {"blocks": keep})
            else:
                tx.delete(SNAT_BLOCKS, key)
            return len(doc["blocks"]) - len(keep)

        released += service.run(plan)
    return released
