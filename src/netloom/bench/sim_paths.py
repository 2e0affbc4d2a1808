"""The paths ``netloom bench sim`` measures: simulations per second on one core.

Three paths, each simulation a NEW flow (the source port, then the destination port, change
every time, and state changes are applied as the agent would, so conntrack and NAT tables
grow and every lookup is a real miss or hit):

* ``l2``: two VMs on one bridge, no filters;
* ``l3_sg``: VM on net1 -> router -> VM on net2, stateful security-group chains on both VM
  ports (the Neutron shape: accept return flows, then the rules, then drop);
* ``fip``: VM -> router -> uplink leaving through its floating IP (1:1 SNAT on the router's
  outbound chain, after a reverse-DNAT rule), SG on the VM port.

Each run measures the whole upcall path: parse the frame bytes, simulate, apply the changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netloom.errors import InvalidInput
from netloom.model.records import (
    Bridge,
    Chain,
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
from netloom.packet import ETH_TYPE_IPV4, Ethernet, Frame, IPv4, Tcp, build, ip_to_int, mac_to_int
from netloom.sim import MemoryTopology, SimState, Verdict, simulate
from netloom.sim.compiled import compiled

NOW = 1000.0


class Scenario:
    """A topology, a state, an ingress port and a frame template whose ports vary."""

    def __init__(self, records: list[Record], in_port: str, frame: Frame, state: SimState) -> None:
        self.view = MemoryTopology(records)
        self.topo = compiled(self.view)
        self.state = state
        self.in_port = in_port
        self.template = bytearray(build(frame))
        # TCP source/destination ports sit right after a 20-byte IPv4 header.
        self.tp_off = 14 + 20
        self.vary_dport = True  # False: only the source port changes (a fixed service)

    def packet(self, i: int) -> bytes:
        t = self.template
        sport = 1024 + i % 60000
        t[self.tp_off : self.tp_off + 2] = sport.to_bytes(2, "big")
        if self.vary_dport:
            dport = 1 + (i // 60000) % 65535
            t[self.tp_off + 2 : self.tp_off + 4] = dport.to_bytes(2, "big")
        return bytes(t)

    def run_one(self, i: int) -> Verdict:
        r = simulate(self.packet(i), self.in_port, self.topo, self.state, NOW)
        self.state.apply(r.changes)
        return r.verdict


def _sg(records: list[Record], name: str) -> tuple[str, str]:
    out_c, in_c = Chain(name=f"{name}-from-vm"), Chain(name=f"{name}-to-vm")
    records += [
        out_c,
        in_c,
        Rule(chain_id=out_c.id, position=0, action="accept", match_return_flow=True),
        Rule(chain_id=out_c.id, position=1, action="accept"),
        Rule(chain_id=in_c.id, position=0, action="accept", match_return_flow=True),
        Rule(chain_id=in_c.id, position=1, action="accept", ethertype=0x0806),
        Rule(
            chain_id=in_c.id,
            position=2,
            action="accept",
            nw_proto=6,
            tp_dst=PortRange(start=1, end=65535),
        ),
        Rule(chain_id=in_c.id, position=3, action="drop"),
    ]
    return out_c.id, in_c.id


def _vm(
    host: Host, bridge: Bridge, vm: tuple[str, str, str], chains: tuple[str, str] | None
) -> Port:
    """A VM port; ``vm`` is (name, MAC, address)."""
    name, mac, ip = vm
    return Port(
        device_id=bridge.id,
        type="bridge",
        name=name,
        mac=mac,
        fixed_ips=[ip],
        host_id=host.id,
        interface_name=f"tap{name}",
        inbound_filter_id=chains[0] if chains else None,
        outbound_filter_id=chains[1] if chains else None,
    )


def _link(records: list[Record], bridge: Bridge, router: Router, addr: str, mac: str) -> Port:
    rid, bid = new_id(), new_id()
    rp = Port(id=rid, device_id=router.id, type="router", mac=mac, address=addr, peer_id=bid)
    records += [rp, Port(id=bid, device_id=bridge.id, type="bridge", peer_id=rid)]
    return rp


def _tcp(src_mac: str, dst_mac: str, src: str, dst: str, dport: int = 80) -> Frame:
    return Frame(
        Ethernet(mac_to_int(dst_mac), mac_to_int(src_mac), ETH_TYPE_IPV4),
        ip=IPv4(ip_to_int(src), ip_to_int(dst), 6, ttl=64),
        l4=Tcp(1024, dport),
        payload=b"x" * 32,
    )


def l2_scenario() -> Scenario:
    host, br = Host(name="h"), Bridge(name="net")
    a = _vm(host, br, ("a", "02:00:00:00:00:0a", "10.0.0.10"), None)
    b = _vm(host, br, ("b", "02:00:00:00:00:0b", "10.0.0.11"), None)
    frame = _tcp("02:00:00:00:00:0a", "02:00:00:00:00:0b", "10.0.0.10", "10.0.0.11")
    return Scenario([host, br, a, b], a.id, frame, SimState())


def routed(
    records: list[Record], sg_a: tuple[str, str], sg_c: tuple[str, str]
) -> tuple[Port, Router, Port]:
    """VM a on net1 -> router r1 -> VM c on net2, r1 with an uplink and a default route; the
    VMs' filter chains are ``sg_a`` and ``sg_c`` (from the VM, to the VM). Returns a, r1 (its
    filters still to set) and the uplink."""
    host = Host(name="h")
    net1, net2, r1 = Bridge(name="net1"), Bridge(name="net2"), Router(name="r1")
    records += [host, net1, net2]
    a = _vm(host, net1, ("a", "02:00:00:00:01:0a", "10.0.1.10"), sg_a)
    c = _vm(host, net2, ("c", "02:00:00:00:02:0a", "10.0.2.10"), sg_c)
    records += [a, c]
    p1 = _link(records, net1, r1, "10.0.1.1/24", "02:00:00:00:ff:01")
    p2 = _link(records, net2, r1, "10.0.2.1/24", "02:00:00:00:ff:02")
    up = Port(
        device_id=r1.id,
        type="router",
        mac="02:00:00:00:ff:03",
        address="203.0.113.2/24",
        host_id=host.id,
        interface_name="uplink",
    )
    records += [
        up,
        Route(router_id=r1.id, dst="10.0.1.0/24", next_hop_port_id=p1.id),
        Route(router_id=r1.id, dst="10.0.2.0/24", next_hop_port_id=p2.id),
        Route(
            router_id=r1.id, dst="0.0.0.0/0", next_hop_port_id=up.id, next_hop_gateway="203.0.113.1"
        ),
    ]
    return a, r1, up


def a_to_c(dport: int = 80) -> Frame:
    """A TCP segment from VM a to VM c through the router (see :func:`routed`)."""
    return _tcp("02:00:00:00:01:0a", "02:00:00:00:ff:01", "10.0.1.10", "10.0.2.10", dport)


def _routed(*, fip: bool) -> Scenario:
    records: list[Record] = []
    sg = _sg(records, "sg")
    a, r1, up = routed(records, sg, sg)
    state = SimState()
    state.arp[("arp", r1.id, ip_to_int("203.0.113.1"))] = (mac_to_int("02:00:00:00:ee:01"), 1e12)
    if fip:
        rin, rout = Chain(name="r1-in"), Chain(name="r1-out")
        r1 = r1.model_copy(update={"inbound_filter_id": rin.id, "outbound_filter_id": rout.id})
        fip_t = [NatTarget(address_from="203.0.113.50", address_to="203.0.113.50")]
        records += [
            rin,
            rout,
            Rule(chain_id=rin.id, position=0, action="reverse-snat", in_port_ids=[up.id]),
            Rule(
                chain_id=rin.id,
                position=1,
                action="dnat",
                in_port_ids=[up.id],
                nw_dst="203.0.113.50/32",
                nat_targets=[NatTarget(address_from="10.0.1.10", address_to="10.0.1.10")],
            ),
            Rule(chain_id=rout.id, position=0, action="reverse-dnat", out_port_ids=[up.id]),
            Rule(
                chain_id=rout.id,
                position=1,
                action="snat",
                out_port_ids=[up.id],
                nw_src="10.0.1.10/32",
                nat_targets=fip_t,
            ),
        ]
        frame = _tcp("02:00:00:00:01:0a", "02:00:00:00:ff:01", "10.0.1.10", "198.51.100.7")
    else:
        frame = a_to_c()
    records.append(r1)
    return Scenario(records, a.id, frame, state)


def l3_sg_scenario() -> Scenario:
    return _routed(fip=False)


def fip_scenario() -> Scenario:
    return _routed(fip=True)


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "l2_per_s": l2_scenario,
    "l3_sg_per_s": l3_sg_scenario,
    "fip_per_s": fip_scenario,
}


def measure(
    make: Callable[[], Scenario], seconds: float, expect: Verdict = Verdict.FORWARD
) -> float:
    """Simulations per second of one scenario, run for ``seconds`` (after a short warm-up)."""
    sc = make()
    for i in range(200):  # warm the compile cache; check the path decides as it should
        got = sc.run_one(i)
        if got is not expect:
            raise InvalidInput(f"bench scenario {make.__name__}: {got}, not {expect}")
    n, i = 0, 1000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            sc.run_one(i)
            i += 1
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


__all__ = ["SCENARIOS", "Scenario", "a_to_c", "l2_scenario", "measure", "routed"]
