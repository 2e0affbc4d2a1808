"""What a topology client measures about its waits, in bounded memory for a long-lived agent.

Subscription latency (Sub sent -> Snap applied) is the round trip every lazily loaded record
costs a first packet: count, sum, max and a log2 histogram (bucket k holds waits under 2**k ms;
the last one the rest). Reconnection time runs from a lost connection to the next Welcome,
whichever endpoint answers it (the latest 256)."""

from __future__ import annotations

import time
from collections import deque


class ClientTimings:
    """Subscription round trips and reconnections of one topology client."""

    def __init__(self) -> None:
        self.snap_waits = [0] * 16
        self.snap_wait_sum_s = 0.0
        self.snap_wait_max_s = 0.0
        self.reconnect_waits: deque[float] = deque(maxlen=256)
        self._sent_at: dict[int, float] = {}
        self._lost_at: float | None = None

    def sent(self, req: int) -> None:
        self._sent_at[req] = time.monotonic()

    def forget(self, req: int | None = None) -> None:
        """Stop timing request ``req`` (every request when None)."""
        if req is None:
            self._sent_at.clear()
        else:
            self._sent_at.pop(req, None)

    def answered(self, req: int) -> None:
        sent = self._sent_at.pop(req, None)
        if sent is None:
            return
        wait = time.monotonic() - sent
        self.snap_wait_sum_s += wait
        self.snap_wait_max_s = max(self.snap_wait_max_s, wait)
        k = 0
        while k < len(self.snap_waits) - 1 and wait * 1000 >= 2**k:
            k += 1
        self.snap_waits[k] += 1

    def lost(self) -> None:
        self._lost_at = time.monotonic()

    def welcomed(self) -> None:
        if self._lost_at is not None:
            self.reconnect_waits.append(time.monotonic() - self._lost_at)
            self._lost_at = None


__all__ = ["ClientTimings"]
