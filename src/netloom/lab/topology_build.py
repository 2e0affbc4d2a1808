"""Tenant topology built over the lab's API: the default topology of ``lab up`` (one tenant,
a router, a bridge with DHCP, a port per VM bound to its host). Kept apart from the lab's
plumbing: it is the part that plan documents applied by one applier replace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netloom.api.client import ApiClient
from netloom.lab.addressing import TENANT_GW, TENANT_NET, VM_IP_BASE
from netloom.lab.plan import vm_mac
from netloom.lab.state import VmRecord

if TYPE_CHECKING:
    from netloom.lab.lab import Lab


def default_topology(lab: Lab, *, static_ip: bool = True) -> None:
    """Tenant ``<lab>``, router with 10.0.0.1/24 linked to a bridge with DHCP subnet
    10.0.0.0/24 (MTU option = VM MTU, RFC 2132 §5.1), and for each VM a bridge port with its
    MAC and fixed IP, bound to (host id, host-side interface)."""
    api = lab.api()
    ids = lab.state.topology
    for i, v in enumerate(lab.state.vms):
        if v.ip is None:
            ip = f"{TENANT_NET.network_address + VM_IP_BASE + i}/{TENANT_NET.prefixlen}"
            v.ip = ip
    lab.save()
    tenant = ids.get("tenant") or api.create("tenants", {"name": lab.name})["id"]
    router = (
        ids.get("router")
        or api.create("routers", {"tenant_id": tenant, "name": f"{lab.name}-router"})["id"]
    )
    bridge = (
        ids.get("bridge")
        or api.create("bridges", {"tenant_id": tenant, "name": f"{lab.name}-net"})["id"]
    )
    ids.update(tenant=tenant, router=router, bridge=bridge)
    lab.save()
    if "router_port" not in ids:
        rp = api.create(
            "ports",
            {
                "device_id": router,
                "type": "router",
                "mac": vm_mac(lab.name, 0, 1),
                "address": f"{TENANT_GW}/{TENANT_NET.prefixlen}",
            },
        )
        bp = api.create("ports", {"device_id": bridge, "type": "bridge"})
        api.link_ports(rp["id"], bp["id"])
        ids.update(router_port=rp["id"], uplink=bp["id"])
        lab.save()
    if "subnet" not in ids:
        hosts = [
            {"mac": v.mac, "ip": (v.ip or "").split("/")[0], "name": v.name} for v in lab.state.vms
        ]
        sub = api.create(
            "dhcp_subnets",
            {
                "bridge_id": bridge,
                "cidr": str(TENANT_NET),
                "gateway": TENANT_GW,
                "mtu": lab.vm_mtu,
                "hosts": hosts,
            },
        )
        ids["subnet"] = sub["id"]
        lab.save()
    for v in lab.state.vms:
        plug_port(lab, api, bridge, v)
        if static_ip and v.ip:
            lab.set_vm_address(v.name, v.ip)


def plug_port(lab: Lab, api: ApiClient, bridge: str, v: VmRecord) -> None:
    if v.port_id is None:
        port = api.create(
            "ports",
            {
                "device_id": bridge,
                "type": "bridge",
                "name": v.name,
                "mac": v.mac,
                "fixed_ips": [(v.ip or "").split("/")[0]],
            },
        )
        v.port_id = port["id"]
        lab.save()
    host = lab._host(v.host)
    assert v.port_id is not None and host.host_id is not None
    api.bind_port(v.port_id, host.host_id, v.host_if)


__all__ = ["default_topology", "plug_port"]
