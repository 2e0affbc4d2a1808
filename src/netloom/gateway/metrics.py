"""The gateway's metrics, in the registry the agent serves on /metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.session_up = Gauge(
            "netloom_bgp_session_up", "1 while the BGP session is established", ["peer"], registry=r
        )
        self.routes_learned = Gauge(
            "netloom_bgp_routes_learned", "Prefixes learned from the peer", ["peer"], registry=r
        )
        self.restarts = Counter(
            "netloom_bgp_daemon_restarts", "bird restarts after it died", registry=r
        )

    def forget(self, peer_id: str) -> None:
        """A peer no longer run here: drop its series."""
        for g in (self.session_up, self.routes_learned):
            with contextlib.suppress(KeyError):
                g.remove(peer_id)


__all__ = ["GatewayMetrics"]
