"""The registry of object kinds: one place that says, for each kind, its record class, its REST
collection, which fields reference which kinds, which fields the system owns and which child
kinds a cascading delete removes with it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netloom.model.bgp import BgpNetwork, BgpPeer
from netloom.model.records import (
    Bridge,
    Chain,
    DhcpSubnet,
    Host,
    IPAddrGroup,
    Port,
    PortGroup,
    Record,
    Route,
    Router,
    Rule,
    Tenant,
    TunnelZone,
)


@dataclass(frozen=True)
class Ref:
    """``field`` of a record holds the id of a ``target`` kind (or a list of ids, or a list of
    dicts whose ``subfield`` holds the id). ``target`` may list several kinds (a port's device
    is a bridge or a router)."""

    field: str
    target: tuple[str, ...]
    many: bool = False
    subfield: str | None = None

    def ids(self, data: dict[str, Any]) -> Iterator[str]:
        value = data.get(self.field)
        if value is None:
            return
        if not self.many:
            yield str(value)
            return
        for item in value:
            v = item.get(self.subfield) if self.subfield else item
            if v is not None:
                yield str(v)


@dataclass(frozen=True)
class Kind:
    name: str  # singular, as stored: "port"
    collection: str  # REST collection: "ports"
    record: type[Record]
    refs: tuple[Ref, ...] = ()
    read_only: frozenset[str] = frozenset()
    # child kinds (kind, field) deleted with this object on ?cascade=true
    children: tuple[tuple[str, str], ...] = ()
    # fields that may be filtered on in list queries
    filters: tuple[str, ...] = field(default=())
    # the field that places the object in a tenant: its own ``tenant_id``, or the parent whose
    # tenant it shares (a port's device); None: the kind belongs to no tenant. Names are unique
    # per kind within this field's value.
    scope: str | None = None
    # write-only fields: stored (agents get them), never answered by the API (see
    # :data:`SECRET_MASK`)
    secret: frozenset[str] = frozenset()


_DEV = ("inbound_filter_id", "outbound_filter_id")

# What the API answers for a secret field that is set; given back on a write it keeps the
# stored value (so GET-modify-PUT round-trips), and it is never accepted as the value itself.
SECRET_MASK = "********"

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("tenant", "tenants", Tenant, filters=("name",)),
        Kind("host", "hosts", Host, read_only=frozenset({"alive"}), filters=("name", "alive")),
        Kind(
            "tunnel_zone",
            "tunnel_zones",
            TunnelZone,
            refs=(Ref("members", ("host",), many=True, subfield="host_id"),),
            filters=("name", "type"),
        ),
        Kind(
            "bridge",
            "bridges",
            Bridge,
            refs=(Ref("tenant_id", ("tenant",)), *(Ref(f, ("chain",)) for f in _DEV)),
            children=(("port", "device_id"), ("dhcp_subnet", "bridge_id")),
            filters=("tenant_id", "name"),
            scope="tenant_id",
        ),
        Kind(
            "router",
            "routers",
            Router,
            refs=(Ref("tenant_id", ("tenant",)), *(Ref(f, ("chain",)) for f in _DEV)),
            children=(
                ("route", "router_id"),
                ("port", "device_id"),
                ("bgp_peer", "router_id"),
                ("bgp_network", "router_id"),
            ),
            filters=("tenant_id", "name"),
            scope="tenant_id",
        ),
        Kind(
            "port",
            "ports",
            Port,
            refs=(
                Ref("device_id", ("bridge", "router")),
                Ref("host_id", ("host",)),
                Ref("peer_id", ("port",)),
                Ref("port_group_ids", ("port_group",), many=True),
                *(Ref(f, ("chain",)) for f in _DEV),
            ),
            read_only=frozenset({"tunnel_key"}),
            scope="device_id",
            children=(("route", "next_hop_port_id"),),
            # port_group_ids: a list field, so the filter means membership
            filters=("device_id", "type", "host_id", "mac", "tunnel_key", "name", "port_group_ids"),
        ),
        Kind(
            "route",
            "routes",
            Route,
            refs=(
                Ref("router_id", ("router",)),
                Ref("next_hop_port_id", ("port",)),
                Ref("learned_from", ("bgp_peer",)),
            ),
            read_only=frozenset({"system", "learned_from"}),
            filters=("router_id", "type", "next_hop_port_id", "name", "system", "learned_from"),
            scope="router_id",
        ),
        Kind(
            "chain",
            "chains",
            Chain,
            refs=(Ref("tenant_id", ("tenant",)),),
            children=(("rule", "chain_id"),),
            filters=("tenant_id", "name"),
            scope="tenant_id",
        ),
        Kind(
            "rule",
            "rules",
            Rule,
            refs=(
                Ref("chain_id", ("chain",)),
                Ref("jump_chain_id", ("chain",)),
                Ref("in_port_ids", ("port",), many=True),
                Ref("out_port_ids", ("port",), many=True),
                Ref("in_port_group_id", ("port_group",)),
                Ref("out_port_group_id", ("port_group",)),
                Ref("ip_addr_group_src_id", ("ip_addr_group",)),
                Ref("ip_addr_group_dst_id", ("ip_addr_group",)),
                Ref("remote_group_src_id", ("port_group",)),
                Ref("remote_group_dst_id", ("port_group",)),
            ),
            filters=("chain_id", "action", "name"),
            scope="chain_id",
        ),
        Kind(
            "port_group",
            "port_groups",
            PortGroup,
            refs=(Ref("tenant_id", ("tenant",)),),
            read_only=frozenset({"ip_addr_group_id"}),
            filters=("tenant_id", "name", "stateful"),
            scope="tenant_id",
        ),
        Kind(
            "ip_addr_group",
            "ip_addr_groups",
            IPAddrGroup,
            refs=(Ref("tenant_id", ("tenant",)), Ref("port_group_id", ("port_group",))),
            read_only=frozenset({"port_group_id"}),
            filters=("tenant_id", "name", "port_group_id"),
            scope="tenant_id",
        ),
        Kind(
            "dhcp_subnet",
            "dhcp_subnets",
            DhcpSubnet,
            refs=(Ref("bridge_id", ("bridge",)),),
            filters=("bridge_id", "cidr", "name"),
            scope="bridge_id",
        ),
        Kind(
            "bgp_peer",
            "bgp_peers",
            BgpPeer,
            refs=(Ref("router_id", ("router",)),),
            children=(("route", "learned_from"),),
            filters=("router_id", "address", "name"),
            scope="router_id",
            secret=frozenset({"password"}),
        ),
        Kind(
            "bgp_network",
            "bgp_networks",
            BgpNetwork,
            refs=(Ref("router_id", ("router",)),),
            filters=("router_id", "prefix", "name"),
            scope="router_id",
        ),
    )
}

BY_COLLECTION: dict[str, Kind] = {k.collection: k for k in KINDS.values()}


def kind_of(record: Record) -> Kind:
    for k in KINDS.values():
        if type(record) is k.record:
            return k
    raise KeyError(type(record).__name__)


__all__ = ["BY_COLLECTION", "KINDS", "SECRET_MASK", "Kind", "Ref", "kind_of"]
