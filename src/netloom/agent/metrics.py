"""Prometheus metrics of one agent.

Each :class:`AgentMetrics` owns its registry (not the process-global one) so several agents
can live in one process (the unit tests run a whole cluster in one interpreter); the driver
serves that registry on the metrics port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from netloom.datapath.base import DatapathCounters

# Upcall handling is ~0.1-1 ms in Python; the tail matters for first-packet latency.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self._datapath: _DatapathCollector | None = None
        self.upcalls = Counter("netloom_agent_upcalls", "Upcalls received", ["reason"], registry=r)
        self.rate_limited = Counter(
            "netloom_agent_upcalls_rate_limited",
            "Upcalls dropped by the per-port rate limit",
            registry=r,
        )
        self.simulations = Counter(
            "netloom_agent_simulations", "Simulations run", ["verdict"], registry=r
        )
        self.flows_installed = Counter(
            "netloom_agent_flows_installed", "Flows installed", registry=r
        )
        self.flows_invalidated = Counter(
            "netloom_agent_flows_invalidated", "Flows removed because a tag changed", registry=r
        )
        self.flows_expired = Counter(
            "netloom_agent_flows_expired", "Flows removed by idle/hard timeout", registry=r
        )
        self.flows = Gauge("netloom_agent_flows", "Flows currently installed", registry=r)
        self.parked = Gauge(
            "netloom_agent_parked_packets", "Packets waiting for topology or ARP", registry=r
        )
        self.park_dropped = Counter(
            "netloom_agent_parked_dropped",
            "Parked packets dropped (bound, timeout, missing)",
            ["why"],
            registry=r,
        )
        self.state_pushed = Counter(
            "netloom_agent_flow_state_pushed",
            "Conntrack/NAT entries pushed to peer hosts",
            registry=r,
        )
        self.interests = Gauge(
            "netloom_agent_topology_interests", "Topology subscriptions held", registry=r
        )
        self.topology_revision = Gauge(
            "netloom_agent_topology_revision",
            "Store revision up to which every topology change has been applied",
            registry=r,
        )
        self.learned_routes = Gauge(
            "netloom_agent_learned_routes",
            "BGP-learned routes in the agent's topology view (what its simulation routes by)",
            registry=r,
        )
        self.ct_capacity = Gauge(
            "netloom_datapath_conntrack_capacity",
            "Entries the datapath's conntrack table holds before it evicts",
            registry=r,
        )
        self.latency = Histogram(
            "netloom_agent_upcall_seconds",
            "Upcall handling time (simulate, install, execute)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def watch_datapath(self, read: Callable[[], DatapathCounters]) -> None:
        """Export the datapath's own upcall drops, read at each scrape (once per agent)."""
        if self._datapath is None:
            self._datapath = _DatapathCollector(read)
            self.registry.register(self._datapath)
        else:
            self._datapath.read = read

    def watch_revision(self, read: Callable[[], int | None]) -> None:
        """Export the topology client's applied revision, read at each scrape (0 before any)."""
        self.topology_revision.set_function(lambda: float(read() or 0))

    def watch_connects(self, connects: Callable[[], int], last_wait: Callable[[], float]) -> None:
        """Export the topology client's connections and its last reconnection time (once per
        agent)."""
        Gauge(
            "netloom_agent_topology_connects",
            "Connections made to a topology server (1 + reconnections)",
            registry=self.registry,
        ).set_function(lambda: float(connects()))
        Gauge(
            "netloom_agent_topology_reconnect_seconds",
            "Time from the last lost topology connection to the next welcome (0 before any)",
            registry=self.registry,
        ).set_function(last_wait)

    def watch_learned(self, read: Callable[[], int]) -> None:
        """Export how many learned routes the agent's view holds, read at each scrape."""
        self.learned_routes.set_function(lambda: float(read()))

    def render(self) -> bytes:
        """The exposition text (what the HTTP endpoint serves)."""
        return generate_latest(self.registry)


class _DatapathCollector(Collector):
    """Counters kept by the datapath (in the kernel for bpf), not by the agent."""

    def __init__(self, read: Callable[[], DatapathCounters]) -> None:
        self.read = read

    def describe(self) -> Iterator[Metric]:
        yield from self._families(DatapathCounters())

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.read())

    @staticmethod
    def _families(c: DatapathCounters) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "netloom_datapath_upcalls_throttled",
            "Upcalls the datapath dropped over their port's budget",
            value=c.upcalls_throttled,
        )
        yield CounterMetricFamily(
            "netloom_datapath_upcalls_lost",
            "Upcalls the datapath dropped for want of queue room",
            value=c.upcalls_lost,
        )
        yield CounterMetricFamily(
            "netloom_datapath_conntrack_commits",
            "Connections the datapath committed to its conntrack table",
            value=c.ct_commits,
        )
        yield CounterMetricFamily(
            "netloom_datapath_conntrack_lost",
            "TCP packets without SYN that found no conntrack entry (evicted or expired)",
            value=c.ct_lost,
        )
        yield CounterMetricFamily(
            "netloom_datapath_ip_header_errors",
            "IPv4 packets dropped for a header a router must not forward (RFC 1812 5.2.2)",
            value=c.ip_header_errors,
        )
        yield CounterMetricFamily(
            "netloom_datapath_tagged_dropped",
            "Frames with an 802.1Q or 802.1ad tag dropped on entry from a local port",
            value=c.tagged_dropped,
        )


__all__ = ["AgentMetrics"]
