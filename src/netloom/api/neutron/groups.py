"""The security groups of a port: the ones it names (each must exist and be visible), or its
project's default group; and the native port groups they are."""

from __future__ import annotations

from netloom.api.neutron import docs, faults
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx

RESOURCE = "security_group"


def for_port(service: ObjectService, tx: Tx, port: Doc) -> list[str]:
    """The port's security groups (checked to exist)."""
    del service
    wanted = port.get("security_groups")
    if wanted is None:
        return []
    for gid in wanted:
        if tx.get(docs.kind(RESOURCE), gid) is None:
            raise faults.not_found(RESOURCE, gid)
    return list(wanted)


def port_groups(tx: Tx, group_ids: list[str]) -> list[str]:
    """The native port groups of security groups (same ids)."""
    return [gid for gid in group_ids if tx.get("port_group", gid) is not None]


__all__ = ["RESOURCE", "for_port", "port_groups"]
