"""The cluster's flow history: opened from the options, kept (buffer written, retention
applied) by a periodic task off the event loop, closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

from netloom.cluster.config import ClusterOptions
from netloom.insights.history import FlowHistory

log = logging.getLogger("netloom.cluster")

FLUSH_EVERY_S = 1.0  # a record is queryable at most this long after it arrived
EXPIRE_EVERY_S = 60.0


def open_history(options: ClusterOptions) -> FlowHistory:
    history = FlowHistory(
        options.flow_history, max_age_s=options.flow_max_age, max_flows=options.flow_max_count
    )
    log.info(
        "flow history open",
        extra={"event": "flows.open", "path": options.flow_history, "flows": history.count()},
    )
    return history


async def keep(history: FlowHistory) -> None:
    """Until cancelled: write the buffer every second, apply retention every minute."""
    loop = asyncio.get_running_loop()
    last_expiry = time.monotonic()
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        await loop.run_in_executor(None, history.flush)
        if time.monotonic() - last_expiry >= EXPIRE_EVERY_S:
            last_expiry = time.monotonic()
            dropped = await loop.run_in_executor(None, history.expire, time.time())
            if dropped:
                log.info("flows expired", extra={"event": "flows.expired", "flows": dropped})


__all__ = ["EXPIRE_EVERY_S", "FLUSH_EVERY_S", "keep", "open_history"]
