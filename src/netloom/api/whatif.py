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
from netloom.errors import NotFound
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
    body = result_to_json(result)
    return {**body, "assumed": assumed, "egress": egress(service, body)}


def egress(service: ObjectService, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The routes the trace took out of an uplink (a bound router port), in trace order, and
    why: the route, its next hop, the uplink and its gateway host, and for a learned route
    the BGP peer it came from (address, AS)."""
    routers = [s["id"] for s in body["trace"] if s["kind"] == "router"]
    out: list[dict[str, Any]] = []
    for tag in body["tags"]:
        route = _get(service, "route", tag)
        if route is None or route["router_id"] not in routers or not route["next_hop_port_id"]:
            continue
        port = _get(service, "port", route["next_hop_port_id"])
        if port is None or not port.get("host_id"):
            continue
        host = _get(service, "host", port["host_id"]) or {}
        peer = _get(service, "bgp_peer", route["learned_from"]) if route["learned_from"] else None
        out.append(
            {
                "router_id": route["router_id"],
                "route_id": route["id"],
                "dst": route["dst"],
                "next_hop_gateway": route["next_hop_gateway"],
                "uplink_port_id": port["id"],
                "uplink_name": port["name"],
                "host_id": port["host_id"],
                "host_name": host.get("name", ""),
                "learned_from": route["learned_from"],
                "peer_address": peer["address"] if peer else None,
                "peer_asn": peer["asn"] if peer else None,
            }
        )
    out.sort(key=lambda e: routers.index(e["router_id"]))
    return out


def _get(service: ObjectService, kind: str, id: str) -> dict[str, Any] | None:
    try:
        return service.get(kind, id)[0]
    except NotFound:
        return None


__all__ = ["TraceRequest", "egress", "topology_of", "trace"]
