"""An in-memory stand-in for the REST API with the methods of :class:`netloom.plan.PlanClient`."""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from netloom.errors import ApiError, InvalidInput, NotFound
from netloom.model import integrity
from netloom.model.kinds import BY_COLLECTION

Doc = dict[str, Any]


class FakeClient:
    """Objects per collection; ``fail_on`` makes creating in that collection fail (once the
    collection has ``fail_after`` objects), the way the API refuses a bad record;
    ``fail_bind`` refuses every binding; the first ``conflicts`` creations answer
    ``version_conflict`` (a lost compare-and-set race: nothing stored)."""

    def __init__(
        self,
        fail_on: str | None = None,
        fail_after: int = 0,
        *,
        fail_bind: bool = False,
        conflicts: int = 0,
    ) -> None:
        self.conflicts = conflicts
        self.objects: dict[str, dict[str, Doc]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_on = fail_on
        self.fail_after = fail_after
        self.fail_bind = fail_bind

    def _collection(self, collection: str) -> dict[str, Doc]:
        return self.objects.setdefault(collection, {})

    def get(self, collection: str, id: str) -> Doc:
        doc = self._collection(collection).get(id)
        if doc is None:
            raise NotFound(f"no {collection} {id}")
        return dict(doc)

    def list(self, collection: str, filters: Mapping[str, str] | None = None) -> builtins.list[Doc]:
        wanted = dict(filters or {})
        return [
            dict(d)
            for d in self._collection(collection).values()
            if all(d.get(k) == v for k, v in wanted.items())
        ]

    def create(self, collection: str, data: Doc) -> Doc:
        self.calls.append(("create", collection))
        if self.conflicts:
            self.conflicts -= 1
            raise ApiError("version_conflict", "lost a race", status=409)
        if collection == self.fail_on and len(self._collection(collection)) >= self.fail_after:
            raise InvalidInput("refused by the fake API", field="cidr")
        doc = {"id": str(uuid.uuid4()), **data}
        if collection == "rules" and doc.get("position") is None:  # appended, as the API does
            chain = [
                r for r in self._collection("rules").values() if r["chain_id"] == doc["chain_id"]
            ]
            doc["position"] = len(chain)
        with contextlib.suppress(InvalidInput):  # the full record, defaults filled in, as the
            doc = integrity.validate(BY_COLLECTION[collection].name, doc)  # API answers
        self._collection(collection)[doc["id"]] = doc
        return dict(doc)

    def update(
        self, collection: str, id: str, changes: Doc, *, if_version: int | None = None
    ) -> Doc:
        self.calls.append(("update", collection, id))
        doc = self._collection(collection)[id]
        for key, value in changes.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return dict(doc)

    def delete(self, collection: str, id: str, *, cascade: bool = False) -> Any:
        self.calls.append(("delete", collection, id))
        if self._collection(collection).pop(id, None) is None:
            raise NotFound(f"no {collection} {id}")
        return None

    def link_ports(self, port_id: str, peer_id: str) -> Doc:
        self.calls.append(("link", port_id, peer_id))
        ports = self._collection("ports")
        ports[port_id]["peer_id"] = peer_id
        ports[peer_id]["peer_id"] = port_id
        return dict(ports[port_id])

    def unlink_port(self, port_id: str) -> Any:
        self.calls.append(("unlink", port_id))
        ports = self._collection("ports")
        peer = ports[port_id].pop("peer_id", None)
        if peer in ports:
            ports[peer].pop("peer_id", None)
        return None

    def bind_port(self, port_id: str, host_id: str, interface_name: str) -> Doc:
        self.calls.append(("bind", port_id, host_id))
        if self.fail_bind:
            raise NotFound(f"no interface {interface_name}", field="interface_name")
        port = self._collection("ports")[port_id]
        port.update(host_id=host_id, interface_name=interface_name)
        return dict(port)

    def count(self) -> int:
        return sum(len(c) for c in self.objects.values())
