"""Flow installation and removal: megaflows into the datapath and the tagged flow table."""

from __future__ import annotations

from collections.abc import Iterable

from netloom.agent.flowtable import FlowTable
from netloom.agent.logs import kv, log
from netloom.agent.metrics import AgentMetrics
from netloom.agent.simlog import SimLog
from netloom.datapath.base import Datapath, Upcall
from netloom.flows.model import Flow
from netloom.model import simlog as k


class FlowInstaller:
    """Keeps the datapath's flows and the :class:`FlowTable` (flows with their tags) in step."""

    def __init__(
        self,
        dp: Datapath,
        flows: FlowTable,
        stats: dict[str, int],
        metrics: AgentMetrics,
        simlog: SimLog | None = None,
    ) -> None:
        self._dp = dp
        self._log = simlog if simlog is not None else SimLog(enabled=False)
        self._flows = flows
        self._stats = stats
        self._metrics = metrics
        self._next_expiry = float("-inf")

    def next_cookie(self) -> int:
        return self._flows.next_cookie()

    def install(
        self, flow: Flow, tags: frozenset[object], up: Upcall, port_id: str, now: float
    ) -> None:
        """Install the megaflow with its tags, then send the parked packet through it."""
        self._dp.install([flow])
        self._flows.add(flow, tags, port_id, now)
        self._stats["installed"] += 1
        self._metrics.flows_installed.inc()
        self._metrics.flows.set(len(self._flows))
        self._log.event(now, k.INSTALLED, port_id, flow=flow)  # its tags: the sim entry
        self._dp.reinject(up)

    def invalidate(self, tags: Iterable[object], why: str, now: float = 0.0) -> int:
        """Remove the flows tagged with any of ``tags`` (``why``: the change); how many went."""
        doomed = self._flows.invalidate(tags)
        if not doomed:
            return 0
        self._dp.delete([(d.flow.key, d.flow.mask) for d in doomed])
        if self._log.enabled:
            for d in doomed:
                self._log.event(now, k.INVALIDATED, d.in_port_id, flow=d.flow, detail=why)
        self._stats["invalidated"] += len(doomed)
        self._metrics.flows_invalidated.inc(len(doomed))
        self._metrics.flows.set(len(self._flows))
        log.info("invalidated %s", kv(flows=len(doomed), why=why))
        return len(doomed)

    def expire(self, now: float, every_s: float = 0.0) -> None:
        """Forget the flows the datapath expired (idle) by ``now``. The datapath's expiry
        reads every flow (the kernel's: one batched dump): at most once per ``every_s``."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + every_s
        gone = self._dp.expire(now)
        if gone:
            old = self._flows.forget(gone)
            n = len(old)
            for d in old:
                self._log.event(now, k.EXPIRED, d.in_port_id, flow=d.flow)
            self._stats["expired"] += n
            self._metrics.flows_expired.inc(n)
            self._metrics.flows.set(len(self._flows))


__all__ = ["FlowInstaller"]
