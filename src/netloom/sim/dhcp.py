"""The DHCP server of bridges that have a DhcpSubnet (RFC 2131), answered inside the simulation.

A VM's DHCP request never leaves its host: the simulation recognises it at the bridge port,
finds the address for the client MAC (a static DhcpHost of the subnet, else the port's own
fixed IP) and generates the OFFER/ACK with the options VMs need (RFC 2132): subnet mask,
router, DNS, domain name, MTU (the subnet's, else the underlay MTU minus the VXLAN overhead,
so VM packets fit the tunnel), lease times and classless static routes
(RFC 3442, which carries the default route too because clients that get option 121 ignore
option 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netloom.errors import NotYet
from netloom.packet.codec import build
from netloom.packet.dhcp import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    DECLINE,
    DISCOVER,
    FLAG_BROADCAST,
    INFORM,
    NAK,
    OFFER,
    OPT_CLASSLESS_ROUTES,
    OPT_DNS,
    OPT_DOMAIN_NAME,
    OPT_HOSTNAME,
    OPT_LEASE_TIME,
    OPT_MSG_TYPE,
    OPT_MTU,
    OPT_REBINDING_T2,
    OPT_RENEWAL_T1,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    RELEASE,
    REQUEST,
    SERVER_PORT,
    DhcpMessage,
    opt_classless_routes,
    opt_ips,
    opt_u8,
    opt_u16,
    opt_u32,
    parse_dhcp,
)
from netloom.packet.headers import (
    ETH_BROADCAST,
    ETH_TYPE_IPV4,
    IPPROTO_UDP,
    Ethernet,
    Frame,
    IPv4,
    ParseError,
    Udp,
)
from netloom.packet.util import int_to_ip, int_to_mac
from netloom.sim.result import F_ETH_TYPE, F_IP_PROTO, F_TP_DST, F_TP_SRC

if TYPE_CHECKING:
    from netloom.sim.compiled import CPort, CSubnet
    from netloom.sim.context import Ctx

_NAMES = {
    DISCOVER: "discover",
    REQUEST: "request",
    INFORM: "inform",
    RELEASE: "release",
    DECLINE: "decline",
}


def is_request(c: Ctx) -> bool:
    """A client-to-server DHCP datagram (UDP 68 -> 67). Marks read exactly what it tests,
    in order: the protocol of an IPv4 packet, the destination port of a UDP one, the source
    port only when the destination is the server's (a later fragment has ports 0)."""
    c.read |= F_ETH_TYPE
    if not c.is_ipv4:
        return False
    c.read |= F_IP_PROTO
    if c.proto != IPPROTO_UDP:
        return False
    c.read |= F_TP_DST
    if c.tp_dst != SERVER_PORT:
        return False
    c.read |= F_TP_SRC
    return c.frame.l4 is not None and c.tp_src == CLIENT_PORT


def handle(c: Ctx, port: CPort) -> bool:
    """Serve a DHCP request arriving on bridge port ``port``: True when the bridge's server
    took it. A bridge without a DHCP subnet bridges requests like any packet, so its flows
    never read the protocol for DHCP's sake (the bridge is tagged: a new subnet re-decides)."""
    subnets = c.topo.subnets(port.device_id)
    c.tags.add(port.device_id)
    if subnets is None:
        raise NotYet(("dhcp_subnets", port.device_id))
    if not subnets or not is_request(c):
        return False
    _serve(c, port, subnets)
    return True


def _serve(c: Ctx, port: CPort, subnets: list[CSubnet]) -> None:
    """Answer the request, only for the port's own MAC and address: a client that names
    another MAC in chaddr gets nothing (RFC 2131 4.3.1 lets a server stay silent; Neutron's
    dnsmasq and OVN answer a port for its own MAC only)."""
    c.cacheable = False
    c.consumed = True
    msg = parse_dhcp(c.frame.payload)
    if isinstance(msg, ParseError) or msg.op != BOOTREQUEST:
        c.step("dhcp", port.device_id, "", "drop", "malformed DHCP request")
        return
    if msg.chaddr != port.mac:
        why = f"chaddr {int_to_mac(msg.chaddr)} is not the port's MAC"
        c.step("dhcp", port.device_id, "", "drop", why)
        return
    mtype = msg.msg_type
    lease = _lease(subnets, port)
    if lease is None:
        c.step("dhcp", port.device_id, "", "drop", "no address for this port")
        return
    subnet, ip, hostname = lease
    server = subnet.gateway or (subnet.net + 1)
    reply = _answer(c, msg, mtype, subnet, ip, hostname, server)
    if reply is None:
        c.step("dhcp", port.device_id, "", "ignore", _NAMES.get(mtype or 0, str(mtype)))
        return
    _emit(c, port, msg, reply, server, subnet)


def _lease(subnets: list[CSubnet], port: CPort) -> tuple[CSubnet, int, str] | None:
    """The port's address: a static host of its MAC (one of its fixed IPs, when it has
    any), else its first fixed IP inside a subnet."""
    for s in subnets:
        host = s.hosts.get(port.mac)
        if host is not None and (not port.fixed_ips or host[0] in port.fixed_ips):
            return s, host[0], host[1]
    for s in subnets:
        for ip in sorted(port.fixed_ips):
            if ip & s.mask == s.net:
                return s, ip, ""
    return None


def _answer(
    c: Ctx,
    msg: DhcpMessage,
    mtype: int | None,
    subnet: CSubnet,
    ip: int,
    hostname: str,
    server: int,
) -> DhcpMessage | None:
    """The reply RFC 2131 §4.3 prescribes, or None when the server stays silent."""
    if mtype == DISCOVER:
        return _reply(c, msg, OFFER, subnet, ip, hostname, server)
    if mtype == REQUEST:
        sid = msg.server_id
        if sid is not None and sid != server:
            return None  # the client chose another server (§4.3.2)
        wanted = msg.requested_ip or msg.ciaddr
        if wanted and wanted != ip:
            nak = DhcpMessage(
                BOOTREPLY,
                msg.xid,
                msg.chaddr,
                flags=FLAG_BROADCAST,
                options=[(OPT_MSG_TYPE, opt_u8(NAK)), (OPT_SERVER_ID, opt_u32(server))],
            )
            return nak
        return _reply(c, msg, ACK, subnet, ip, hostname, server)
    if mtype == INFORM:  # §4.3.5: configuration only, no address, no lease
        r = _reply(c, msg, ACK, subnet, ip, hostname, server)
        r.yiaddr = 0
        r.options = [(k, v) for k, v in r.options if k not in (51, 58, 59)]
        return r
    return None  # RELEASE, DECLINE (§4.3.3, §4.3.4): nothing to send


def _reply(
    c: Ctx, msg: DhcpMessage, mtype: int, s: CSubnet, ip: int, hostname: str, server: int
) -> DhcpMessage:
    opts: list[tuple[int, bytes]] = [
        (OPT_MSG_TYPE, opt_u8(mtype)),
        (OPT_SERVER_ID, opt_u32(server)),
        (OPT_LEASE_TIME, opt_u32(s.lease)),
        (OPT_RENEWAL_T1, opt_u32(s.lease // 2)),
        (OPT_REBINDING_T2, opt_u32(s.lease * 7 // 8)),
        (OPT_SUBNET_MASK, opt_u32(s.mask)),
    ]
    if s.gateway:
        opts.append((OPT_ROUTER, opt_u32(s.gateway)))
    if s.dns:
        opts.append((OPT_DNS, opt_ips(s.dns)))
    if hostname:
        opts.append((OPT_HOSTNAME, hostname.encode()))
    if c.cfg.dhcp_domain:
        opts.append((OPT_DOMAIN_NAME, c.cfg.dhcp_domain.encode()))
    opts.append((OPT_MTU, opt_u16(s.mtu or c.cfg.overlay_mtu)))
    routes = list(s.routes)
    if routes and s.gateway:
        routes.append((0, 0, s.gateway))  # RFC 3442 §1: option 3 is ignored next to 121
    if routes:
        opts.append((OPT_CLASSLESS_ROUTES, opt_classless_routes(routes)))
    return DhcpMessage(
        BOOTREPLY,
        msg.xid,
        msg.chaddr,
        ciaddr=msg.ciaddr,
        yiaddr=ip,
        siaddr=0,
        giaddr=msg.giaddr,
        flags=msg.flags,
        options=opts,
    )


def _emit(
    c: Ctx, port: CPort, req: DhcpMessage, reply: DhcpMessage, server: int, s: CSubnet
) -> None:
    """Address the reply as RFC 2131 §4.1 says: to ciaddr when renewing, broadcast when the
    client asked for it (or for a NAK), else unicast to the offered address and chaddr."""
    mtype = reply.msg_type
    if req.ciaddr and mtype != NAK:
        dst_ip, dst_mac = req.ciaddr, req.chaddr
    elif req.flags & FLAG_BROADCAST or mtype == NAK:
        dst_ip, dst_mac = 0xFFFFFFFF, ETH_BROADCAST
    else:
        dst_ip, dst_mac = reply.yiaddr, req.chaddr
    server_mac = _server_mac(c, port, server)
    from netloom.packet.dhcp import build_dhcp

    frame = Frame(
        Ethernet(dst_mac, server_mac, ETH_TYPE_IPV4),
        ip=IPv4(server, dst_ip, IPPROTO_UDP, ttl=64),
        l4=Udp(SERVER_PORT, CLIENT_PORT),
        payload=build_dhcp(reply),
    )
    c.generated.append((port.id, build(frame)))
    names = {OFFER: "offer", ACK: "ack", NAK: "nak"}
    c.step(
        "dhcp",
        port.device_id,
        "",
        names.get(mtype or 0, "reply"),
        f"{int_to_ip(reply.yiaddr)}/{s.plen} to {port.label()}",
    )


def _server_mac(c: Ctx, port: CPort, server: int) -> int:
    """The gateway router port's MAC when the server address is the gateway's, else a
    locally administered MAC derived from the address (stable, never a VM's)."""
    ports = c.topo.ports(port.device_id)
    if ports is not None:
        for p in ports.ports:
            if p.peer_id is not None:
                peer = c.topo.port(p.peer_id)
                if peer is not None and peer.is_router and peer.ip == server:
                    return peer.mac
    return (0x02_00_00 << 24) | (server & 0xFFFFFF)


__all__ = ["handle", "is_request"]
