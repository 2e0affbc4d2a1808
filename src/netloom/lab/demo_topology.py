"""The demo's tenant topology, built over the lab's API: tenant A's router with two bridges and
DHCP, its stateful security group, tenant B's router and bridge, and a port per VM bound to its
host. Each function takes the running :class:`~netloom.lab.demo.Demo`; this is the part that
plan documents applied by one applier replace."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from netloom.lab.demo_plan import IPERF_PORT, SSH_PORT
from netloom.lab.demo_report import VmResult
from netloom.lab.plan import host_name

if TYPE_CHECKING:
    from netloom.lab.demo import Demo


def create(demo: Demo, role: str, collection: str, data: dict[str, Any]) -> str:
    doc = demo.lab.api().create(collection, data)
    demo.ids[role] = str(doc["id"])
    demo.lab.state.topology[role] = demo.ids[role]
    return demo.ids[role]


def router_with_nets(demo: Demo, tenant: str) -> list[str]:
    """Tenant ``tenant``'s router, one bridge per planned network linked to it, a route per
    network and a DHCP subnet (MTU option = VM MTU, RFC 2132 §5.1) on each bridge."""
    api = demo.lab.api()
    tid = create(demo, f"tenant-{tenant}", "tenants", {"name": f"{demo.lab.name}-{tenant}"})
    router = create(
        demo,
        f"router-{tenant}",
        "routers",
        {"tenant_id": tid, "name": f"{demo.lab.name}-{tenant}-router"},
    )
    lines = []
    for i, net in enumerate(n for n in demo.nets.values() if n.tenant == tenant):
        bridge = create(
            demo,
            f"bridge-{net.key}",
            "bridges",
            {"tenant_id": tid, "name": f"{demo.lab.name}-{net.key}"},
        )
        prefix = net.cidr.split("/")[1]
        rp = create(
            demo,
            f"rport-{net.key}",
            "ports",
            {
                "device_id": router,
                "type": "router",
                "name": f"{net.key}-gw",
                "mac": router_mac(demo.lab.name, tenant, i),
                "address": f"{net.gateway}/{prefix}",
            },
        )
        bp = create(
            demo,
            f"uplink-{net.key}",
            "ports",
            {"device_id": bridge, "type": "bridge", "name": f"{net.key}-up"},
        )
        api.link_ports(rp, bp)
        create(
            demo,
            f"route-{net.key}",
            "routes",
            {"router_id": router, "dst": net.cidr, "next_hop_port_id": rp},
        )
        create(
            demo,
            f"dhcp-{net.key}",
            "dhcp_subnets",
            {
                "bridge_id": bridge,
                "cidr": net.cidr,
                "gateway": net.gateway,
                "mtu": demo.lab.vm_mtu,
            },
        )
        lines.append(f"{net.key}: {net.cidr} gw {net.gateway}, DHCP mtu {demo.lab.vm_mtu}")
    return lines


def step_tenant_a(demo: Demo) -> str:
    lines = router_with_nets(demo, "A")
    security_group(demo)
    lines.append(
        f"security group (stateful) for a4: from-VM accept all (tracked); to-VM "
        f"accept return flows, icmp, dhcp, tcp/{IPERF_PORT}; drop tcp/{SSH_PORT}; "
        "drop the rest"
    )
    return "\n".join(lines)


def security_group(demo: Demo) -> None:
    """Two chains, Neutron-style: ``sg-egress`` (VM -> network) accepts everything and so
    creates the conntrack entries that ``match_return_flow`` recognises on the way back;
    ``sg-ingress`` (network -> VM) lets in return traffic, ICMP, DHCP replies (RFC 2131
    server port 67 -> client 68) and tcp/5201, and drops tcp/22 and everything else."""
    api = demo.lab.api()
    egress = create(demo, "sg-egress", "chains", {"name": "sg-egress"})
    api.create(
        "rules",
        {"chain_id": egress, "position": 0, "action": "accept", "match_return_flow": True},
    )
    api.create("rules", {"chain_id": egress, "position": 1, "action": "accept"})
    ingress = create(demo, "sg-ingress", "chains", {"name": "sg-ingress"})
    rules: list[dict[str, Any]] = [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "nw_proto": 1},
        {
            "action": "accept",
            "nw_proto": 17,
            "tp_src": {"start": 67, "end": 67},
            "tp_dst": {"start": 68, "end": 68},
        },
        {"action": "accept", "nw_proto": 6, "tp_dst": {"start": IPERF_PORT, "end": IPERF_PORT}},
        {"action": "drop", "nw_proto": 6, "tp_dst": {"start": SSH_PORT, "end": SSH_PORT}},
        {"action": "drop"},
    ]
    for pos, rule in enumerate(rules):
        doc = api.create("rules", {"chain_id": ingress, "position": pos, **rule})
        if rule["action"] == "drop" and "tp_dst" in rule:
            demo.ids["sg-drop-ssh"] = str(doc["id"])


def step_tenant_b(demo: Demo) -> str:
    return "\n".join(router_with_nets(demo, "B"))


def step_vms(demo: Demo) -> str:
    api = demo.lab.api()
    lines = []
    for p in demo.plan:
        host = host_name(demo.lab.name, p.host)
        vm = demo.lab.add_vm(host, p.key)
        data: dict[str, Any] = {
            "device_id": demo.ids[f"bridge-{p.net}"],
            "type": "bridge",
            "name": vm.name,
            "mac": vm.mac,
            "fixed_ips": [p.ip],
        }
        if p.sg:
            # inbound = what enters the virtual port from the VM (MidoNet's naming)
            data.update(
                inbound_filter_id=demo.ids["sg-egress"],
                outbound_filter_id=demo.ids["sg-ingress"],
            )
        port = create(demo, f"port-{p.key}", "ports", data)
        hrec = next(h for h in demo.lab.state.hosts if h.name == vm.host)
        assert hrec.host_id is not None
        api.bind_port(port, hrec.host_id, vm.host_if)
        demo.vms[p.key] = VmResult(
            name=vm.name,
            key=p.key,
            tenant=p.tenant,
            host=f"h{p.host}",
            network=p.net,
            mac=vm.mac,
            netns=vm.netns,
            expected_ip=p.ip,
            port_id=port,
        )
        lines.append(
            f"{vm.name:7s} tenant {p.tenant} {p.net:7s} on {vm.host:12s} "
            f"mac {vm.mac}  port {port[:8]} bound to {vm.host_if}"
        )
    return "\n".join(lines)


def router_mac(lab: str, tenant: str, i: int) -> str:
    """Locally administered (0x02) and lab-specific, like the lab's VM MACs."""
    d = hashlib.sha256(f"{lab}/{tenant}".encode()).digest()
    return f"02:{d[0]:02x}:{d[1]:02x}:{d[2]:02x}:fe:{i:02x}"


__all__ = [
    "router_mac",
    "router_with_nets",
    "security_group",
    "step_tenant_a",
    "step_tenant_b",
    "step_vms",
]
