"""The tenant topology ``netloom bench agent100`` provisions: the bundled plan
``routed-tenants`` (one tenant, one router, the bridges, the stateful security group
``stateful-sg``, one bound port per VM) with this bench's placement as its parameters."""

from __future__ import annotations

from typing import Any

from netloom.api.client import ApiClient
from netloom.bench.dense_host.plan import BLOCKED_PORT, VmSpec, bridge_cidr, bridge_gateway
from netloom.bench.procs import IPERF_PORT
from netloom.lab.lab import Lab
from netloom.lab.plan import vm_mac
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan

TENANT = "dense"  # the plan's tenant key: handles tenant-dense, router-dense


def plan_params(lab: Lab, specs: list[VmSpec], bridges: int) -> dict[str, Any]:
    """The ``routed-tenants`` parameters: bridges ``net<b>`` behind one router, every VM
    port filtered by the stateful group (tcp/IPERF_PORT in, tcp/BLOCKED_PORT dropped)."""
    hosts = {h.index: h.host_id for h in lab.state.hosts}
    networks = [
        {
            "key": f"net{b}",
            "name": f"net{b}",
            "tenant": f"@tenant-{TENANT}",
            "router": f"@router-{TENANT}",
            "cidr": str(bridge_cidr(b)),
            "gateway": bridge_gateway(b),
            "prefixlen": bridge_cidr(b).prefixlen,
            "router_mac": vm_mac(lab.name, 0, b + 1),
            "dns_servers": [],
        }
        for b in range(bridges)
    ]
    vms = [
        {
            "key": s.name,
            "name": s.name,
            "net": f"net{s.bridge}",
            "mac": lab.vm(s.name).mac,
            "fixed_ips": [s.ip],
            "host_id": hosts[s.host],
            "host_if": lab.vm(s.name).host_if,
            "inbound_filter": "@sg-egress",
            "outbound_filter": "@sg-ingress",
        }
        for s in specs
    ]
    return {
        "mtu": lab.vm_mtu,
        "tenants": [
            {"key": TENANT, "name": lab.name, "inbound_filter": None, "outbound_filter": None}
        ],
        "networks": networks,
        "security_groups": [
            {
                "prefix": "sg",
                "tenant": f"@tenant-{TENANT}",
                "allow_ports": [IPERF_PORT],
                "deny_port": BLOCKED_PORT,
            }
        ],
        "vms": vms,
    }


def provision(lab: Lab, specs: list[VmSpec], bridges: int) -> dict[str, str]:
    """Apply the plan (each VM's port is created bound to its host's interface); the port id
    of each VM by name."""
    docs = load_plan("routed-tenants").expand(plan_params(lab, specs, bridges))
    api: ApiClient = lab.api()
    applier = Applier(api, parse_documents(docs))
    applier.run()
    ids = applier.ids
    lab.state.topology.update(tenant=ids[f"tenant-{TENANT}"], router=ids[f"router-{TENANT}"])
    port_ids = {s.name: ids[f"port-{s.name}"] for s in specs}
    for rec in lab.state.vms:  # `netloom lab status` shows each VM's port
        rec.port_id = port_ids.get(rec.name, rec.port_id)
    lab.save()
    return port_ids


__all__ = ["plan_params", "provision"]
