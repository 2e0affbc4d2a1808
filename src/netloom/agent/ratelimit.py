"""Per-port upcall admission: token buckets and fair ordering.

Why: every flow miss costs a Python simulation (~0.1-1 ms). A VM scanning ports makes a new
flow per packet; unchecked, its upcalls fill the agent's time and the other VMs on the host
wait for theirs. Each datapath port gets a token bucket (``rate`` upcalls/s, ``burst`` deep):
misses beyond it are dropped (the sender retransmits, the kernel keeps forwarding installed
flows). Within one polled batch the upcalls are also taken round-robin across ports, so a
burst from one port does not delay the first packet of another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from netloom.ratelimit import PortLimiter, TokenBucket

T = TypeVar("T")


def round_robin(items: Iterable[T], key: Callable[[T], int]) -> list[T]:
    """Reorder ``items`` so ports take turns (each port's own order is kept)."""
    queues: dict[int, list[T]] = {}
    for it in items:
        queues.setdefault(key(it), []).append(it)
    out: list[T] = []
    lanes = list(queues.values())
    i = 0
    while lanes:
        live = []
        for lane in lanes:
            if i < len(lane):
                out.append(lane[i])
                live.append(lane)
        lanes = live
        i += 1
    return out


__all__ = ["PortLimiter", "TokenBucket", "round_robin"]
