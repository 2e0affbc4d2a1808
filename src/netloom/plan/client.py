"""What the plan code needs of an API client.

:class:`netloom.api.client.ApiClient` satisfies :class:`PlanClient` structurally; tests pass an
in-memory fake.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Protocol

Doc = dict[str, Any]


class PlanClient(Protocol):
    """The object and port operations of the REST API that resolving and applying use."""

    def get(self, collection: str, id: str) -> Doc: ...

    def list(
        self, collection: str, filters: Mapping[str, str] | None = None
    ) -> builtins.list[Doc]: ...

    def create(self, collection: str, data: Doc) -> Doc: ...

    def update(
        self, collection: str, id: str, changes: Doc, *, if_version: int | None = None
    ) -> Doc: ...

    def delete(self, collection: str, id: str, *, cascade: bool = False) -> Any: ...

    def link_ports(self, port_id: str, peer_id: str) -> Doc: ...

    def unlink_port(self, port_id: str) -> Any: ...

    def bind_port(self, port_id: str, host_id: str, interface_name: str) -> Doc: ...


__all__ = ["Doc", "PlanClient"]
