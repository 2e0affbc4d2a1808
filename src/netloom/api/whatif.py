"""The what-if trace: the production simulator run against the topology as the cluster holds it.

``POST /api/v1/trace`` reads the records through the :class:`~netloom.api.service.ObjectService`
into a :class:`~netloom.sim.MemoryTopology` and runs :func:`netloom.sim.run_trace`; the answer is
the one of ``netloom trace --json`` (the CLI and the demo ask the server, nothing downloads the
topology).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from netloom.api.service import ObjectService
from netloom.model.kinds import KINDS
from netloom.model.records import Record
from netloom.model.types import Id
from netloom.sim import result_to_json, run_trace
from netloom.sim.topology import MemoryTopology


class TraceRequest(BaseModel):
    """A probe packet sent by the VM behind a bridge port (nothing is sent for real)."""

    model_config = ConfigDict(extra="forbid")
    from_port: Id = Field(description="the VM's bridge port (id)")
    dst_ip: IPv4Address = Field(description="destination IPv4 address")
    src_ip: IPv4Address | None = Field(
        None, description="source IPv4 address (default: the port's first fixed IP)"
    )
    proto: Literal["icmp", "tcp", "udp"] = "icmp"
    sport: StrictInt = Field(40000, ge=0, le=65535, description="source port (ICMP: echo id)")
    dport: StrictInt = Field(80, ge=0, le=65535, description="destination port (TCP, UDP)")
    explain: StrictBool = Field(
        False, description="also say why each earlier rule of a chain did not match"
    )


def _records(kind: str, docs: Iterable[dict[str, Any]]) -> list[Record]:
    k = KINDS[kind]
    return [k.record.model_validate({f: v for f, v in d.items() if f != "version"}) for d in docs]


def topology_of(service: ObjectService) -> MemoryTopology:
    """Every record of every kind, as the service reads it."""
    records: list[Record] = []
    for kind in KINDS:
        records += _records(kind, (doc for doc, _ in service.list(kind)))
    return MemoryTopology(records)


def trace(service: ObjectService, req: TraceRequest) -> dict[str, Any]:
    """The answer of ``netloom trace --json`` for ``req``: the simulation's result and what the
    trace assumed."""
    result, assumed = run_trace(
        topology_of(service),
        req.from_port,
        str(req.dst_ip),
        req.proto,
        req.sport,
        req.dport,
        explain=req.explain,
        src_ip=None if req.src_ip is None else str(req.src_ip),
    )
    return {**result_to_json(result), "assumed": assumed}


__all__ = ["TraceRequest", "topology_of", "trace"]
