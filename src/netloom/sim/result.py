"""What a simulation returns.

A :class:`Result` says what to do with the packet and with every later packet of the same
megaflow: the match (the packet's header fields) and the mask (exactly the fields the
simulation read), virtual actions (header rewrites and outputs to *virtual* port ids, which
the agent translates to a local interface or a VXLAN tunnel with the port's tunnel key and
host), tags, state changes, generated packets and a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netloom.flows.model import (
    CT_ALL,
    FIELD_NAMES,
    DecTtl,
    FlowKey,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
)
from netloom.sim.state import StateChange
from netloom.sim.trace import Trace, trace_from_json

# Bits of "which FlowKey fields were read", in FlowKey field order.
F_IN_PORT = 1 << 0
F_TUN_KEY = 1 << 1
F_ETH_SRC = 1 << 2
F_ETH_DST = 1 << 3
F_ETH_TYPE = 1 << 4
F_VLAN = 1 << 5
F_IP_SRC = 1 << 6
F_IP_DST = 1 << 7
F_IP_PROTO = 1 << 8
F_IP_FRAG = 1 << 9
F_TP_SRC = 1 << 10
F_TP_DST = 1 << 11
F_CT_STATE = 1 << 12
_TP_SRC, _TP_DST = 10, 11  # their places in FlowKey
F_L4 = F_IP_PROTO | F_IP_FRAG | F_TP_SRC | F_TP_DST
F_5TUPLE = F_IP_SRC | F_IP_DST | F_L4

_FULL = (
    0xFFFFFFFF,
    0xFFFFFF,
    (1 << 48) - 1,
    (1 << 48) - 1,
    0xFFFF,
    0xFFF,
    0xFFFFFFFF,
    0xFFFFFFFF,
    0xFF,
    0x3,
    0xFFFF,
    0xFFFF,
    CT_ALL,
)


class Verdict(StrEnum):
    FORWARD = "forward"  # delivered to at least one port
    DROP = "drop"  # delivered nowhere (an ICMP error may have been generated)
    CONSUMED = "consumed"  # addressed to the virtual network itself and answered (ARP, ping)
    NOT_YET = "not-yet"  # something is missing: see Result.awaiting


@dataclass(frozen=True, slots=True)
class OutputPort:
    """Send the packet out of virtual port ``port_id`` (exterior: towards its interface)."""

    port_id: str


VirtualAction = (
    SetEthSrc | SetEthDst | SetIpSrc | SetIpDst | SetTpSrc | SetTpDst | DecTtl | OutputPort
)


@dataclass(frozen=True, slots=True)
class GeneratedPacket:
    """A packet the simulation produced (ARP/ICMP/DHCP reply, ARP request, translated ICMP
    error), to be emitted out of virtual port ``port_id``: to the VM when the port is exterior,
    into the peer device (simulate it with ``in_port = peer``) when interior; see
    :func:`netloom.sim.engine.deliver`."""

    port_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Parameters of the simulation that are deployment facts, not topology."""

    underlay_mtu: int = 1500
    vxlan_overhead: int = 50  # VXLAN over IPv4: 14 + 20 + 8 + 8
    max_devices: int = 12
    max_chain_depth: int = 10
    conntrack_timeout_s: float = 300.0
    nat_timeout_s: float = 300.0
    arp_timeout_s: float = 3600.0
    dhcp_domain: str | None = None
    # trace why each rule before the deciding one did not match (what-if traces only)
    explain: bool = False
    # Stateful rules decide on the packet's ct_state (the datapath's conntrack) instead of
    # the agent's table, and a new forward connection is committed by the flow itself (see
    # sim.conditions.is_forward). The agent turns it on; what-if traces keep it off.
    kernel_conntrack: bool = False

    @property
    def overlay_mtu(self) -> int:
        return self.underlay_mtu - self.vxlan_overhead


@dataclass(slots=True)
class Result:
    verdict: Verdict
    in_port_id: str
    key: tuple[int, ...]  # the packet's FlowKey fields (in_port 0: the agent fills it)
    read: int  # F_* bits of the fields the simulation read
    actions: tuple[VirtualAction, ...]
    tags: frozenset[object]
    changes: tuple[StateChange, ...]
    generated: tuple[GeneratedPacket, ...]
    trace: Trace
    # False when the decision depends on something a flow cannot express (TTL expiry, ICMP
    # ids, packet payloads, generated replies): the agent must not install a datapath flow
    # for it and sends such packets to userspace each time.
    cacheable: bool = True
    awaiting: tuple[tuple[str, ...], ...] = field(default=())
    # kernel_conntrack: the flow commits the connection (CtCommit first, outputs with ct)
    ct_commit: bool = False
    # bits of both L4 ports read where the ports were not read whole (an ECMP choice)
    tp_bits: int = 0

    @property
    def match(self) -> FlowKey:
        return FlowKey(*self.key)

    @property
    def mask(self) -> FlowKey:
        # in_port is always read; the agent puts its datapath port number in the key.
        read = self.read | F_IN_PORT
        mask = [m if read & (1 << i) else 0 for i, m in enumerate(_FULL)]
        if self.tp_bits:
            mask[_TP_SRC] |= self.tp_bits
            mask[_TP_DST] |= self.tp_bits
        return FlowKey(*mask)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(a.port_id for a in self.actions if isinstance(a, OutputPort))


def result_to_json(result: Result) -> dict[str, Any]:
    """A JSON-ready summary of a simulation result (for ``netloom trace --json``)."""
    mask = result.mask
    return {
        "verdict": result.verdict.value,
        "in_port_id": result.in_port_id,
        "outputs": list(result.outputs),
        "actions": [_action_json(a) for a in result.actions],
        "match": {
            n: getattr(result.match, n) for n in FIELD_NAMES if getattr(mask, n) and n != "in_port"
        },
        "cacheable": result.cacheable,
        "ct_commit": result.ct_commit,
        "awaiting": [list(a) for a in result.awaiting],
        "generated": [{"port_id": g.port_id, "bytes": len(g.data)} for g in result.generated],
        "changes": [repr(c) for c in result.changes],
        "tags": sorted(str(t) for t in result.tags),
        "trace": result.trace.to_json(),
    }


def render_result(result: Result) -> str:
    """Readable form: the trace, then the verdict and where the packet goes."""
    return render_json(result_to_json(result))


def render_json(body: dict[str, Any]) -> str:
    """The readable form of :func:`result_to_json`'s answer (also what ``POST /trace`` sends):
    the trace, the verdict, where the packet goes and the rule that decided."""
    trace = trace_from_json(body["trace"])
    lines = [trace.render(), f"verdict: {body['verdict']}"]
    if body["outputs"]:
        lines.append("out: " + ", ".join(body["outputs"]))
    if body["awaiting"]:
        lines.append("awaiting: " + ", ".join(":".join(a) for a in body["awaiting"]))
    for g in body["generated"]:
        lines.append(f"generated: {g['bytes']} bytes out of port {g['port_id']}")
    return "\n".join(lines)


def _action_json(action: object) -> dict[str, object]:
    name = type(action).__name__
    fields = getattr(action, "__slots__", ())
    return {"action": name, **{f: getattr(action, f) for f in fields}}


__all__ = [
    "F_5TUPLE",
    "F_CT_STATE",
    "F_ETH_DST",
    "F_ETH_SRC",
    "F_ETH_TYPE",
    "F_IN_PORT",
    "F_IP_DST",
    "F_IP_FRAG",
    "F_IP_PROTO",
    "F_IP_SRC",
    "F_L4",
    "F_TP_DST",
    "F_TP_SRC",
    "F_TUN_KEY",
    "F_VLAN",
    "GeneratedPacket",
    "OutputPort",
    "Result",
    "SimConfig",
    "Verdict",
    "VirtualAction",
    "render_json",
    "render_result",
    "result_to_json",
]
