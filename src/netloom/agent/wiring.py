"""Which of this host's bound ports have their interface plugged into the datapath, reported
to the cluster on every change (the Neutron API answers a port ``ACTIVE`` from it, as
Neutron's L2 agents report a port up when its tap device appears)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from netloom.model.records import Port
from netloom.sim.uplink import uplink_of

__all__ = ["WiredPorts"]

Peek = Callable[[str, str], object]


class WiredPorts:
    """The bridge ports plugged here as last reported; :meth:`changes` says what to report."""

    def __init__(self) -> None:
        self._up: set[str] = set()

    def changes(self, bound: Mapping[str, int], peek: Peek) -> list[tuple[str, bool]]:
        """``(port id, plugged)`` for every port whose state changed since the last call;
        ``bound``: port id -> datapath port (0: interface missing); ``peek(kind, id)``: the
        agent's view (uplinks and sidecars are no VM's and are not reported)."""
        now = {
            p
            for p, dp_port in bound.items()
            if dp_port and uplink_of(p) is None and _bridge_port(peek("port", p))
        }
        out = [(p, True) for p in sorted(now - self._up)]
        out += [(p, False) for p in sorted(self._up - now)]
        self._up = now
        return out


def _bridge_port(record: object) -> bool:
    return isinstance(record, Port) and record.type == "bridge"
