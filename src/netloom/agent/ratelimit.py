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
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PortLimiter:
    """One :class:`TokenBucket` per port key."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[int, TokenBucket] = {}

    def allow(self, port: int, now: float) -> bool:
        b = self._buckets.get(port)
        if b is None:
            b = self._buckets[port] = TokenBucket(self.rate, self.burst, self.burst, now)
        return b.take(now)

    def forget(self, port: int) -> None:
        self._buckets.pop(port, None)


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
