"""A VM with a floating IP opening connections outward through a router whose NAT chains have
the Neutron translation's shape, on the datapath's conntrack: every reply comes back, whatever
the connection's ports (the replies meet only the floating IP's static DNAT, so the datapath
must have committed each connection on its way out)."""

from __future__ import annotations

import pytest

from netloom.packet import ip_to_int
from netloom.sim import SimConfig

from .agentlab import IP, MAC_R1, MAC_R2, Cluster, applied, cluster, run, tcp

pytestmark = pytest.mark.unit
FIP, SNAT_IP = "10.0.2.250", "10.0.2.240"  # on net2, the "external" network
SYN, SYN_ACK = 0x02, 0x12


def _neutron_nat(c: Cluster, *, to_gateway: bool) -> None:
    """r1 as the translation builds it, net2 standing for the external network: in, a static
    DNAT of A's floating IP then reverse SNAT (``to_gateway``: only for the SNAT address); out,
    a static SNAT of A then port-block SNAT of the rest, toward net2."""
    p2 = next(d["id"] for d, _ in c.svc.list("port") if d.get("name") == "r1-net2")
    cin, cout = c.create("chain", name="nat-in"), c.create("chain", name="nat-out")
    c.create("rule", chain_id=cin, position=0, action="dnat", static=True, nw_dst=f"{FIP}/32",
             nat_targets=[{"address_from": IP["A"], "address_to": IP["A"]}])  # fmt: skip
    cond = {"nw_dst": f"{SNAT_IP}/32"} if to_gateway else {}
    c.create("rule", chain_id=cin, position=1, action="reverse-snat", **cond)
    to_fip = [{"address_from": FIP, "address_to": FIP}]
    c.create("rule", chain_id=cout, position=0, action="snat", static=True, out_port_ids=[p2],
             nw_src=f"{IP['A']}/32", nat_targets=to_fip)  # fmt: skip
    ports = {"address_from": SNAT_IP, "address_to": SNAT_IP, "port_from": 1024, "port_to": 65535}
    c.create("rule", chain_id=cout, position=1, action="snat", out_port_ids=[p2],
             nat_targets=[ports])  # fmt: skip
    c.svc.update("router", c.ids["r1"], {"inbound_filter_id": cin, "outbound_filter_id": cout})


def _upcalls(c: Cluster) -> int:
    return sum(n.agent.stats["upcalls"] for n in c.nodes.values())


@pytest.mark.parametrize("reverse_snat", ["any", "to-gateway"])
def test_every_connection_out_of_a_floating_ip_gets_its_reply(reverse_snat: str) -> None:
    to_gateway = reverse_snat == "to-gateway"

    async def scenario() -> None:
        async with cluster(sim=SimConfig(kernel_conntrack=True)) as c:
            _neutron_nat(c, to_gateway=to_gateway)
            await applied(c, "h1", "h2")
            counts = []
            for sport in range(41000, 41008):
                before = _upcalls(c)
                await c.send("A", tcp("A", IP["C"], MAC_R1, sport, 22, SYN))
                [syn] = c.got("C")
                assert syn.ip is not None and syn.ip.src == ip_to_int(FIP)
                await c.send("C", tcp("C", FIP, MAC_R2, 22, sport, SYN_ACK))
                [back] = c.got("A")
                assert back.ip is not None and back.ip.dst == ip_to_int(IP["A"]), sport
                counts.append(_upcalls(c) - before)
            if to_gateway:  # nothing reads the ports: later connections are the first's flows
                assert counts[2:] == [0] * 6, counts

    run(scenario())
