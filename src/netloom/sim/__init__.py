"""netloom.sim: the pure simulation of packets through the virtual topology.

``simulate(packet, in_port_id, topology, state, now) -> Result`` (see :mod:`netloom.sim.engine`).
"""

from netloom.sim.engine import DEFAULT_CONFIG, apply_actions, deliver, simulate
from netloom.sim.probe import build_probe, run_trace, trace_probe
from netloom.sim.result import (
    GeneratedPacket,
    OutputPort,
    Result,
    SimConfig,
    Verdict,
    render_json,
    render_result,
    result_to_json,
)
from netloom.sim.state import SimState
from netloom.sim.topology import MemoryTopology, TopologyView
from netloom.sim.trace import Trace, TraceStep

__all__ = [
    "DEFAULT_CONFIG",
    "GeneratedPacket",
    "MemoryTopology",
    "OutputPort",
    "Result",
    "SimConfig",
    "SimState",
    "TopologyView",
    "Trace",
    "TraceStep",
    "Verdict",
    "apply_actions",
    "build_probe",
    "deliver",
    "render_json",
    "render_result",
    "result_to_json",
    "run_trace",
    "simulate",
    "trace_probe",
]
