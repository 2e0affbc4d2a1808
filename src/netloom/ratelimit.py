"""Token buckets, one per key: the admission control shared by the datapath (upcalls a port
may send before the agent sees them) and the agent (upcalls it simulates under pressure)."""

from __future__ import annotations

from dataclasses import dataclass


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


__all__ = ["PortLimiter", "TokenBucket"]
