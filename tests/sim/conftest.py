"""Topology fixtures for simulation tests (faucet style: build, inject, assert what comes out).

The standard lab:

    VM A 10.0.1.10 ─┐                         ┌─ VM C 10.0.2.10 (floating IP 203.0.113.50)
    VM B 10.0.1.11 ─┤ net1 ── router r1 ── net2
                    │         │ uplink 203.0.113.2/24 (exterior, gateway host)
                              └── external router 203.0.113.1

VM ports carry stateful security-group chains: from the VM everything is allowed; to the VM
return traffic, TCP 22, ICMP and UDP from 10/8 are. r1 SNATs net1/net2 to 203.0.113.2 and
maps C 1:1 to 203.0.113.50.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from netloom.model.records import (
    Bridge,
    Chain,
    DhcpSubnet,
    Host,
    NatTarget,
    Port,
    PortRange,
    Record,
    Route,
    Router,
    Rule,
)
from netloom.model.types import new_id
from netloom.packet import (
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    Tcp,
    Udp,
    build,
    ip_to_int,
    mac_to_int,
)
from netloom.sim import MemoryTopology, Result, SimConfig, SimState, deliver, simulate

NOW = 1000.0


@dataclass
class Lab:
    """A topology under construction plus helpers to inject packets into it."""

    records: list[Record] = field(default_factory=list)
    state: SimState = field(default_factory=SimState)
    host: Host = field(default_factory=lambda: Host(name="h1"))
    config: SimConfig = field(default_factory=SimConfig)
    _view: MemoryTopology | None = None
    ports: dict[str, Port] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)
    named: dict[str, Any] = field(default_factory=dict)

    def add(self, rec: Record) -> Any:
        self.records.append(rec)
        if self._view is not None:
            self._view.put(rec)
        return rec

    @property
    def view(self) -> MemoryTopology:
        if self._view is None:
            self._view = MemoryTopology([self.host, *self.records])
        return self._view

    def update(self, rec: Record) -> None:
        self.view.put(rec)

    # -- building ------------------------------------------------------------------------------

    def bridge(self, name: str, **kw: Any) -> Bridge:
        return self.add(Bridge(name=name, **kw))  # type: ignore[no-any-return]

    def router(self, name: str, **kw: Any) -> Router:
        return self.add(Router(name=name, **kw))  # type: ignore[no-any-return]

    def vm(self, bridge: Bridge, name: str, mac: str, ip: str, **kw: Any) -> Port:
        p = Port(
            device_id=bridge.id,
            type="bridge",
            name=name,
            mac=mac,
            fixed_ips=[ip],
            host_id=self.host.id,
            interface_name=f"tap-{name}"[:15],
            **kw,
        )
        self.ports[name] = p
        self.macs[name] = mac
        self.ips[name] = ip
        return self.add(p)  # type: ignore[no-any-return]

    def link(self, bridge: Bridge, router: Router, address: str, mac: str, name: str) -> Port:
        """A router port on ``bridge``'s subnet: the pair of peered interior ports."""
        rid, bid = new_id(), new_id()
        rp = Port(
            id=rid,
            device_id=router.id,
            type="router",
            name=name,
            mac=mac,
            address=address,
            peer_id=bid,
        )
        bp = Port(id=bid, device_id=bridge.id, type="bridge", name=f"{name}-peer", peer_id=rid)
        self.add(rp)
        self.add(bp)
        self.ports[name] = rp
        self.ports[f"{name}-peer"] = bp
        return rp

    def uplink(self, router: Router, address: str, mac: str, name: str) -> Port:
        p = Port(
            device_id=router.id,
            type="router",
            name=name,
            mac=mac,
            address=address,
            host_id=self.host.id,
            interface_name=name[:15],
        )
        self.ports[name] = p
        return self.add(p)  # type: ignore[no-any-return]

    def route(
        self, router: Router, dst: str, port: Port, gw: str | None = None, **kw: Any
    ) -> Route:
        return self.add(  # type: ignore[no-any-return]
            Route(router_id=router.id, dst=dst, next_hop_port_id=port.id, next_hop_gateway=gw, **kw)
        )

    def chain(self, name: str, *rules: dict[str, Any]) -> Chain:
        ch = self.add(Chain(name=name))
        for i, r in enumerate(rules):
            self.add(Rule(chain_id=ch.id, position=i, **r))
        return ch  # type: ignore[no-any-return]

    def rule(self, chain: Chain, position: int, **kw: Any) -> Rule:
        return self.add(Rule(chain_id=chain.id, position=position, **kw))  # type: ignore[no-any-return]

    # -- injecting -----------------------------------------------------------------------------

    def sim(self, port: str | Port, frame: Frame | bytes, now: float = NOW) -> Result:
        if isinstance(port, Port):
            pid = port.id
        else:
            pid = self.ports[port].id if port in self.ports else port
        return simulate(frame, pid, self.view, self.state, now, self.config)

    def run(
        self, port: str, frame: Frame, apply: bool = True
    ) -> tuple[Result, list[tuple[str, Frame]]]:
        """Simulate, apply state changes, and return what comes out where (port name, frame)."""
        from netloom.packet import parse

        r = self.sim(port, frame)
        data = build(frame)
        if (
            apply
        ):  # state first, as the agent pushes keys before the packet (flow state between hosts)
            self.state.apply(r.changes)
        out = deliver(r, data, self.view, self.state, NOW, self.config)
        names = {p.id: n for n, p in self.ports.items()}
        parsed = []
        for pid, b in out:
            f = parse(b)
            assert isinstance(f, Frame), f
            parsed.append((names.get(pid, pid), f))
        return r, parsed


# ---- packet helpers ---------------------------------------------------------------------------


def eth(src: str, dst: str, etype: int = ETH_TYPE_IPV4) -> Ethernet:
    return Ethernet(mac_to_int(dst), mac_to_int(src), etype)


def udp(
    smac: str,
    dmac: str,
    src: str,
    dst: str,
    sport: int = 40000,
    dport: int = 53,
    ttl: int = 64,
    payload: bytes = b"hello",
) -> Frame:
    ip = IPv4(ip_to_int(src), ip_to_int(dst), IPPROTO_UDP, ttl=ttl)
    return Frame(eth(smac, dmac), ip=ip, l4=Udp(sport, dport), payload=payload)


def tcp(
    smac: str,
    dmac: str,
    src: str,
    dst: str,
    sport: int = 40000,
    dport: int = 22,
    ttl: int = 64,
    flags: int = 0x02,
    df: bool = False,
    payload: bytes = b"",
) -> Frame:
    ip = IPv4(ip_to_int(src), ip_to_int(dst), IPPROTO_TCP, ttl=ttl, flags=0x2 if df else 0)
    return Frame(eth(smac, dmac), ip=ip, l4=Tcp(sport, dport, flags=flags), payload=payload)


def ping(
    smac: str, dmac: str, src: str, dst: str, ident: int = 7, ttl: int = 64, itype: int = 8
) -> Frame:
    ip = IPv4(ip_to_int(src), ip_to_int(dst), IPPROTO_ICMP, ttl=ttl)
    return Frame(eth(smac, dmac), ip=ip, l4=Icmp(itype, 0, (ident << 16) | 1), payload=b"ping")


def arp_request(smac: str, sip: str, tip: str) -> Frame:
    a = Arp(ARP_REQUEST, mac_to_int(smac), ip_to_int(sip), 0, ip_to_int(tip))
    return Frame(Ethernet(ETH_BROADCAST, mac_to_int(smac), ETH_TYPE_ARP), arp=a)


# ---- the standard lab -------------------------------------------------------------------------

MAC_A, MAC_B, MAC_C = "02:00:00:00:01:0a", "02:00:00:00:01:0b", "02:00:00:00:02:0a"
MAC_R1, MAC_R2, MAC_UP = "02:00:00:00:ff:01", "02:00:00:00:ff:02", "02:00:00:00:ff:03"
MAC_EXT = "02:00:00:00:ee:01"
IP_A, IP_B, IP_C = "10.0.1.10", "10.0.1.11", "10.0.2.10"
GW1, GW2, UPLINK_IP, EXT_GW = "10.0.1.1", "10.0.2.1", "203.0.113.2", "203.0.113.1"
FIP_C = "203.0.113.50"
REMOTE = "198.51.100.7"


def security_group(lab: Lab, name: str) -> tuple[Chain, Chain]:
    """Stateful SG chains: (from the VM, to the VM)."""
    egress = lab.chain(
        f"{name}-from-vm", {"action": "accept", "match_return_flow": True}, {"action": "accept"}
    )
    ingress = lab.chain(
        f"{name}-to-vm",
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "ethertype": ETH_TYPE_ARP},
        {"action": "accept", "nw_proto": 6, "tp_dst": PortRange(start=22, end=22)},
        {"action": "accept", "nw_proto": 1},
        {"action": "accept", "nw_proto": 17, "nw_src": "10.0.0.0/8"},
        {"action": "drop"},
    )
    return egress, ingress


def edge_router(lab: Lab, net1: Bridge, net2: Bridge) -> tuple[Router, Chain, Chain, Port]:
    """r1 with empty inbound/outbound chains, linked to net1 (GW1) and net2 (GW2), an uplink
    (UPLINK_IP) and routes to both networks plus a default route via EXT_GW."""
    rin, rout = lab.add(Chain(name="r1-in")), lab.add(Chain(name="r1-out"))
    r1 = lab.router("r1", inbound_filter_id=rin.id, outbound_filter_id=rout.id)
    p1 = lab.link(net1, r1, f"{GW1}/24", MAC_R1, "r1-net1")
    p2 = lab.link(net2, r1, f"{GW2}/24", MAC_R2, "r1-net2")
    up = lab.uplink(r1, f"{UPLINK_IP}/24", MAC_UP, "uplink")
    lab.route(r1, "10.0.1.0/24", p1)
    lab.route(r1, "10.0.2.0/24", p2)
    lab.route(r1, "0.0.0.0/0", up, gw=EXT_GW)
    return r1, rin, rout, up


def standard_lab() -> Lab:
    lab = Lab()
    net1, net2 = lab.bridge("net1"), lab.bridge("net2")
    sg_out, sg_in = security_group(lab, "sg")
    for name, br, mac, ip in (
        ("A", net1, MAC_A, IP_A),
        ("B", net1, MAC_B, IP_B),
        ("C", net2, MAC_C, IP_C),
    ):
        lab.vm(br, name, mac, ip, inbound_filter_id=sg_out.id, outbound_filter_id=sg_in.id)
    r1, rin, rout, up = edge_router(lab, net1, net2)
    lab.route(r1, "203.0.113.0/24", up)
    # NAT: reverse first, then the floating IP of C, then SNAT of the tenant networks.
    lab.rule(rin, 0, action="reverse-snat", in_port_ids=[up.id])
    lab.rule(
        rin,
        1,
        action="dnat",
        in_port_ids=[up.id],
        nw_dst=f"{FIP_C}/32",
        nat_targets=[NatTarget(address_from=IP_C, address_to=IP_C)],
    )
    lab.rule(rout, 0, action="reverse-dnat", out_port_ids=[up.id])
    lab.rule(
        rout,
        1,
        action="snat",
        out_port_ids=[up.id],
        nw_src=f"{IP_C}/32",
        nat_targets=[NatTarget(address_from=FIP_C, address_to=FIP_C)],
    )
    lab.rule(
        rout,
        2,
        action="snat",
        out_port_ids=[up.id],
        nw_src="10.0.0.0/8",
        nat_targets=[
            NatTarget(address_from=UPLINK_IP, address_to=UPLINK_IP, port_from=1024, port_to=65535)
        ],
    )
    lab.state.lease_snat_block(r1.id, ip_to_int(UPLINK_IP), 1024, 1087)
    lab.state.arp[("arp", r1.id, ip_to_int(EXT_GW))] = (mac_to_int(MAC_EXT), 1e12)
    lab.named.update(r1=r1, net1=net1, net2=net2, rin=rin, rout=rout, sg_in=sg_in, sg_out=sg_out)
    return lab


@pytest.fixture
def lab() -> Lab:
    return standard_lab()


def dhcp_subnet(bridge: Bridge, **kw: Any) -> DhcpSubnet:
    return DhcpSubnet(bridge_id=bridge.id, **kw)


def static_fip_lab(tenant_snat: bool = False) -> Lab:
    """C (no security group) behind r1 with the floating IP FIP_C as *static* NAT rules, in the
    chain shape the bench uses (unconditional reverse rules first); with ``tenant_snat`` the
    router also SNATs 10.0.0.0/8 statefully to UPLINK_IP through a port range (A on net1)."""
    lab = Lab()
    net1, net2 = lab.bridge("net1"), lab.bridge("net2")
    lab.vm(net1, "A", MAC_A, IP_A)
    lab.vm(net2, "C", MAC_C, IP_C)
    r1, rin, rout, up = edge_router(lab, net1, net2)
    lab.rule(rin, 0, action="reverse-snat", in_port_ids=[up.id])
    lab.rule(
        rin,
        1,
        action="dnat",
        static=True,
        in_port_ids=[up.id],
        nw_dst=f"{FIP_C}/32",
        nat_targets=[NatTarget(address_from=IP_C, address_to=IP_C)],
    )
    lab.rule(rout, 0, action="reverse-dnat", out_port_ids=[up.id])
    lab.rule(
        rout,
        1,
        action="snat",
        static=True,
        out_port_ids=[up.id],
        nw_src=f"{IP_C}/32",
        nat_targets=[NatTarget(address_from=FIP_C, address_to=FIP_C)],
    )
    if tenant_snat:
        lab.rule(
            rout,
            2,
            action="snat",
            out_port_ids=[up.id],
            nw_src="10.0.0.0/8",
            nat_targets=[
                NatTarget(
                    address_from=UPLINK_IP, address_to=UPLINK_IP, port_from=1024, port_to=65535
                )
            ],
        )
        lab.state.lease_snat_block(r1.id, ip_to_int(UPLINK_IP), 1024, 1087)
    lab.state.arp[("arp", r1.id, ip_to_int(EXT_GW))] = (mac_to_int(MAC_EXT), 1e12)
    lab.named.update(r1=r1, rin=rin, rout=rout, net1=net1, net2=net2)
    return lab
