"""Topology fan-out: one NSDB watch in the cluster, per-agent interest streams to agents.

:class:`TopologyServer` (cluster side) and :class:`TopologyClient` (agent side); the wire
protocol is documented in :mod:`netloom.topology.protocol`.
"""

from netloom.topology.client import TopologyClient
from netloom.topology.server import TopologyServer, store_host_alive

__all__ = ["TopologyClient", "TopologyServer", "store_host_alive"]
