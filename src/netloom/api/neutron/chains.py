"""Chains whose rules the translation rewrites as a whole (a port's filters, a router's NAT
chains): the wanted rules get ids derived from their content and place, so a rewrite deletes
what is no longer wanted and creates what is new, in the same commit, and leaves the rest."""

from __future__ import annotations

import json
import uuid

from netloom.api.neutron import docs
from netloom.api.service import ObjectService
from netloom.api.tx import Doc, Tx, referrers

_NS = uuid.UUID("8f7e6d5c-4b3a-4291-8e0f-1a2b3c4d5e6f")


def numbered(chain_id: str, rules: list[Doc]) -> list[Doc]:
    """``rules`` of chain ``chain_id`` in this order, with positions and content ids."""
    out = []
    for position, rule in enumerate(rules):
        body = {**rule, "chain_id": chain_id, "position": position}
        rid = str(uuid.uuid5(_NS, json.dumps(body, sort_keys=True)))
        out.append({"id": rid, **body})
    return out


def ensure(
    service: ObjectService, tx: Tx, chain_id: str, tenant_id: str, owner: tuple[str, str]
) -> None:
    if tx.get("chain", chain_id) is None:
        service.stage_create(tx, "chain", {"id": chain_id, "tenant_id": tenant_id})
        docs.own(tx, "chain", chain_id, *owner)


def drop(service: ObjectService, tx: Tx, chain_id: str) -> None:
    if tx.get("chain", chain_id) is not None:
        service.stage_delete(tx, "chain", chain_id, cascade=True)
        docs.disown(tx, "chain", chain_id)


def sync_rules(
    service: ObjectService, tx: Tx, chain_id: str, wanted: list[Doc], owner: tuple[str, str]
) -> None:
    """Make the chain's rules ``wanted`` (from :func:`numbered`)."""
    have = set(referrers(tx, "chain", chain_id, "rule", "chain_id"))
    want_ids = {r["id"] for r in wanted}
    for rid in sorted(have - want_ids):
        service.stage_delete(tx, "rule", rid)
        docs.disown(tx, "rule", rid)
    for rule in wanted:
        if rule["id"] not in have:
            service.stage_create(tx, "rule", rule)
            docs.own(tx, "rule", rule["id"], *owner)


__all__ = ["drop", "ensure", "numbered", "sync_rules"]
