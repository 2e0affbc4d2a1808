"""One entry of the simulation log: a simulation an agent ran for a real packet, or an event of
its flow table (installed, invalidated, expired, evicted), its parking lot (parked, dropped) or
its upcall budget (rate limited).

The same value is written to the agent's log file and carried to the cluster (both as msgpack
frames of :class:`~netloom.topology.protocol.SimBatch`) and kept in the cluster's log store.
It is encoded as an array in the order of its fields, so the agent's hot path fills a plain
list in that order (:mod:`netloom.agent.simlog`) that decodes as a ``SimEntry``. The packet's
key (:class:`~netloom.flows.model.FlowKey` fields) and the bits of the fields the simulation
read stay integers; :func:`match_fields` renders them when someone looks.
"""

from __future__ import annotations

import msgspec

from netloom.flows.model import FIELD_NAMES
from netloom.packet.util import int_to_ip, int_to_mac

# (kind, object id, object name, decision, detail): netloom.sim.trace.RawStep
Step = tuple[str, str, str, str, str]

# what an entry records
SIM = "sim"
INSTALLED = "installed"
INVALIDATED = "invalidated"
EXPIRED = "expired"
EVICTED = "evicted"
PARKED = "parked"
PARK_DROPPED = "park_dropped"
RATE_LIMITED = "rate_limited"
KINDS = (SIM, INSTALLED, INVALIDATED, EXPIRED, EVICTED, PARKED, PARK_DROPPED, RATE_LIMITED)


class SimEntry(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """A simulation or a flow event on ``host``. The field order is the wire's: append only."""

    t: float  # when: the agent's clock until shipped, then wall-clock seconds
    host: str  # "" until the cluster stamps it with the host of the connection it came by
    kind: str  # one of KINDS
    port: str | None = None  # the virtual in-port
    key: tuple[int, ...] = ()  # the packet's FlowKey fields (sim), the flow's key (events)
    read: int = 0  # F_* bits of the fields the simulation read: the flow's match
    reason: str = ""  # the upcall's reason (miss, ttl, mtu); "" for a generated packet
    steps: list[Step] = []  # the simulation's trace
    verdict: str = ""
    flow: int = 0  # the installed flow's cookie (0: none installed)
    tags: list[str] = []  # the installed flow's tags
    out: list[str] = []  # the virtual ports the packet leaves by (else: the trace's outputs)
    hosts: list[str] = []  # the hosts it is tunnelled to
    detail: str = ""  # why: the change that invalidated, what a parked packet waits for
    trace: str | None = None  # the trace id of a traced packet


_IPS = frozenset({"ip_src", "ip_dst"})
_MACS = frozenset({"eth_src", "eth_dst"})


def match_fields(key: tuple[int, ...] | list[int], read: int) -> dict[str, str]:
    """The fields the simulation read, by name, readable (addresses as text); all of the key's
    fields when ``read`` is 0 (an event's exact key)."""
    out: dict[str, str] = {}
    for i, (name, value) in enumerate(zip(FIELD_NAMES, key, strict=False)):
        if read and not read & (1 << i):
            continue
        if name in _IPS:
            out[name] = int_to_ip(value)
        elif name in _MACS:
            out[name] = int_to_mac(value)
        else:
            out[name] = str(value)
    return out


def outputs(steps: list[Step]) -> list[str]:
    """The virtual ports a simulation sent the packet out of: its trace's output steps."""
    return [s[1] for s in steps if s[0] == "port" and s[3] == "output"]


def entry_json(entry: SimEntry) -> dict[str, object]:
    """The entry as the API answers it: the match rendered, the steps as objects."""
    return {
        "t": entry.t,
        "host": entry.host,
        "kind": entry.kind,
        "port": entry.port,
        "match": match_fields(entry.key, entry.read),
        "reason": entry.reason,
        "steps": [
            {"kind": k, "id": i, "name": n, "decision": d, "detail": x}
            for k, i, n, d, x in entry.steps
        ],
        "verdict": entry.verdict,
        "flow": entry.flow,
        "tags": entry.tags,
        "out": entry.out or outputs(entry.steps),
        "hosts": entry.hosts,
        "detail": entry.detail,
        "trace": entry.trace,
    }


__all__ = [
    "EVICTED",
    "EXPIRED",
    "INSTALLED",
    "INVALIDATED",
    "KINDS",
    "PARKED",
    "PARK_DROPPED",
    "RATE_LIMITED",
    "SIM",
    "SimEntry",
    "Step",
    "entry_json",
    "match_fields",
    "outputs",
]
