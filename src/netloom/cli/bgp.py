"""``netloom bgp-peer show``: the session's state in words and the routes learned from it."""

from __future__ import annotations

import time
from typing import Any

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import Settings, show
from netloom.model.kinds import KINDS

Doc = dict[str, Any]


def state_text(status: Doc | None) -> str:
    """``established since 2026-12-03 15:40:00Z, 12 routes, on port P (host H), BFD up``."""
    if not status:
        return "down"
    parts = [str(status.get("state") or "down")]
    since = status.get("since")
    if since:
        parts[0] += " since " + time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(since)))
    parts.append(f"{status.get('routes') or 0} routes")
    if status.get("port_id"):
        parts.append(f"on port {status['port_id']} (host {status.get('host_id')})")
    if status.get("bfd_up") is not None:
        parts.append("BFD up" if status["bfd_up"] else "BFD down")
    return ", ".join(parts)


def show_peer(doc: Doc, opts: Settings, client: ApiClient) -> None:
    """The peer (``status`` in words; a set password shows as the API's mask), then, for
    people, the routes learned from it."""
    kind = KINDS["bgp_peer"]
    table = opts.view.format == "table" and not opts.view.columns and not opts.json
    if not table:
        show(kind, doc, opts, client)
        return
    show(kind, {**doc, "status": state_text(doc.get("status"))}, opts, client)
    routes = client.list("routes", {"learned_from": str(doc["id"])})
    rows = [
        (r["dst"], r.get("next_hop_gateway") or "", str(r.get("next_hop_port_id") or ""))
        for r in sorted(routes, key=lambda r: str(r["dst"]))
    ]
    output.render_rows(
        f"learned routes ({len(rows)})", ("dst", "next_hop_gateway", "next_hop_port_id"), rows
    )


__all__ = ["show_peer", "state_text"]
