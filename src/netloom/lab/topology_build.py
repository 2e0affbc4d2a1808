"""The default tenant topology of ``lab up``: the bundled plan ``lab`` (one tenant, a router,
a bridge with DHCP and a fixed lease per VM, a port per VM bound to its host), with the lab's
VMs as its parameters, applied by the one applier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netloom.lab.addressing import TENANT_GW, TENANT_NET, VM_IP_BASE
from netloom.lab.gateway_topology import EdgeRouter, gateway_params, nat_filters
from netloom.lab.plan import vm_mac
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan

if TYPE_CHECKING:
    from netloom.lab.lab import Lab

# the plan's handles, kept in the lab's state under these roles
ROLES = ("tenant", "router", "bridge", "router_port", "uplink", "subnet")
# and those of the gateways plan (a lab with gateways)
GATEWAY_ROLES = ("provider", "uplinks", "plink-lab", "tlink-lab")


def default_topology(lab: Lab, *, static_ip: bool = True) -> None:
    """Apply the plan once (a lab that has it already keeps it); then give each VM its
    address statically unless ``static_ip`` is off (DHCP then hands out the same leases)."""
    for i, v in enumerate(lab.state.vms):
        if v.ip is None:
            v.ip = f"{TENANT_NET.network_address + VM_IP_BASE + i}/{TENANT_NET.prefixlen}"
    lab.save()
    ids = lab.state.topology
    if "tenant" not in ids:
        applier = Applier(lab.api(), parse_documents(load_plan("lab").expand(plan_params(lab))))
        applier.run()
        ids.update({role: applier.ids[role] for role in ROLES})
        ids.update(_gateway_ids(lab, applier.ids))
        for v in lab.state.vms:
            v.port_id = applier.ids[f"port-{v.name}"]
        lab.save()
    if static_ip:
        for v in lab.state.vms:
            if v.ip:
                lab.set_vm_address(v.name, v.ip)


def plan_params(lab: Lab) -> dict[str, Any]:
    """The ``lab`` plan's parameters: the lab's name and MTU, and its VMs."""
    hosts = {h.name: h.host_id for h in lab.state.hosts}
    vms = [
        {
            "name": v.name,
            "mac": v.mac,
            "ip": (v.ip or "").split("/")[0],
            "host_id": hosts[v.host],
            "host_if": v.host_if,
        }
        for v in lab.state.vms
    ]
    return {
        **_gateways(lab),
        "lab": lab.name,
        "cidr": str(TENANT_NET),
        "gateway": TENANT_GW,
        "prefixlen": TENANT_NET.prefixlen,
        "router_mac": vm_mac(lab.name, 0, 1),
        "mtu": lab.vm_mtu,
        "dhcp_hosts": [{"mac": v["mac"], "ip": v["ip"], "name": v["name"]} for v in vms],
        "vms": vms,
    }


def _gateway_ids(lab: Lab, ids: dict[str, str]) -> dict[str, str]:
    """The gateway objects' ids by plan handle: provider, its port group and link, each
    uplink port and BGP peer."""
    roles = [r for r in GATEWAY_ROLES if r in ids]
    for u in lab.state.uplinks:
        roles += [f"uplink-gw{u.index}", f"peer-gw{u.index}"]
    return {r: ids[r] for r in roles}


def _gateways(lab: Lab) -> dict[str, Any]:
    """The lab plan's gateway parameters: none without gateways; else the provider router, the
    uplinks and the lab's router linked to it, with its floating IPs and SNAT."""
    s = lab.state
    if s.outside is None or not s.uplinks:
        return {}
    fips = tuple((v.floating_ip, (v.ip or "").split("/")[0]) for v in s.vms if v.floating_ip)
    edge = EdgeRouter("lab", "@router", "@tenant", fips)
    hosts = {h.name: h.host_id or "" for h in s.hosts}
    inbound, outbound = nat_filters("lab")
    return {
        "gateways": gateway_params(lab.name, s.outside, s.uplinks, hosts, [edge]),
        "inbound_filter": inbound,
        "outbound_filter": outbound,
    }


__all__ = ["GATEWAY_ROLES", "default_topology", "plan_params"]
