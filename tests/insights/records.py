"""Flow records for the insights tests."""

from __future__ import annotations

from typing import Any

from netloom.model.flowrecord import FlowRecord

__all__ = ["record"]


def record(n: int, **over: Any) -> FlowRecord:
    """Flow ``n`` from 10.0.0.<n> to 10.0.1.1:80, forwarded, first seen at ``1000 + n``."""
    values: dict[str, Any] = {
        "flow_id": f"h1:{n}:1",
        "host_id": "h1",
        "first_seen": 1000.0 + n,
        "last_seen": 1010.0 + n,
        "proto": 6,
        "src_ip": f"10.0.0.{n % 250 + 1}",
        "dst_ip": "10.0.1.1",
        "src_port": 40000 + n,
        "dst_port": 80,
        "in_port_id": f"port-{n % 250 + 1}",
        "out_port_id": "port-web",
        "egress_host_id": "h2",
        "project_id": "proj-a",
        "devices": ("bridge-a", "router-a", "bridge-b"),
        "rules": ("rule-allow-web",),
        "security_groups": ("sg-web",),
        "nat": (),
        "verdict": "forward",
        "packets": 10,
        "bytes": 1000,
    }
    values.update(over)
    return FlowRecord(**values)
