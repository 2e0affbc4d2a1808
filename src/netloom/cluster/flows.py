"""Where agents' flow records go in the cluster: the flow history (opened from the options,
kept — buffer written, retention applied — by a periodic task off the event loop, closed at
shutdown) and, with ``--ipfix``, an IPFIX collector."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from netloom.cluster.config import ClusterOptions
from netloom.insights.history import FlowHistory
from netloom.insights.ipfix import IpfixExporter
from netloom.model.flowrecord import FlowRecord

log = logging.getLogger("netloom.cluster")

FLUSH_EVERY_S = 1.0  # a record is queryable at most this long after it arrived
EXPIRE_EVERY_S = 60.0


class FlowSink:
    """The records of every agent: into the history, and to the IPFIX collector if any.
    ``ingest`` runs on the topology server's report worker thread."""

    def __init__(
        self,
        history: FlowHistory,
        exporter: IpfixExporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.exporter = exporter
        self._clock = clock

    @staticmethod
    def open(options: ClusterOptions) -> FlowSink:
        history = open_history(options)
        exporter = None
        if options.ipfix is not None:
            exporter = IpfixExporter(options.ipfix)
            log.info(
                "ipfix export",
                extra={"event": "flows.ipfix", "collector": ":".join(map(str, options.ipfix))},
            )
        return FlowSink(history, exporter)

    def ingest(self, records: Sequence[FlowRecord]) -> None:
        self.history.ingest(records)
        if self.exporter is not None:
            self.exporter.export(records, self._clock())

    def tick(self) -> None:
        """Write the history's buffer; send the IPFIX template if it is due (RFC 7011 §8.4)."""
        self.history.flush()
        if self.exporter is not None:
            self.exporter.export([], self._clock())

    def close(self) -> None:
        self.history.close()
        if self.exporter is not None:
            self.exporter.close()


def open_history(options: ClusterOptions) -> FlowHistory:
    history = FlowHistory(
        options.flow_history, max_age_s=options.flow_max_age, max_flows=options.flow_max_count
    )
    log.info(
        "flow history open",
        extra={"event": "flows.open", "path": options.flow_history, "flows": history.count()},
    )
    return history


async def keep(sink: FlowSink) -> None:
    """Until cancelled: write the buffer every second (and resend the IPFIX template when it
    is due, records or not), apply retention every minute."""
    loop = asyncio.get_running_loop()
    history = sink.history
    last_expiry = time.monotonic()
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        await loop.run_in_executor(None, sink.tick)
        if time.monotonic() - last_expiry >= EXPIRE_EVERY_S:
            last_expiry = time.monotonic()
            dropped = await loop.run_in_executor(None, history.expire, time.time())
            if dropped:
                log.info("flows expired", extra={"event": "flows.expired", "flows": dropped})


__all__ = ["EXPIRE_EVERY_S", "FLUSH_EVERY_S", "FlowSink", "keep", "open_history"]
