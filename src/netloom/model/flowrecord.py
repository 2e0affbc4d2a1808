"""One kernel flow as the flow history keeps it (the analytics store's record).

An agent makes one per flow it installed: the 5-tuple and what the simulation decided (from the
simulation's trace), then the kernel's counters, read periodically and at expiry. Records of the
same flow share ``flow_id``; a later record replaces an earlier one (``final`` marks the one
sent at expiry, eviction or invalidation).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A flow's identity, decision and counters."""

    flow_id: str  # unique per kernel flow: "<host id>:<flow number>:<first seen µs>"
    host_id: str  # the host whose kernel holds the flow (the ingress host of the packet)
    first_seen: float  # wall-clock seconds
    last_seen: float  # wall-clock seconds of the last packet the counters show
    proto: int  # IP protocol number
    src_ip: str
    dst_ip: str
    src_port: int  # 0 when the protocol has none
    dst_port: int
    in_port_id: str  # the virtual port the packet entered by
    out_port_id: str | None  # the virtual port it left by; None when dropped
    egress_host_id: str | None  # the host it was tunnelled to; None when local or dropped
    project_id: str | None  # the in-port's project
    devices: tuple[str, ...]  # ids of the devices traversed, in order
    rules: tuple[str, ...]  # ids of the rules whose decision stood (accept / drop / reject / NAT)
    security_groups: tuple[str, ...]  # ids of the security groups those rules belong to
    nat: tuple[str, ...]  # translations applied, e.g. "snat 10.0.0.5:1234 -> 203.0.113.1:40000"
    verdict: str  # "forward" | "drop" | "reject"
    packets: int
    bytes: int
    final: bool = False  # True for the record sent when the flow left the kernel


__all__ = ["FlowRecord"]
