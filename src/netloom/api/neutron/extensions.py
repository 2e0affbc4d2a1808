"""The extensions this Neutron API really implements (``GET /v2.0/extensions``): a client
that sees an alias here may rely on it; nothing is listed that is not done."""

from __future__ import annotations

from typing import Any

UPDATED = "2026-01-01T00:00:00-00:00"

_EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("project-id", "project_id field enabled", "Extension that indicates project_id is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions"),
    ("standard-attr-timestamp", "Resource timestamps", "created_at and updated_at fields"),
    ("standard-attr-revisions", "Resource revision numbers", "revision_number field"),
    ("standard-attr-tag", "Tag support for resources", "Enables to set tag on resources"),
    (
        "revision-if-match",
        "If-Match constraints based on revision_number",
        "Writes constrained by If-Match: revision_number=N",
    ),
    ("pagination", "Pagination support", "limit, marker, page_reverse and links"),
    ("sorting", "Sorting support", "sort_key and sort_dir"),
    ("filter-validation", "Filter parameters validation", "Unknown filters are refused"),
    ("external-net", "Neutron external network", "router:external attribute"),
    ("net-mtu", "Network MTU", "The MTU of a network (VXLAN: 1450)"),
    ("binding", "Port Binding", "binding:host_id binds the port on that host to tap<id[:11]>"),
    ("port-security", "Port Security", "port_security_enabled on networks and ports"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Extra addresses a port may send from"),
    (
        "netloom-ipv4-dataplane",
        "IPv4 dataplane",
        "IPv6 subnets, addresses and rules are stored and answered but not forwarded:"
        " the dataplane forwards IPv4 only",
    ),
)


def listing() -> list[dict[str, Any]]:
    return [
        {"alias": a, "name": n, "description": d, "updated": UPDATED, "links": []}
        for a, n, d in _EXTENSIONS
    ]


__all__ = ["listing"]
