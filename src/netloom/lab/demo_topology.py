"""The demo's tenant topology: the bundled plan ``routed-tenants`` (tenant A's router with two
bridges and DHCP and its stateful security group ``stateful-sg``, tenant B's router and bridge
reusing A's first prefix, and a port per VM bound to its host), with the demo's placement as its
parameters, applied in one run of the one applier. The VM namespaces come first: a port is
bound to the host-side interface of its VM."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from netloom.lab.demo_plan import FLOATING_VM, IPERF_PORT, SSH_PORT
from netloom.lab.demo_report import VmResult
from netloom.lab.gateway_topology import EdgeRouter, gateway_params, nat_filters
from netloom.lab.plan import floating_ip, host_name
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan

if TYPE_CHECKING:
    from netloom.lab.demo import Demo

TENANTS = ("A", "B")
EDGE_TENANT = "A"  # linked to the provider router: floating IP and SNAT


def step_vms(demo: Demo) -> str:
    """One namespace per planned VM, plugged into its host (the ports come with the plan)."""
    lines = []
    for p in demo.plan:
        vm = demo.lab.add_vm(host_name(demo.lab.name, p.host), p.key)
        demo.vms[p.key] = VmResult(
            name=vm.name,
            key=p.key,
            tenant=p.tenant,
            host=f"h{p.host}",
            network=p.net,
            mac=vm.mac,
            netns=vm.netns,
            expected_ip=p.ip,
            port_id="",
        )
        lines.append(f"{vm.name:7s} tenant {p.tenant} {p.net:7s} on {vm.host:12s} mac {vm.mac}")
    return "\n".join(lines)


def step_topology(demo: Demo) -> str:
    """Apply the plan; every object's id is kept under its plan handle (``bridge-A-net1``,
    ``port-a4``, ``sg-drop-deny`` ...) in the demo and in the lab's state."""
    params = plan_params(demo)
    applier = Applier(demo.lab.api(), parse_documents(load_plan("routed-tenants").expand(params)))
    applier.run()
    demo.ids.update(applier.ids)
    demo.ids["sg-drop-ssh"] = applier.ids["sg-drop-deny"]
    demo.lab.state.topology.update(applier.ids)
    demo.lab.save()
    lines = [
        f"{n['key']}: {n['cidr']} gw {n['gateway']}, DHCP mtu {params['mtu']}"
        for n in params["networks"]
    ]
    lines.append(
        f"security group (stateful) for a4: from-VM accept all (tracked); to-VM "
        f"accept return flows, icmp, dhcp, tcp/{IPERF_PORT}; drop tcp/{SSH_PORT}; drop the rest"
    )
    for v in demo.vms.values():
        v.port_id = applier.ids[f"port-{v.key}"]
        lines.append(f"{v.name:7s} port {v.port_id[:8]} bound on {v.host}")
    gw = params["gateways"]
    uplinks = ", ".join(f"{u['key']} {u['address']}" for u in gw["uplinks"])
    lines.append(f"provider router: uplinks {uplinks}; BGP peers {gw['uplinks'][0]['peer_as']}")
    for n in gw["nat"]:
        fips = ", ".join(f"{f['floating_ip']} -> {f['fixed_ip']}" for f in n["floating_ips"])
        lines.append(f"tenant A linked to it: floating IP {fips}; SNAT to {n['snat_ip']}")
    lines.append(f"{len(applier.created)} objects from plan routed-tenants (with gateways)")
    return "\n".join(lines)


def plan_params(demo: Demo) -> dict[str, Any]:
    """The ``routed-tenants`` parameters of the demo's networks and VMs."""
    lab = demo.lab
    networks = _networks(demo)
    hosts = {h.name: h.host_id for h in lab.state.hosts}
    vms = []
    for p in demo.plan:
        vm = lab.vm(demo.vms[p.key].name)
        vms.append(
            {
                "key": p.key,
                "name": vm.name,
                "net": p.net,
                "mac": vm.mac,
                "fixed_ips": [p.ip],
                "host_id": hosts[vm.host],
                "host_if": vm.host_if,
                # inbound = what enters the virtual port from the VM (MidoNet's naming)
                "inbound_filter": "@sg-egress" if p.sg else None,
                "outbound_filter": "@sg-ingress" if p.sg else None,
            }
        )
    inbound, outbound = nat_filters(EDGE_TENANT)
    return {
        "mtu": lab.vm_mtu,
        "tenants": [
            {
                "key": t,
                "name": f"{lab.name}-{t}",
                "inbound_filter": inbound if t == EDGE_TENANT else None,
                "outbound_filter": outbound if t == EDGE_TENANT else None,
            }
            for t in TENANTS
        ],
        "gateways": _gateways(demo),
        "networks": networks,
        "security_groups": [
            {
                "prefix": "sg",
                "tenant": "@tenant-A",
                "allow_ports": [IPERF_PORT],
                "deny_port": SSH_PORT,
            }
        ],
        "vms": vms,
    }


def _networks(demo: Demo) -> list[dict[str, Any]]:
    """Each tenant's routed networks (routed-networks' items)."""
    lab = demo.lab
    networks = []
    for tenant in TENANTS:
        for i, net in enumerate(n for n in demo.nets.values() if n.tenant == tenant):
            networks.append(
                {
                    "key": net.key,
                    "name": f"{lab.name}-{net.key}",
                    "tenant": f"@tenant-{tenant}",
                    "router": f"@router-{tenant}",
                    "cidr": net.cidr,
                    "gateway": net.gateway,
                    "prefixlen": int(net.cidr.split("/")[1]),
                    "router_mac": router_mac(lab.name, tenant, i),
                    "dns_servers": [],
                }
            )
    return networks


def _gateways(demo: Demo) -> dict[str, Any]:
    """The provider router with an uplink per gateway host, tenant A's router linked to it,
    a floating IP for a1 and SNAT for A's other VMs."""
    s = demo.lab.state
    assert s.outside is not None
    fixed = next(p.ip for p in demo.plan if p.key == FLOATING_VM)
    edge = EdgeRouter(
        EDGE_TENANT,
        f"@router-{EDGE_TENANT}",
        f"@tenant-{EDGE_TENANT}",
        ((floating_ip(0), fixed),),
    )
    hosts = {h.name: h.host_id or "" for h in s.hosts}
    return gateway_params(demo.lab.name, s.outside, s.uplinks, hosts, [edge])


def router_mac(lab: str, tenant: str, i: int) -> str:
    """Locally administered (0x02) and lab-specific, like the lab's VM MACs."""
    d = hashlib.sha256(f"{lab}/{tenant}".encode()).digest()
    return f"02:{d[0]:02x}:{d[1]:02x}:{d[2]:02x}:fe:{i:02x}"


__all__ = ["plan_params", "router_mac", "step_topology", "step_vms"]
