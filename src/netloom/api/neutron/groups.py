"""The security groups of a port: the ones it names (each must exist and be visible), or its
project's default group; none for ports without port security or owned by the network itself
(router interfaces and gateways, floating IPs: Neutron filters none of them)."""

from __future__ import annotations

from netloom.api.neutron import docs, security_groups
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx


def filtered(port: Doc) -> bool:
    """Whether the port gets security group filters at all."""
    return bool(port["port_security_enabled"]) and not port["device_owner"].startswith("network:")


def for_port(service: ObjectService, tx: Tx, port: Doc, caller: docs.Caller) -> list[str]:
    """The port's security groups (checked to exist and be visible to ``caller``)."""
    wanted = port.get("security_groups")
    if wanted is None:
        if not filtered(port):
            return []
        return [security_groups.ensure_default(service, tx, port["tenant_id"])]
    for gid in wanted:
        docs.get(tx, security_groups.RESOURCE, gid, caller)
    return list(wanted)


def port_groups(tx: Tx, group_ids: list[str]) -> list[str]:
    """The native port groups of security groups (same ids)."""
    return [gid for gid in group_ids if tx.get("port_group", gid) is not None]


__all__ = ["filtered", "for_port", "port_groups"]
