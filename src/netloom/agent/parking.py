"""Packets parked on a NOT_YET simulation, under what they wait for.

A packet waits for a topology interest being loaded or for an ARP entry; when that arrives
the core simulates it again. Parking is bounded per key and in total, and parked packets time
out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from netloom.agent.metrics import AgentMetrics
from netloom.agent.simlog import SimLog
from netloom.agent.snat import snat_key
from netloom.agent.view import Interest
from netloom.datapath.base import Upcall
from netloom.model import simlog as k
from netloom.packet.util import ip_to_int
from netloom.sim import Result


@dataclass(slots=True)
class Parked:
    """A packet to simulate from virtual port ``port_id``: an upcall, or a generated packet
    entering the peer of an interior port (``upcall`` None)."""

    upcall: Upcall | None
    packet: bytes
    port_id: str
    deadline: float
    hops: int = 0
    waits: int = 0  # times it was released from the park (each one gave a fresh deadline)


def wait_key(missed: set[Interest], r: Result) -> object | None:
    """What the packet waits for: the first topology interest its simulation missed (it
    is being loaded), else the ARP entry it needs, else a SNAT port block (the agent leases
    one). None: nothing will ever complete it."""
    if missed:
        return min(missed, key=str)
    for aw in r.awaiting:
        if len(aw) == 3 and aw[0] == "arp":
            return ("arp", aw[1], ip_to_int(aw[2]))
    for aw in r.awaiting:
        if len(aw) == 3 and aw[0] == "snat-block" and aw[2] != "exhausted":
            return snat_key(str(aw[1]), str(aw[2]))
    return None


class ParkingLot:
    """Parked packets by awaited key, bounded ``per_key`` and ``total``."""

    def __init__(
        self,
        per_key: int,
        total: int,
        stats: dict[str, int],
        metrics: AgentMetrics,
        simlog: SimLog | None = None,
    ) -> None:
        self._log = simlog if simlog is not None else SimLog(enabled=False)
        self._per_key = per_key
        self._total = total
        self._stats = stats
        self._metrics = metrics
        self._parked: dict[object, deque[Parked]] = {}
        self.count = 0

    def park(self, p: Parked, key: object | None, now: float) -> None:
        if key is None or now >= p.deadline:
            self.drop("missing" if key is None else "timeout", p, now)
            return
        q = self._parked.setdefault(key, deque())
        if len(q) >= self._per_key or self.count >= self._total:
            self.drop("full", p, now)
            return
        q.append(p)
        self._log.event(now, k.PARKED, p.port_id, detail=str(key))
        self.count += 1
        self._stats["parked"] += 1
        self._metrics.parked.set(self.count)

    def drop(self, why: str, p: Parked | None = None, now: float = 0.0) -> None:
        """Drop a packet that was (to be) parked: ``why`` is missing, timeout or full."""
        self._log.event(now, k.PARK_DROPPED, p.port_id if p is not None else None, detail=why)
        self._stats["park_dropped"] += 1
        self._stats["dropped"] += 1
        self._metrics.park_dropped.labels(why).inc()

    def take(self, key: object) -> list[Parked]:
        """Unpark every packet waiting for ``key``."""
        q = self._parked.pop(key, None)
        if not q:
            return []
        self.count -= len(q)
        self._metrics.parked.set(self.count)
        return list(q)

    def waited(self) -> set[object]:
        """The keys packets wait for now."""
        return set(self._parked)

    def expire(self, now: float) -> None:
        for key in list(self._parked):
            q = self._parked[key]
            keep = deque(p for p in q if p.deadline > now)
            for p in q:
                if p.deadline <= now:
                    self.drop("timeout", p, now)
            self.count -= len(q) - len(keep)
            if keep:
                self._parked[key] = keep
            else:
                del self._parked[key]
        self._metrics.parked.set(self.count)


__all__ = ["Parked", "ParkingLot", "wait_key"]
