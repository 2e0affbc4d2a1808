"""Fair ordering of upcalls across ports.

Why: every flow miss costs a Python simulation (~0.1-1 ms). A VM scanning ports makes a new
flow per packet; unchecked, its upcalls fill the agent's time and the other VMs on the host
wait for theirs. The budgets are token buckets per port (:mod:`netloom.ratelimit`: one in the
datapath, one in the agent); within one polled batch the upcalls are also taken round-robin
across ports, so a burst from one port does not delay the first packet of another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

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


__all__ = ["round_robin"]
