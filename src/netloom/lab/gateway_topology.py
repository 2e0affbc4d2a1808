"""The gateways plan's parameters (bundled plan ``gateways``): the provider router with one
uplink port per gateway host, a BGP session per uplink to the lab's upstream router, the public
range it advertises, and the tenant routers linked to it with their floating IPs and SNAT
address. Pure: the lab (``lab up --gateways N``) and the demo pass what they built."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netloom.lab.addressing import BGP_HOLD_TIME, BGP_KEEPALIVE, PUBLIC_NET
from netloom.lab.plan import snat_ip, transit_addresses
from netloom.lab.state import OutsideRecord, UplinkRecord

UPLINK_MAC, PROVIDER_LINK_MAC, TENANT_LINK_MAC = 1, 2, 3


@dataclass(frozen=True)
class EdgeRouter:
    """A tenant router to link to the provider: its plan handle or id, its tenant (for its
    NAT chains) and its floating IPs as (floating IP, fixed IP) pairs."""

    key: str
    router: str
    tenant: str | None
    floating_ips: tuple[tuple[str, str], ...] = ()


def edge_mac(lab: str, role: int, index: int) -> str:
    """A locally administered MAC of the gateway plan's router ports, lab-specific like the
    lab's VM MACs (:func:`netloom.lab.plan.vm_mac`, whose fourth byte is 0)."""
    d = hashlib.sha256(lab.encode()).digest()
    return f"02:{d[0]:02x}:{d[1]:02x}:fd:{role:02x}:{index:02x}"


def gateway_params(
    lab: str,
    outside: OutsideRecord,
    uplinks: Sequence[UplinkRecord],
    host_ids: Mapping[str, str],
    routers: Sequence[EdgeRouter],
) -> dict[str, Any]:
    """The ``gateways`` plan's parameters; ``host_ids`` maps a gateway host's name to its id."""
    return {
        "name": f"{lab}-provider",
        "tenant": None,
        "uplinks": [
            {
                "key": f"gw{u.index}",
                "host_id": host_ids[u.host],
                "host_if": u.host_if,
                "mac": edge_mac(lab, UPLINK_MAC, u.index),
                "address": u.port_address,
                "peer_address": u.upstream_address.split("/")[0],
                "peer_as": outside.upstream_as,
                "local_as": outside.gateway_as,
                "hold_time": BGP_HOLD_TIME,
                "keepalive": BGP_KEEPALIVE,
                "bfd": outside.bfd,
            }
            for u in uplinks
        ],
        "networks": [{"key": "public", "prefix": str(PUBLIC_NET)}],
        **_links(lab, routers),
    }


def _links(lab: str, routers: Sequence[EdgeRouter]) -> dict[str, list[dict[str, Any]]]:
    links, public, nat = [], [], []
    for k, r in enumerate(routers, 1):
        provider, tenant = transit_addresses(k)
        links.append(
            {
                "key": r.key,
                "router": r.router,
                "provider_mac": edge_mac(lab, PROVIDER_LINK_MAC, k),
                "router_mac": edge_mac(lab, TENANT_LINK_MAC, k),
                "provider_address": provider,
                "router_address": tenant,
                "provider_gateway": provider.split("/")[0],
            }
        )
        snat = snat_ip(k)
        for ip in (snat, *(f for f, _ in r.floating_ips)):
            public.append(
                {"key": ip, "link": r.key, "ip": ip, "router_gateway": tenant.split("/")[0]}
            )
        nat.append(
            {
                "tenant": r.tenant,
                "prefix": f"nat-{r.key}",
                "link_port": f"@tlink-{r.key}",
                "snat_ip": snat,
                "floating_ips": [{"floating_ip": f, "fixed_ip": x} for f, x in r.floating_ips],
            }
        )
    return {"links": links, "public_routes": public, "nat": nat}


def nat_filters(key: str) -> tuple[str, str]:
    """The handles of router ``key``'s NAT chains: (inbound filter, outbound filter)."""
    return f"@nat-{key}-in", f"@nat-{key}-out"


__all__ = ["EdgeRouter", "edge_mac", "gateway_params", "nat_filters"]
