"""Bridges (L2): MAC learning, unicast to a known port or flooding, ARP suppression.

The bridge decides where the packet goes; the engine walks the egress ports.
"""

from __future__ import annotations

from netloom.errors import NotYet
from netloom.packet.codec import build
from netloom.packet.headers import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    Arp,
    Ethernet,
    Frame,
)
from netloom.packet.util import int_to_ip, int_to_mac
from netloom.sim.chains import run_chain
from netloom.sim.compiled import CDevice, CPort, CPortSet
from netloom.sim.conditions import ACCEPT
from netloom.sim.context import ETH_MCAST, Ctx
from netloom.sim.icmp import deny
from netloom.sim.result import F_ETH_DST, F_ETH_SRC, F_ETH_TYPE, F_IP_DST, F_IP_PROTO, F_VLAN
from netloom.sim.state import MacLearned


def bridge(c: Ctx, in_port: CPort) -> tuple[CDevice, CPort | list[CPort]] | None:
    """Switch the packet on the bridge behind ``in_port``: the bridge and the one port to
    unicast to, or the list of ports to flood to; None when it goes nowhere."""
    dev = c.topo.device(in_port.device_id, False)
    c.tags.add(in_port.device_id)
    if dev is None:
        raise NotYet(("bridge", in_port.device_id))
    if not dev.up:
        c.step("bridge", dev.id, dev.name, "drop", "admin down")
        return None
    if dev.in_filter is not None:
        v = run_chain(c, dev.in_filter, dev.id)
        if v != ACCEPT:
            deny(c, v, dev.in_filter)
            return None
    ports = c.topo.ports(dev.id)
    if ports is None:
        raise NotYet(("ports", dev.id))
    c.read |= F_ETH_SRC | F_ETH_DST | F_VLAN | F_ETH_TYPE
    _learn(c, dev, in_port, ports)
    if c.is_arp and _arp_answered(c, dev, in_port, ports):
        return None
    dst = c.eth_dst
    if dst & ETH_MCAST:
        return dev, _flood(
            c, dev, in_port, ports, "broadcast" if dst == ETH_BROADCAST else "multicast"
        )
    target = _mac_port(c, dev, ports, dst)
    if target is None:
        return dev, _flood(c, dev, in_port, ports, "unknown unicast")
    if target.id == in_port.id:
        c.step("bridge", dev.id, dev.name, "drop", "destination is on the ingress port")
        return None
    c.step("bridge", dev.id, dev.name, "unicast", f"to {target.label()}")
    return dev, target


def bridge_egress(c: Ctx, dev: CDevice, port: CPort) -> bool:
    """The bridge's outbound filter for the copy leaving through ``port``: True to pass."""
    c.out_port = port
    if dev.out_filter is not None:
        v = run_chain(c, dev.out_filter, dev.id)
        if v != ACCEPT:
            deny(c, v, dev.out_filter)
            return False
    return True


def _learn(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet) -> None:
    src = c.eth_src
    if src & ETH_MCAST or src in ports.by_mac:
        return
    if in_port.peer_id is not None:  # a linked router port's MAC is static, not learned
        peer = c.topo.port(in_port.peer_id)
        if peer is not None and peer.mac == src:
            return
    key = ("mac", dev.id, c.vlan, src)
    c.tags.add(key)
    if c.state.macs.get(key) != in_port.id:
        c.changes.append(MacLearned(key, in_port.id))
        c.step("bridge", dev.id, dev.name, "learn", f"{int_to_mac(src)} on {in_port.label()}")


def _mac_port(c: Ctx, dev: CDevice, ports: CPortSet, dst: int) -> CPort | None:
    """Static entries (bridge port MACs, peer router port MACs), then the learned table."""
    port = ports.by_mac.get(dst)
    if port is not None:
        return port
    for p in ports.ports:
        if p.peer_id is not None:
            peer = c.topo.port(p.peer_id)
            c.tags.add(p.peer_id)
            if peer is not None and peer.mac == dst:
                return p
    key = ("mac", dev.id, c.vlan, dst)
    c.tags.add(key)
    learned = c.state.macs.get(key)
    if learned is None:
        return None
    for p in ports.ports:
        if p.id == learned:
            return p
    return None


def _flood(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet, why: str) -> list[CPort]:
    outs = [p for p in ports.ports if p.id != in_port.id]
    c.step("bridge", dev.id, dev.name, "flood", f"{why} to {len(outs)} ports")
    return outs


def _arp_answered(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet) -> bool:
    """An ARP request the bridge answers itself; the opcode (OVS: in ip_proto) is read."""
    c.read |= F_IP_PROTO
    return c.proto == ARP_REQUEST and _arp_suppress(c, dev, in_port, ports)


def _arp_suppress(c: Ctx, dev: CDevice, in_port: CPort, ports: CPortSet) -> bool:
    """Answer an ARP request from what the bridge knows (port fixed IPs, peer router ports)
    instead of flooding it (MidoNet's ARP suppression)."""
    arp = c.frame.arp
    assert arp is not None
    c.read |= F_IP_DST
    mac = ports.ip_to_mac.get(arp.tpa)
    if mac is None:
        for p in ports.ports:
            if p.peer_id is not None:
                peer = c.topo.port(p.peer_id)
                if peer is not None and peer.is_router and peer.ip == arp.tpa:
                    mac = peer.mac
                    break
    if mac is None:
        return False
    if mac == arp.sha:  # the sender asks for itself: flooded, decided on a field no flow has
        c.cacheable = False
        return False
    reply = Frame(
        Ethernet(arp.sha, mac, ETH_TYPE_ARP), arp=Arp(ARP_REPLY, mac, arp.tpa, arp.sha, arp.spa)
    )
    c.generated.append((in_port.id, build(reply)))
    c.cacheable = False
    c.consumed = True
    c.step("bridge", dev.id, dev.name, "arp-reply", f"{int_to_ip(arp.tpa)} is at {int_to_mac(mac)}")
    return True


# ---- router ----------------------------------------------------------------------------------


__all__ = ["bridge", "bridge_egress"]
