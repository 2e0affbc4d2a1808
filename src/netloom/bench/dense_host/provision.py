"""The tenant topology ``netloom bench agent100`` provisions through the public API: one
tenant, one router, the bridges, a stateful security group, and one bound port per VM."""

from __future__ import annotations

from typing import Any

from netloom.bench.dense_host.plan import (
    BLOCKED_PORT,
    VmSpec,
    bridge_cidr,
    bridge_gateway,
)
from netloom.bench.procs import IPERF_PORT
from netloom.lab.lab import Lab, vm_mac


def provision(lab: Lab, specs: list[VmSpec], bridges: int) -> dict[str, str]:
    """Tenant, router, bridges (each with its router port, route and DHCP subnet), the
    security group's two chains, then one port per VM, created and bound (Nova's order);
    the port id of each VM by name."""
    api = lab.api()
    tenant = api.create("tenants", {"name": lab.name})["id"]
    router = api.create("routers", {"tenant_id": tenant, "name": f"{lab.name}-r"})["id"]
    lab.state.topology.update(tenant=tenant, router=router)
    bridge_ids = [_bridge(lab, api, tenant, router, b) for b in range(bridges)]
    egress, ingress = _security_group(api, tenant)
    hosts = {h.index: h.host_id for h in lab.state.hosts}
    port_ids: dict[str, str] = {}
    for s in specs:
        vm = lab.vm(s.name)
        port = api.create(
            "ports",
            {
                "device_id": bridge_ids[s.bridge],
                "type": "bridge",
                "name": s.name,
                "mac": vm.mac,
                "fixed_ips": [s.ip],
                # inbound = what enters the virtual port from the VM (MidoNet's naming)
                "inbound_filter_id": egress,
                "outbound_filter_id": ingress,
            },
        )["id"]
        host_id = hosts[s.host]
        assert host_id is not None
        api.bind_port(port, host_id, vm.host_if)
        port_ids[s.name] = port
    for rec in lab.state.vms:  # `netloom lab status` shows each VM's port
        rec.port_id = port_ids.get(rec.name, rec.port_id)
    lab.save()
    return port_ids


def _bridge(lab: Lab, api: Any, tenant: str, router: str, b: int) -> str:
    cidr = bridge_cidr(b)
    gw = bridge_gateway(b)
    bridge = api.create("bridges", {"tenant_id": tenant, "name": f"net{b}"})["id"]
    rp = api.create(
        "ports",
        {
            "device_id": router,
            "type": "router",
            "name": f"net{b}-gw",
            "mac": vm_mac(lab.name, 0, b + 1),
            "address": f"{gw}/{cidr.prefixlen}",
        },
    )["id"]
    bp = api.create("ports", {"device_id": bridge, "type": "bridge", "name": f"net{b}-up"})["id"]
    api.link_ports(rp, bp)
    api.create("routes", {"router_id": router, "dst": str(cidr), "next_hop_port_id": rp})
    api.create(
        "dhcp_subnets",
        {"bridge_id": bridge, "cidr": str(cidr), "gateway": gw, "mtu": lab.vm_mtu},
    )
    return str(bridge)


def _security_group(api: Any, tenant: str) -> tuple[str, str]:
    """Neutron's default-style stateful group: everything out (tracked, so replies come
    back), in only replies, ICMP, DHCP replies (RFC 2131: server 67 -> client 68) and
    tcp/5201; tcp/22 and the rest dropped."""
    egress = api.create("chains", {"tenant_id": tenant, "name": "sg-egress"})["id"]
    api.create(
        "rules",
        {"chain_id": egress, "position": 0, "action": "accept", "match_return_flow": True},
    )
    api.create("rules", {"chain_id": egress, "position": 1, "action": "accept"})
    ingress = api.create("chains", {"tenant_id": tenant, "name": "sg-ingress"})["id"]
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
        {
            "action": "drop",
            "nw_proto": 6,
            "tp_dst": {"start": BLOCKED_PORT, "end": BLOCKED_PORT},
        },
        {"action": "drop"},
    ]
    for pos, rule in enumerate(rules):
        api.create("rules", {"chain_id": ingress, "position": pos, **rule})
    return str(egress), str(ingress)


__all__ = ["provision"]
