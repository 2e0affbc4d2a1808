"""The agent's options: defaults that other parts of the tree (lab, benches) must agree on."""

from __future__ import annotations

DEFAULT_METRICS_PORT = 9464  # Prometheus text on 127.0.0.1:9464 in the agent's network namespace
