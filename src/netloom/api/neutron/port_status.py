"""A Neutron port's ``status``, from what its host's agent reports (as Neutron's L2 agents do):
``ACTIVE`` while the port is bound to a host whose agent reported its interface plugged into
the datapath (``tap`` + 11 characters of the id, made by Nova/os-vif), ``DOWN`` otherwise
(unbound, bound elsewhere, interface gone, agent dead, or ``admin_state_up`` false).

An agent reports per (port, host): a ``WIRED`` document exists while the interface is plugged
on that host. The status follows in the same commit, and again on every port update (a port
rebound to a host where it is already plugged is at once ``ACTIVE``); a late report from a host
the port has left changes only that host's document.
"""

from __future__ import annotations

from netloom.api.neutron import docs
from netloom.api.service import ObjectService
from netloom.api.tx import WIRED, Doc, Tx, check_id

RESOURCE = "port"

__all__ = ["drop_host", "forget", "report", "status"]


def _key(port_id: str, host_id: str) -> str:
    return f"{port_id}:{host_id}"


def status(tx: Tx, doc: Doc, host_id: str | None) -> str:
    """The status of Neutron port ``doc`` whose native port is bound to ``host_id``."""
    if not host_id or not doc.get("admin_state_up", True):
        return "DOWN"
    return "ACTIVE" if tx.get(WIRED, _key(doc["id"], host_id)) is not None else "DOWN"


def _refresh(tx: Tx, port_id: str) -> None:
    """Re-decide the Neutron port's status (a change bumps its revision, as in Neutron)."""
    doc = tx.get(docs.kind(RESOURCE), port_id)
    native = tx.get("port", port_id)
    if doc is None or native is None:
        return
    new = status(tx, doc, native.get("host_id"))
    if new != doc["status"]:
        docs.put(tx, RESOURCE, docs.stamp({**doc, "status": new}, doc))


def report(service: ObjectService, host_id: str, port_id: str, *, up: bool) -> None:
    """The agent on ``host_id`` plugged (``up``) or unplugged port ``port_id``'s interface.
    Plugged is kept only while the port is bound to that host."""
    check_id("host", host_id)
    check_id("port", port_id)
    key = _key(port_id, host_id)

    def plan(tx: Tx) -> None:
        native = tx.get("port", port_id)
        bound_here = native is not None and native.get("host_id") == host_id
        have = tx.get(WIRED, key)
        if up and bound_here and have is None:
            tx.put(WIRED, key, {"port_id": port_id, "host_id": host_id})
        elif not (up and bound_here) and have is not None:
            tx.delete(WIRED, key)
        _refresh(tx, port_id)

    docs.serial(service.run, plan)


def forget(tx: Tx, port_id: str, host_id: str | None) -> None:
    """Stage the removal of the port's report from ``host_id`` (the port is deleted)."""
    if host_id and tx.get(WIRED, _key(port_id, host_id)) is not None:
        tx.delete(WIRED, _key(port_id, host_id))


def drop_host(service: ObjectService, host_ids: set[str]) -> None:
    """Dead hosts' agents report nothing more: their ports are ``DOWN``."""
    for item in service.store.list(WIRED):
        if item.data.get("host_id") not in host_ids:
            continue

        def plan(tx: Tx, id: str = item.id, port_id: str = item.data["port_id"]) -> None:
            if tx.get(WIRED, id) is not None:
                tx.delete(WIRED, id)
                _refresh(tx, port_id)

        docs.serial(service.run, plan)
