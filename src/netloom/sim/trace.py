"""Simulation traces (readable and JSON) and probe packets for offline what-if traces.

During a simulation each step is appended as a plain tuple (cheap on the hot path); the
:class:`Trace` turns them into :class:`TraceStep` records only when someone looks.

``build_probe`` makes the packet ``netloom trace --from-port P --dst-ip X`` simulates: the
frame the VM behind port P would send (to the destination's MAC when it is on the same
bridge, to the gateway router port's MAC otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netloom.packet.headers import Frame
    from netloom.sim.result import Result, SimConfig
    from netloom.sim.state import SimState
    from netloom.sim.topology import TopologyView

# (kind, object id, object name, decision, detail)
RawStep = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class TraceStep:
    kind: str  # port, bridge, router, chain, rule, nat, conntrack, ...
    id: str
    name: str
    decision: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "decision": self.decision,
            "detail": self.detail,
        }


class Trace:
    """The ordered steps of one simulation."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[RawStep]) -> None:
        self._raw = raw

    @property
    def steps(self) -> list[TraceStep]:
        return [TraceStep(*s) for s in self._raw]

    def __len__(self) -> int:
        return len(self._raw)

    def decisions(self) -> list[str]:
        """``kind:decision`` of each step; handy in tests and logs."""
        return [f"{s[0]}:{s[3]}" for s in self._raw]

    def to_json(self) -> list[dict[str, str]]:
        return [s.to_json() for s in self.steps]

    def render(self) -> str:
        lines = []
        for i, s in enumerate(self.steps, 1):
            label = s.name or s.id[:8]
            detail = f"  ({s.detail})" if s.detail else ""
            lines.append(f"{i:>3}. {s.kind:<9} {label:<20} {s.decision}{detail}")
        return "\n".join(lines)


def result_to_json(result: Result) -> dict[str, Any]:
    """A JSON-ready summary of a simulation result (for ``netloom trace --json``)."""
    from netloom.flows.model import FIELD_NAMES

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
        "awaiting": [list(a) for a in result.awaiting],
        "generated": [{"port_id": g.port_id, "bytes": len(g.data)} for g in result.generated],
        "changes": [repr(c) for c in result.changes],
        "tags": sorted(str(t) for t in result.tags),
        "trace": result.trace.to_json(),
    }


def render_result(result: Result) -> str:
    """Readable form: the trace, then the verdict and where the packet goes."""
    lines = [result.trace.render(), f"verdict: {result.verdict.value}"]
    if result.outputs:
        lines.append("out: " + ", ".join(result.outputs))
    if result.awaiting:
        lines.append("awaiting: " + ", ".join(":".join(a) for a in result.awaiting))
    for g in result.generated:
        lines.append(f"generated: {len(g.data)} bytes out of port {g.port_id}")
    return "\n".join(lines)


def _action_json(action: object) -> dict[str, object]:
    name = type(action).__name__
    fields = getattr(action, "__slots__", ())
    return {"action": name, **{f: getattr(action, f) for f in fields}}


def build_probe(
    topology: TopologyView,
    from_port_id: str,
    dst_ip: str,
    proto: str = "icmp",
    sport: int = 40000,
    dport: int = 80,
    ttl: int = 64,
    src_ip: str | None = None,
) -> Frame:
    """The frame a VM behind bridge port ``from_port_id`` would send to ``dst_ip``.

    Raises :class:`netloom.errors.InvalidInput` / :class:`netloom.errors.NotFound` for a port
    that is not a bridge port with a MAC and an address, or an unknown protocol.
    """
    from netloom.errors import InvalidInput, NotFound
    from netloom.model.records import Port
    from netloom.packet.headers import (
        ETH_TYPE_IPV4,
        IPPROTO_ICMP,
        IPPROTO_TCP,
        IPPROTO_UDP,
        Ethernet,
        Frame,
        Icmp,
        IPv4,
        Tcp,
        Udp,
    )
    from netloom.packet.util import ip_to_int, mac_to_int

    port = topology.get("port", from_port_id)
    if not isinstance(port, Port):
        raise NotFound(f"port {from_port_id} not found", field="from_port")
    if port.type != "bridge" or port.mac is None:
        raise InvalidInput("a probe starts at a bridge port with a mac", field="from_port")
    src = src_ip or (port.fixed_ips[0] if port.fixed_ips else None)
    if src is None:
        raise InvalidInput("the port has no fixed IP; give src_ip", field="src_ip")
    try:
        dst = ip_to_int(dst_ip)
        src_i = ip_to_int(src)
    except OSError:
        raise InvalidInput(f"malformed IPv4 address {dst_ip!r}", field="dst_ip") from None
    protos = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
    if proto not in protos:
        raise InvalidInput(f"protocol {proto!r}: want icmp, tcp or udp", field="proto")
    dst_mac = _probe_dst_mac(topology, port.device_id, src_i, dst)
    ip = IPv4(src_i, dst, protos[proto], ttl=ttl, flags=0x2)
    l4: Icmp | Tcp | Udp
    if proto == "icmp":
        l4 = Icmp(8, 0, (sport << 16) | 1)
    elif proto == "tcp":
        l4 = Tcp(sport, dport)
    else:
        l4 = Udp(sport, dport)
    eth = Ethernet(dst_mac, mac_to_int(port.mac), ETH_TYPE_IPV4)
    return Frame(eth, ip=ip, l4=l4, payload=b"netloom-probe")


def trace_probe(
    topology: TopologyView,
    state: SimState,
    from_port_id: str,
    dst_ip: str,
    proto: str = "icmp",
    sport: int = 40000,
    dport: int = 80,
    now: float = 0.0,
    config: SimConfig | None = None,
) -> Result:
    """Offline what-if: simulate the probe from ``from_port_id`` to ``dst_ip`` against the
    topology and state, sending nothing (the engine of ``netloom trace``)."""
    from netloom.sim.engine import DEFAULT_CONFIG, simulate

    frame = build_probe(topology, from_port_id, dst_ip, proto, sport, dport)
    return simulate(frame, from_port_id, topology, state, now, config or DEFAULT_CONFIG)


def _probe_dst_mac(topology: TopologyView, bridge_id: str, src: int, dst: int) -> int:
    """The MAC the sender would ARP for: the destination's own when a bridge port holds it,
    else the MAC of the router port on this bridge whose subnet holds the source."""
    from netloom.model.records import Port
    from netloom.packet.util import ip_to_int, mac_to_int, prefix

    ports = topology.ports(bridge_id) or ()
    for p in ports:
        if p.mac and any(ip_to_int(ip) == dst for ip in p.fixed_ips):
            return mac_to_int(p.mac)
    fallback = None
    for p in ports:
        peer = topology.get("port", p.peer_id) if p.peer_id else None
        if isinstance(peer, Port) and peer.type == "router" and peer.mac and peer.address:
            net, mask, _ = prefix(peer.address)
            if src & mask == net:
                return mac_to_int(peer.mac)
            fallback = mac_to_int(peer.mac)
    return fallback if fallback is not None else (1 << 48) - 1


__all__ = [
    "RawStep",
    "Trace",
    "TraceStep",
    "build_probe",
    "render_result",
    "result_to_json",
    "trace_probe",
]
