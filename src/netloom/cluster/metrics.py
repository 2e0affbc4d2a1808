"""Prometheus metrics of the cluster, served at ``/metrics`` on the API's port.

Its own registry (as :mod:`netloom.agent.metrics`), so several clusters can live in one
process. API requests are counted by a middleware (labels: method, route template, status);
NSDB commits are timed by :class:`TimedStore` around the object service's store; the topology
service's figures and the flow history's are read at scrape time.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netloom.cluster.flows import FlowSink
from netloom.store import Store
from netloom.store.base import Change, ChangeCallback, Item, Op, Watch
from netloom.topology.server import TopologyServer

# an NSDB commit: ~1 ms on SQLite, several on a ZooKeeper ensemble
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
PATH = "/metrics"
Next = Callable[[Request], Awaitable[Response]]


class ClusterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.api_requests = Counter(
            "netloom_cluster_api_requests",
            "REST API requests answered",
            ["method", "route", "code"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "netloom_cluster_nsdb_commit_seconds",
            "NSDB commit latency",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.commit_failures = Counter(
            "netloom_cluster_nsdb_commit_failures", "NSDB commits refused or failed", registry=r
        )

    def watch(self, topo: TopologyServer, flows: FlowSink) -> None:
        """Read the topology service's and the flow history's figures at each scrape."""
        self.registry.register(_FiguresCollector(topo, flows))

    def instrument(self, app: FastAPI) -> None:
        """Count every request of ``app`` and serve the registry at :data:`PATH`."""

        @app.middleware("http")
        async def count(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.api_requests.labels(request.method, template, str(response.status_code)).inc()
            return response

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        app.add_api_route(PATH, metrics, methods=["GET"], include_in_schema=False)


class _FiguresCollector(Collector):
    def __init__(self, topo: TopologyServer, flows: FlowSink) -> None:
        self._topo = topo
        self._flows = flows

    def collect(self) -> Iterator[Metric]:
        stats = self._topo.stats
        yield GaugeMetricFamily(
            "netloom_cluster_topology_connected_agents",
            "Agents connected to the topology service",
            value=stats.connections,
        )
        yield CounterMetricFamily(
            "netloom_cluster_topology_frames_sent", "Frames sent to agents", value=stats.frames_sent
        )
        yield CounterMetricFamily(
            "netloom_cluster_topology_dropped_slow",
            "Agent connections dropped for not reading",
            value=stats.dropped_slow,
        )
        yield CounterMetricFamily(
            "netloom_cluster_flow_records_ingested",
            "Flow records taken into the flow history",
            value=self._flows.history.ingested,
        )
        exporter = self._flows.exporter
        if exporter is not None:
            yield CounterMetricFamily(
                "netloom_cluster_ipfix_messages_sent",
                "IPFIX messages sent to the collector",
                value=exporter.sent,
            )


class TimedStore:
    """A :class:`~netloom.store.Store` whose commits are timed into ``metrics``."""

    def __init__(self, store: Store, metrics: ClusterMetrics) -> None:
        self._store = store
        self._metrics = metrics

    def commit(self, ops: Sequence[Op]) -> int:
        start = time.perf_counter()
        try:
            return self._store.commit(ops)
        except Exception:
            self._metrics.commit_failures.inc()
            raise
        finally:
            self._metrics.commit_seconds.observe(time.perf_counter() - start)

    def get(self, kind: str, id: str) -> Item | None:
        return self._store.get(kind, id)

    def list(self, kind: str) -> builtins.list[Item]:
        return self._store.list(kind)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        return self._store.get_many(keys)

    def revision(self) -> int:
        return self._store.revision()

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        return self._store.changes(since, limit)

    def watch(self, since: int, callback: ChangeCallback) -> Watch:
        return self._store.watch(since, callback)

    def close(self) -> None:
        self._store.close()


__all__ = ["PATH", "ClusterMetrics", "TimedStore"]
