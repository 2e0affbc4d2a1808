"""Agent test harness: an in-process cluster, store, object service, topology server on
127.0.0.1:0, and agents on memory datapaths joined by a fake underlay.

The fake underlay reads what each memory datapath sent (``MemoryDatapath.sent``): a TUNNEL
outcome is handed to the datapath of the agent whose underlay IP is the outcome's remote, on
its tunnel port with the VNI (what the kernel's collect_md VXLAN device would do); an OUTPUT
outcome on a VM port is a frame delivered to that VM. Flow-state pushes go straight to the
target agent (the UDP channel's job on real hosts).

Tenant topology (one router, two bridges)::

    A 10.0.1.10 (h1) ─┐                        ┌─ C 10.0.2.10 (h2)
    E 10.0.1.12 (h1) ─┤ net1 ── r1 ── net2 ────┤
    B 10.0.1.11 (h1) ─┘  .1            .1      └─ D 10.0.2.11 (h3)

C's to-VM chain accepts ICMP and TCP/22 and drops the rest; A's chains are a stateful SG
(from A: everything, tracked; to A: return traffic, ICMP and TCP/22).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from netloom.agent.core import Agent, AgentConfig, PushState
from netloom.agent.driver import AgentDriver
from netloom.api.reports import ClusterReports
from netloom.api.service import ObjectService
from netloom.datapath.base import Fate
from netloom.datapath.memory import MemoryDatapath
from netloom.insights.simlog import SimLogStore
from netloom.packet import (
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
    parse,
)
from netloom.store.memory import MemoryStore
from netloom.topology.client import TopologyClient
from netloom.topology.server import TopologyServer
from waiting import eventually


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


@dataclass
class Node:
    name: str
    host_id: str
    ip: str
    dp: MemoryDatapath
    agent: Agent
    driver: AgentDriver
    seen: int = 0  # how much of dp.sent the underlay has handled


@dataclass
class Vm:
    name: str
    port_id: str
    node: Node
    mac: str
    ip: str
    ifname: str

    @property
    def dp_port(self) -> int:
        return self.node.agent.dp_port_of(self.port_id)


@dataclass
class Cluster:
    store: MemoryStore
    svc: ObjectService
    server: TopologyServer
    port: int
    nodes: dict[str, Node] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    delivered: dict[str, list[bytes]] = field(default_factory=dict)
    pushes: int = 0
    simlog: SimLogStore = field(default_factory=lambda: SimLogStore(None))

    # -- topology helpers --------------------------------------------------------------------

    def create(self, kind: str, **data: Any) -> str:
        doc, _ = self.svc.create(kind, data)
        return str(doc["id"])

    def port_doc(self, port_id: str) -> dict[str, Any]:
        return self.svc.get("port", port_id)[0]

    # -- agents ------------------------------------------------------------------------------

    async def add_node(self, name: str, ip: str, **cfg: Any) -> Node:
        host_id = self.ids[name]
        dp = MemoryDatapath()
        agent = Agent(AgentConfig(host_id, **cfg), dp)
        client = TopologyClient(host_id, ("127.0.0.1", self.port))
        node_ref: list[Node] = []

        def push(req: PushState) -> None:
            self.pushes += 1
            target = next(n for n in self.nodes.values() if n.host_id == req.host_id)
            target.driver.receive_state(req)

        driver = AgentDriver(
            agent, client, metrics_port=None, state_port=None, push_state=push, tick_s=0.2
        )
        node = Node(name, host_id, ip, dp, agent, driver)
        node_ref.append(node)
        self.nodes[name] = node
        await driver.start()
        return node

    def node_by_ip(self, ip: int) -> Node:
        return next(n for n in self.nodes.values() if ip_to_int(n.ip) == ip)

    # -- the fake underlay -------------------------------------------------------------------

    def _carry(self) -> bool:
        moved = False
        for node in list(self.nodes.values()):
            while node.seen < len(node.dp.sent):
                o = node.dp.sent[node.seen]
                node.seen += 1
                moved = True
                if o.fate is Fate.TUNNEL:
                    peer = self.node_by_ip(o.remote)
                    peer.dp.receive(o.packet, peer.agent.tunnel_port, tun_key=o.vni)
                elif o.fate is Fate.OUTPUT:
                    vm = self._vm_at(node, o.port)
                    if vm is not None:
                        self.delivered.setdefault(vm.name, []).append(o.packet)
        return moved

    def _vm_at(self, node: Node, dp_port: int) -> Vm | None:
        for vm in self.vms.values():
            if vm.node is node and vm.dp_port == dp_port:
                return vm
        return None

    async def pump(self, timeout: float = 5.0) -> None:
        """Run agents and the underlay until nothing moves."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes.values():
                await node.driver.settle(timeout=max(0.1, deadline - time.monotonic()))
            if not self._carry() and not any(n.dp._upcalls for n in self.nodes.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("cluster did not settle")

    async def send(self, vm: str, frame: Frame | bytes) -> None:
        """VM ``vm`` sends ``frame``; everything it causes happens before this returns."""
        v = self.vms[vm]
        data = frame if isinstance(frame, bytes) else build(frame)
        v.node.dp.receive(data, v.dp_port)
        await self.pump()

    def got(self, vm: str) -> list[Frame]:
        """Frames delivered to ``vm`` since the last call (parsed)."""
        raw = self.delivered.pop(vm, [])
        out = []
        for b in raw:
            f = parse(b)
            assert isinstance(f, Frame), f
            out.append(f)
        return out


async def applied(c: Cluster, *nodes: str, timeout: float = 5.0) -> None:
    """Wait until the agents on ``nodes`` have applied every store change made so far: each
    topology client is complete up to the store's revision (its listeners, the agent's
    invalidation among them, ran before the revision moved) and nothing is left in flight."""
    rev = c.store.revision()
    for name in nodes:
        driver = c.nodes[name].driver

        def applied(d: Any = driver) -> bool:
            return bool((d.client.revision or 0) >= rev)

        await eventually(
            applied,
            timeout,
            f"{name} to apply revision {rev}",
        )
        await driver.settle(timeout)


# ---- the tenant ----------------------------------------------------------------------------

MAC = {
    "A": "02:00:00:00:01:0a",
    "B": "02:00:00:00:01:0b",
    "E": "02:00:00:00:01:0e",
    "C": "02:00:00:00:02:0a",
    "D": "02:00:00:00:02:0b",
}
IP = {"A": "10.0.1.10", "B": "10.0.1.11", "E": "10.0.1.12", "C": "10.0.2.10", "D": "10.0.2.11"}
HOST_OF = {"A": "h1", "E": "h1", "B": "h1", "C": "h2", "D": "h3"}
UNDERLAY = {"h1": "192.0.2.1", "h2": "192.0.2.2", "h3": "192.0.2.3"}
MAC_R1, MAC_R2 = "02:00:00:00:ff:01", "02:00:00:00:ff:02"
GW1, GW2 = "10.0.1.1", "10.0.2.1"


def build_tenant(c: Cluster, *, dhcp: bool = True) -> None:
    for h in UNDERLAY:
        c.ids[h] = c.create("host", name=h)
    c.ids["tz"] = c.create(
        "tunnel_zone",
        name="tz",
        members=[{"host_id": c.ids[h], "ip": ip} for h, ip in UNDERLAY.items()],
    )
    c.ids["other"] = c.create("bridge", name="unrelated")  # never reached: never loaded
    net1, net2 = c.create("bridge", name="net1"), c.create("bridge", name="net2")
    r1 = c.create("router", name="r1")
    c.ids.update(net1=net1, net2=net2, r1=r1)
    if dhcp:
        c.ids["dhcp1"] = c.create(
            "dhcp_subnet", bridge_id=net1, cidr="10.0.1.0/24", gateway=GW1, dns_servers=["10.0.1.1"]
        )
    # A: stateful SG; C: stateless allow-list (ICMP, TCP/22)
    a_out = c.create("chain", name="a-from-vm")
    c.create("rule", chain_id=a_out, position=0, action="accept", match_return_flow=True)
    c.create("rule", chain_id=a_out, position=1, action="accept")
    a_in = c.create("chain", name="a-to-vm")
    c.create("rule", chain_id=a_in, position=0, action="accept", match_return_flow=True)
    c.create("rule", chain_id=a_in, position=1, action="accept", nw_proto=IPPROTO_ICMP)
    c.create("rule", chain_id=a_in, position=2, action="drop")
    c_in = c.create("chain", name="c-to-vm")
    c.ids["c_icmp"] = c.create(
        "rule", chain_id=c_in, position=0, action="accept", nw_proto=IPPROTO_ICMP
    )
    c.ids["c_ssh"] = c.create(
        "rule",
        chain_id=c_in,
        position=1,
        action="accept",
        nw_proto=IPPROTO_TCP,
        tp_dst={"start": 22, "end": 22},
    )
    c.create("rule", chain_id=c_in, position=2, action="drop")
    c.ids.update(a_out=a_out, a_in=a_in, c_in=c_in)
    for name in ("A", "B", "E", "C", "D"):
        br = net1 if IP[name].startswith("10.0.1.") else net2
        extra: dict[str, Any] = {}
        if name == "A":
            extra = {"inbound_filter_id": a_out, "outbound_filter_id": a_in}
        elif name == "C":
            extra = {"outbound_filter_id": c_in}
        elif name in ("B", "E"):
            extra = {"port_security_enabled": False}  # may send from any MAC (MAC-move test)
        c.ids[name] = c.create(
            "port",
            device_id=br,
            type="bridge",
            name=name,
            mac=MAC[name],
            fixed_ips=[IP[name]],
            **extra,
        )
    p1 = c.create(
        "port", device_id=r1, type="router", name="r1-net1", mac=MAC_R1, address=f"{GW1}/24"
    )
    p2 = c.create(
        "port", device_id=r1, type="router", name="r1-net2", mac=MAC_R2, address=f"{GW2}/24"
    )
    b1 = c.create("port", device_id=net1, type="bridge", name="net1-r1")
    b2 = c.create("port", device_id=net2, type="bridge", name="net2-r1")
    c.svc.link_ports(p1, b1)
    c.svc.link_ports(p2, b2)
    c.ids["route1"] = c.create("route", router_id=r1, dst="10.0.1.0/24", next_hop_port_id=p1)
    c.ids["route2"] = c.create("route", router_id=r1, dst="10.0.2.0/24", next_hop_port_id=p2)


async def bind_all(c: Cluster) -> None:
    for name, h in HOST_OF.items():
        ifname = f"tap-{name.lower()}"
        c.svc.bind_port(c.ids[name], c.ids[h], ifname)
    for name, h in HOST_OF.items():
        node = c.nodes[h]
        c.vms[name] = Vm(name, c.ids[name], node, MAC[name], IP[name], f"tap-{name.lower()}")
    await eventually(lambda: all(v.dp_port for v in c.vms.values()), what="ports plugged")
    await eventually(
        lambda: all(n.agent.tunnel_port and len(n.agent.peers) == 2 for n in c.nodes.values()),
        what="tunnel peers",
    )


@asynccontextmanager
async def cluster(*, dhcp: bool = True, **agent_cfg: Any) -> AsyncIterator[Cluster]:
    store = MemoryStore()
    svc = ObjectService(store)
    simlog = SimLogStore(None)  # every agent's simulation log, as the cluster keeps it
    server = TopologyServer(store, reports=ClusterReports(svc), insights=simlog)
    port = await server.start("127.0.0.1", 0)
    c = Cluster(store, svc, server, port, simlog=simlog)
    try:
        build_tenant(c, dhcp=dhcp)
        for h, ip in UNDERLAY.items():
            await c.add_node(h, ip, **agent_cfg)
        await bind_all(c)
        yield c
    finally:
        for n in c.nodes.values():
            await n.driver.stop()
        await server.stop()
        simlog.close()


# ---- frames -----------------------------------------------------------------------------------


def eth(src: str, dst: str, etype: int = ETH_TYPE_IPV4) -> Ethernet:
    return Ethernet(mac_to_int(dst), mac_to_int(src), etype)


def ping(
    src: str,
    dst_ip: str,
    dst_mac: str,
    ident: int = 7,
    seq: int = 1,
    itype: int = 8,
    src_ip: str | None = None,
    src_mac: str | None = None,
) -> Frame:
    ip = IPv4(ip_to_int(src_ip or IP[src]), ip_to_int(dst_ip), IPPROTO_ICMP, ttl=64)
    return Frame(
        eth(src_mac or MAC[src], dst_mac),
        ip=ip,
        l4=Icmp(itype, 0, (ident << 16) | seq),
        payload=b"ping",
    )


def tcp(
    src: str,
    dst_ip: str,
    dst_mac: str,
    sport: int,
    dport: int,
    flags: int = 0x02,
    src_ip: str | None = None,
    src_mac: str | None = None,
) -> Frame:
    ip = IPv4(ip_to_int(src_ip or IP[src]), ip_to_int(dst_ip), IPPROTO_TCP, ttl=64)
    return Frame(eth(src_mac or MAC[src], dst_mac), ip=ip, l4=Tcp(sport, dport, flags=flags))


def udp(src: str, dst_ip: str, dst_mac: str, sport: int, dport: int) -> Frame:
    ip = IPv4(ip_to_int(IP[src]), ip_to_int(dst_ip), IPPROTO_UDP, ttl=64)
    return Frame(eth(MAC[src], dst_mac), ip=ip, l4=Udp(sport, dport), payload=b"x")


def arp_request(src: str, tip: str) -> Frame:
    a = Arp(1, mac_to_int(MAC[src]), ip_to_int(IP[src]), 0, ip_to_int(tip))
    return Frame(Ethernet(ETH_BROADCAST, mac_to_int(MAC[src]), ETH_TYPE_ARP), arp=a)


__all__ = [
    "GW1",
    "GW2",
    "HOST_OF",
    "IP",
    "MAC",
    "MAC_R1",
    "MAC_R2",
    "UNDERLAY",
    "Cluster",
    "Node",
    "Vm",
    "arp_request",
    "cluster",
    "eventually",
    "ping",
    "run",
    "tcp",
    "udp",
]
