"""Topology fan-out: one NSDB watch in the cluster, per-agent interest streams to agents.

:class:`TopologyServer` (cluster side) and :class:`TopologyClient` (agent side); the wire
protocol is documented in :mod:`netloom.topology.protocol`.
"""

from netloom.topology.client import TopologyClient
from netloom.topology.liveness import store_host_alive
from netloom.topology.server import TopologyServer

__all__ = ["TopologyClient", "TopologyServer", "store_host_alive"]
