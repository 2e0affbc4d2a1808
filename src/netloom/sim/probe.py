"""Probe packets and the offline what-if trace.

``build_probe`` makes the packet ``netloom trace --from-port P --dst-ip X`` simulates: the
frame the VM behind port P would send (to the destination's MAC when it is on the same
bridge, to the gateway router port's MAC otherwise). ``trace_probe`` simulates it once;
``run_trace`` starts from empty host state and assumes what an agent would have learned: a
SNAT port block is leased when a SNAT rule asks for one (the trace says that it assumed one).
Nothing is sent anywhere.
"""

from __future__ import annotations

from dataclasses import replace

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
from netloom.packet.util import ip_to_int, mac_to_int, prefix
from netloom.sim.engine import DEFAULT_CONFIG, simulate
from netloom.sim.result import Result, SimConfig, Verdict
from netloom.sim.state import SimState
from netloom.sim.topology import TopologyView

# What-if leases: a whole range, so any port the simulator picks is inside it.
WHATIF_BLOCK = (1024, 65535)
MAX_ASSUMPTIONS = 8

PROTOCOLS = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


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
    except OSError:
        raise InvalidInput(f"malformed IPv4 address {dst_ip!r}", field="dst_ip") from None
    try:
        src_i = ip_to_int(src)
    except OSError:
        raise InvalidInput(f"malformed IPv4 address {src!r}", field="src_ip") from None
    if proto not in PROTOCOLS:
        raise InvalidInput(f"protocol {proto!r}: want icmp, tcp or udp", field="proto")
    dst_mac = _probe_dst_mac(topology, port.device_id, src_i, dst)
    ip = IPv4(src_i, dst, PROTOCOLS[proto], ttl=ttl, flags=0x2)
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
    src_ip: str | None = None,
) -> Result:
    """Offline what-if: simulate the probe from ``from_port_id`` to ``dst_ip`` against the
    topology and state, sending nothing. ``src_ip``: the source address (default: the
    port's first fixed IP)."""
    frame = build_probe(topology, from_port_id, dst_ip, proto, sport, dport, src_ip=src_ip)
    return simulate(frame, from_port_id, topology, state, now, config or DEFAULT_CONFIG)


def run_trace(
    topology: TopologyView,
    from_port: str,
    dst_ip: str,
    proto: str,
    sport: int,
    dport: int,
    explain: bool = False,
    src_ip: str | None = None,
) -> tuple[Result, list[str]]:
    """The what-if trace of ``netloom trace``: simulate the probe from empty host state, leasing
    what-if SNAT blocks when the simulator waits for one. Returns the result and what was
    assumed (one readable line each). ``explain``: the trace also says why each rule before
    the deciding one did not match."""
    state = SimState()
    assumed: list[str] = []
    config = replace(DEFAULT_CONFIG, explain=explain)
    for _ in range(MAX_ASSUMPTIONS):
        result = trace_probe(
            topology, state, from_port, dst_ip, proto, sport, dport, config=config, src_ip=src_ip
        )
        awaiting = [
            a for a in result.awaiting if a and a[0] == "snat-block" and a[2] != "exhausted"
        ]
        if result.verdict != Verdict.NOT_YET or not awaiting:
            return result, assumed
        for _, device, ip in awaiting:
            state.lease_snat_block(device, ip_to_int(ip), *WHATIF_BLOCK)
            assumed.append(f"SNAT port block {WHATIF_BLOCK[0]}-{WHATIF_BLOCK[1]} on {ip}")
    return result, assumed


def _probe_dst_mac(topology: TopologyView, bridge_id: str, src: int, dst: int) -> int:
    """The MAC the sender would ARP for: the destination's own when a bridge port holds it,
    else the MAC of the router port on this bridge whose subnet holds the source."""
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


__all__ = ["MAX_ASSUMPTIONS", "WHATIF_BLOCK", "build_probe", "run_trace", "trace_probe"]
