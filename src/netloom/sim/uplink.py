"""An uplink's routing sidecar: the control traffic between an exterior router port and the
routing daemon (bird2) that speaks for the port's address in a namespace of its own.

The sidecar's interface carries the port's address and MAC; it is a pseudo port of the
simulation named :func:`sidecar_id` of the uplink port, plugged into the datapath by the
gateway agent and listed in ``SimState.sidecars`` while it is. What goes between them:

* in from the uplink, addressed to the port: BGP (TCP port 179 either way, RFC 4271 §8.2.1),
  single-hop BFD control and echo (UDP 3784/3785, RFC 5881 §4) and multihop BFD (UDP 4784,
  RFC 5883 §5), and ICMP other than an echo request (the router answers pings itself);
* ARP on the uplink for the port's address: the router learns and answers as for any port, and
  a copy goes to the sidecar, which resolves the peer by its own ARP (both need the replies);
* everything the sidecar sends leaves by the uplink unchanged (the sidecar sends with the
  port's MAC and address and resolves its next hop itself).

These are flows like any other (MidoNet installed the BGP daemon's flows the same way), so
``netloom trace`` shows them and a change of the sidecar invalidates them through its tag.
"""

from __future__ import annotations

from netloom.errors import NotYet
from netloom.packet.headers import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from netloom.packet.util import int_to_ip
from netloom.sim.compiled import CPort
from netloom.sim.context import Ctx, Egress
from netloom.sim.result import F_IP_DST, F_IP_PROTO, F_L4

SIDECAR_SUFFIX = ":sidecar"
BGP_PORT = 179  # RFC 4271 §8.2.1
BFD_PORTS = frozenset({3784, 3785, 4784})  # RFC 5881 §4 (control, echo), RFC 5883 §5
ICMP_ECHO_REQUEST = 8


def sidecar_id(port_id: str) -> str:
    """The pseudo port id of uplink ``port_id``'s sidecar."""
    return port_id + SIDECAR_SUFFIX


def uplink_of(port_id: str) -> str | None:
    """The uplink port id if ``port_id`` names a sidecar, else None."""
    if port_id.endswith(SIDECAR_SUFFIX):
        return port_id[: -len(SIDECAR_SUFFIX)]
    return None


def has_sidecar(c: Ctx, port: CPort) -> bool:
    """Whether ``port`` is an uplink whose sidecar is plugged on this host (tags the flow)."""
    if not (port.exterior and port.is_router):
        return False
    c.tags.add(sidecar_id(port.id))
    return port.id in c.state.sidecars


def is_control(c: Ctx, port: CPort) -> bool:
    """Whether an IPv4 packet that arrived on uplink ``port`` is control traffic for its
    sidecar (the caller checked that the port has one)."""
    c.read |= F_IP_DST | F_IP_PROTO
    if c.ip_dst != port.ip:
        return False
    if c.proto == IPPROTO_TCP:
        c.read |= F_L4
        return BGP_PORT in (c.tp_src, c.tp_dst)
    if c.proto == IPPROTO_UDP:
        c.read |= F_L4
        return c.tp_dst in BFD_PORTS
    if c.proto == IPPROTO_ICMP:
        c.read |= F_L4
        return c.tp_src != ICMP_ECHO_REQUEST  # the ICMP type rides in tp_src
    return False


def to_sidecar(c: Ctx, port: CPort, what: str) -> None:
    """Send the packet (as it arrived) to ``port``'s sidecar."""
    sid = sidecar_id(port.id)
    c.egress.append(Egress(sid, c.headers(), c.ttl_decs, c.inner))
    c.step("uplink", port.id, port.label(), "to-sidecar", f"{what} for {int_to_ip(port.ip)}")


def from_sidecar(c: Ctx, sidecar: str, uplink: str) -> None:
    """A packet the sidecar sent: out of its uplink, unchanged."""
    c.tags.add(sidecar)
    c.tags.add(uplink)
    port = c.topo.port(uplink)
    if port is None:
        raise NotYet(("port", uplink))
    if not (port.exterior and port.is_router) or uplink not in c.state.sidecars:
        c.step("uplink", uplink, port.label(), "drop", "no sidecar on this uplink")
        return
    c.in_port = port
    c.out_port = port
    c.egress.append(Egress(port.id, c.headers(), 0, c.inner))
    c.step("uplink", port.id, port.label(), "from-sidecar", "out of the uplink")


__all__ = [
    "BFD_PORTS",
    "BGP_PORT",
    "from_sidecar",
    "has_sidecar",
    "is_control",
    "sidecar_id",
    "to_sidecar",
    "uplink_of",
]
