"""The live topology, read over the REST API, for an offline what-if trace.

``netloom trace`` and the demo load every record through :class:`~netloom.api.client.ApiClient`
into a :class:`~netloom.sim.MemoryTopology`, then simulate with :func:`netloom.sim.run_trace`.
"""

from __future__ import annotations

from netloom.api.client import ApiClient
from netloom.model.kinds import KINDS
from netloom.model.records import Record
from netloom.sim.topology import MemoryTopology


def load_topology(client: ApiClient) -> MemoryTopology:
    """Every record of every kind, validated as the agent's cache would."""
    records: list[Record] = []
    for kind in KINDS.values():
        for doc in client.list(kind.collection):
            data = {k: v for k, v in doc.items() if k != "version"}
            records.append(kind.record.model_validate(data))
    return MemoryTopology(records)


__all__ = ["load_topology"]
