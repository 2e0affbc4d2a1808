"""Where a gateway's findings go: learned routes per uplink port and each session's state.

The agent passes an implementation (it forwards to the topology client, which writes them to
the NSDB); tests pass a recorder. Both calls carry the full current value, never a delta: a
route set replaces the port's previous one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from netloom.model.bgp import LearnedRoute, PeerStatus


class BgpReporter(Protocol):
    def learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        """Every route learned on uplink ``port_id`` now (empty: none)."""
        ...

    def peer_status(self, status: PeerStatus) -> None:
        """A session's state changed (or its route count)."""
        ...


__all__ = ["BgpReporter"]
