"""Topology records: what an operator creates and the NSDB stores.

Each record is a pydantic model validated at the boundary (API, CLI, store reads): unknown
fields are rejected, addresses normalised. Cross-object rules (references exist, unique MACs and
tunnel keys, compatible interior links) live in :mod:`netloom.model.integrity`, because they need
the store.

Fields the system owns (``tunnel_key``, ``alive``, a route's ``system``) are marked ``read_only`` in
:data:`netloom.model.kinds.KINDS`; the API refuses them on input.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netloom.model.types import (
    AddrOrCidr,
    Cidr,
    Id,
    IfAddr,
    IPv4,
    L4Port,
    Mac,
    Name,
    TunnelKey,
    UnicastMac,
    new_id,
)


class Record(BaseModel):
    """Base of every stored object: an id, strict fields, nothing unknown."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    id: Id = Field(default_factory=new_id)


class Tenant(Record):
    name: Name = ""


class Host(Record):
    name: Name
    # Maintained by the topology service from agent heartbeats.
    alive: bool = False


class TunnelZoneMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host_id: Id
    ip: IPv4


class TunnelZone(Record):
    name: Name = ""
    type: Literal["vxlan"] = "vxlan"
    members: list[TunnelZoneMember] = Field(default_factory=list, max_length=10000)

    @model_validator(mode="after")
    def _unique_members(self) -> TunnelZone:
        hosts = [m.host_id for m in self.members]
        if len(hosts) != len(set(hosts)):
            raise ValueError("a host can be a tunnel zone member only once")
        return self


def _no_default(schema: dict[str, Any]) -> None:
    """Leave the default out of the JSON schema: the API decides it (see the description)."""
    schema.pop("default", None)


def _shared() -> Any:
    return Field(
        default=False,
        description="other tenants' objects may reference this one (an admin's choice)",
    )


class _Device(Record):
    tenant_id: Id | None = None
    name: Name = ""
    shared: bool = _shared()
    admin_state_up: bool = True
    inbound_filter_id: Id | None = None
    outbound_filter_id: Id | None = None


class Bridge(_Device):
    pass


class Router(_Device):
    allow_source_route: bool = Field(
        default=False,
        description=(
            "forward packets that carry a loose or strict source route option (LSRR/SSRR,"
            " RFC 791 3.1); off, they are dropped, as RFC 7126 4.3.3 advises (RFC 1812"
            " 4.2.2.1 asks for this switch)"
        ),
    )


class AllowedAddressPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip_address: Cidr
    mac: UnicastMac | None = None


class Port(Record):
    """A virtual port on a bridge or a router.

    Exterior when bound (``host_id`` + ``interface_name``), interior when linked (``peer_id``),
    never both. Router ports carry their own MAC and ``address`` (ip/prefix). Bridge ports may
    carry the VM's ``mac`` and ``fixed_ips`` (ARP suppression, anti-spoofing, DHCP). The API
    generates a MAC when none is given and allocates ``"auto"`` fixed IPs.
    """

    device_id: Id
    type: Literal["bridge", "router"]
    name: Name = ""
    admin_state_up: bool = True
    mac: UnicastMac | None = Field(
        default=None,
        description="omitted on create: a unique locally administered MAC is generated",
    )
    address: IfAddr | None = None
    fixed_ips: list[IPv4] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "the VM's addresses, each inside one of the bridge's DHCP subnets (any address if"
            ' the bridge has none) and unique on the bridge; an entry "auto" is replaced by'
            " a free address of the bridge's first subnet that has one"
        ),
    )
    host_id: Id | None = None
    interface_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,15}$")
    peer_id: Id | None = None
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    tunnel_key: TunnelKey | None = None
    inbound_filter_id: Id | None = None
    outbound_filter_id: Id | None = None
    port_group_ids: list[Id] = Field(default_factory=list, max_length=64)
    port_security_enabled: bool = True
    allowed_address_pairs: list[AllowedAddressPair] = Field(default_factory=list, max_length=64)

    @field_validator("fixed_ips")
    @classmethod
    def _distinct_ips(cls, ips: list[str]) -> list[str]:
        if len(set(ips)) != len(ips):
            raise ValueError("an address is listed twice")
        return ips

    @model_validator(mode="after")
    def _shape(self) -> Port:
        if (self.host_id is None) != (self.interface_name is None):
            raise ValueError("binding needs both host_id and interface_name")
        if self.host_id is not None and self.peer_id is not None:
            raise ValueError("a port is either exterior (bound) or interior (linked), not both")
        if self.type == "router":
            if self.address is None:
                raise ValueError("a router port needs an address (ip/prefix)")
            if self.mac is None:
                raise ValueError("a router port needs a mac")
            if self.fixed_ips:
                raise ValueError("fixed_ips is for bridge ports; a router port has address")
        elif self.address is not None:
            raise ValueError("address is for router ports; a bridge port has fixed_ips")
        if len(set(self.port_group_ids)) != len(self.port_group_ids):
            raise ValueError("port_group_ids has duplicates")
        return self

    @property
    def exterior(self) -> bool:
        return self.host_id is not None

    @property
    def interior(self) -> bool:
        return self.peer_id is not None


class RouteType(StrEnum):
    NORMAL = "normal"
    BLACKHOLE = "blackhole"
    REJECT = "reject"
    LOCAL = "local"


class Route(Record):
    router_id: Id
    name: Name = ""
    dst: Cidr
    src: Cidr = "0.0.0.0/0"
    next_hop_port_id: Id | None = None
    next_hop_gateway: IPv4 | None = None
    weight: int = Field(default=100, ge=0, le=65535)
    type: RouteType = RouteType.NORMAL
    system: bool = Field(
        default=False,
        description=(
            "a router port's connected (its network) or local (its /32) route: created, moved"
            " and deleted with the port's address, never by hand"
        ),
    )
    learned_from: Id | None = Field(
        default=None,
        description=(
            "the bgp_peer this route was learned from: written by the gateway agent, gone when"
            " the session or the agent goes"
        ),
    )

    @model_validator(mode="after")
    def _shape(self) -> Route:
        if self.type == RouteType.NORMAL and self.next_hop_port_id is None:
            raise ValueError("a normal route needs next_hop_port_id")
        if self.type == RouteType.LOCAL and self.next_hop_port_id is None:
            raise ValueError("a local route needs next_hop_port_id (the port owning the address)")
        return self


class Chain(Record):
    tenant_id: Id | None = None
    name: Name = ""
    shared: bool = _shared()


class RuleAction(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    JUMP = "jump"
    RETURN = "return"
    CONTINUE = "continue"
    SNAT = "snat"
    DNAT = "dnat"
    REV_SNAT = "reverse-snat"
    REV_DNAT = "reverse-dnat"


class NatTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address_from: IPv4
    address_to: IPv4
    port_from: L4Port = 0
    port_to: L4Port = 0

    @model_validator(mode="after")
    def _ranges(self) -> NatTarget:
        from ipaddress import IPv4Address

        if IPv4Address(self.address_from) > IPv4Address(self.address_to):
            raise ValueError("address_from must not exceed address_to")
        if self.port_from > self.port_to:
            raise ValueError("port_from must not exceed port_to")
        return self


class PortRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: L4Port
    end: L4Port

    @model_validator(mode="after")
    def _order(self) -> PortRange:
        if self.start > self.end:
            raise ValueError("port range start must not exceed end")
        return self


class Rule(Record):
    """One rule of a chain. Conditions left unset match anything; ``inv_*`` inverts one
    condition and ``inv_all`` the whole conjunction (MidoNet's Condition)."""

    chain_id: Id
    name: Name = ""
    position: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description=(
            "evaluation order in the chain (lowest first, unique in the chain). Omitted on"
            " create: after the chain's last rule; a taken position inserts the rule there and"
            " moves the rules from it on down by one"
        ),
        json_schema_extra=_no_default,
    )
    action: RuleAction
    jump_chain_id: Id | None = None
    nat_targets: list[NatTarget] = Field(default_factory=list, max_length=16)
    # Static 1:1 NAT (MidoNet's StaticDnatRule/StaticSnatRule, e.g. a floating IP): one target
    # address, no port range; rewrites the address with no per-connection state, the opposite
    # static rule translating the return traffic. See netloom.sim.chains.
    static: bool = False
    # L2
    in_port_ids: list[Id] = Field(default_factory=list, max_length=256)
    inv_in_ports: bool = False
    out_port_ids: list[Id] = Field(default_factory=list, max_length=256)
    inv_out_ports: bool = False
    in_port_group_id: Id | None = None
    inv_in_port_group: bool = False
    out_port_group_id: Id | None = None
    inv_out_port_group: bool = False
    ethertype: int | None = Field(default=None, ge=0, le=0xFFFF)
    inv_ethertype: bool = False
    dl_src: Mac | None = None
    inv_dl_src: bool = False
    dl_dst: Mac | None = None
    inv_dl_dst: bool = False
    # L3
    nw_src: Cidr | None = None
    inv_nw_src: bool = False
    nw_dst: Cidr | None = None
    inv_nw_dst: bool = False
    nw_proto: int | None = Field(default=None, ge=0, le=255)
    inv_nw_proto: bool = False
    ip_addr_group_src_id: Id | None = None
    inv_ip_addr_group_src: bool = False
    ip_addr_group_dst_id: Id | None = None
    inv_ip_addr_group_dst: bool = False
    remote_group_src_id: Id | None = Field(
        default=None,
        description=(
            "a port group: matches when the source address is one of its ports' fixed IPs"
            " (the port group's ip_addr_group_id), wherever the packet comes from;"
            " in_port_group_id instead matches the port the packet entered the device by"
        ),
    )
    inv_remote_group_src: bool = False
    remote_group_dst_id: Id | None = Field(
        default=None,
        description="a port group: the destination address is one of its ports' fixed IPs",
    )
    inv_remote_group_dst: bool = False
    # L4
    tp_src: PortRange | None = None
    inv_tp_src: bool = False
    tp_dst: PortRange | None = None
    inv_tp_dst: bool = False
    # connection tracking
    match_forward_flow: bool = False
    match_return_flow: bool = False
    inv_all: bool = False

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        nat = {RuleAction.SNAT, RuleAction.DNAT}
        if self.action == RuleAction.JUMP and self.jump_chain_id is None:
            raise ValueError("a jump rule needs jump_chain_id")
        if self.action != RuleAction.JUMP and self.jump_chain_id is not None:
            raise ValueError("jump_chain_id is only for jump rules")
        if self.action in nat and not self.nat_targets:
            raise ValueError(f"a {self.action.value} rule needs nat_targets")
        if self.action not in nat and self.nat_targets:
            raise ValueError("nat_targets is only for snat/dnat rules")
        if self.static and (
            self.action not in nat
            or len(self.nat_targets) != 1
            or self.nat_targets[0].address_from != self.nat_targets[0].address_to
            or self.nat_targets[0].port_from
            or self.nat_targets[0].port_to
        ):
            raise ValueError(
                "a static rule is an snat/dnat rule with one target address "
                "(address_from == address_to) and no port range"
            )
        if self.match_forward_flow and self.match_return_flow:
            raise ValueError("match_forward_flow and match_return_flow exclude each other")
        if self.jump_chain_id is not None and self.jump_chain_id == self.chain_id:
            raise ValueError("a rule cannot jump to its own chain")
        return self


class PortGroup(Record):
    tenant_id: Id | None = None
    name: Name = ""
    shared: bool = _shared()
    stateful: bool = False
    ip_addr_group_id: Id | None = Field(
        default=None,
        description=(
            "the IP address group holding the fixed IPs of this group's ports, kept in sync"
            " by the system: a rule's ip_addr_group_src_id/dst_id naming it matches the"
            " members' traffic wherever it comes from (across routers too)"
        ),
    )


class IPAddrGroup(Record):
    tenant_id: Id | None = None
    name: Name = ""
    shared: bool = _shared()
    addresses: list[AddrOrCidr] = Field(
        default_factory=list,
        max_length=4096,
        description="addresses (10.0.0.5) and network prefixes (10.0.0.0/24)",
    )
    port_group_id: Id | None = Field(
        default=None,
        description=(
            "set for the group the system keeps for a port group: its addresses are the"
            " fixed IPs of the port group's ports, and it is written only by the system"
        ),
    )

    @field_validator("addresses")
    @classmethod
    def _distinct(cls, addresses: list[str]) -> list[str]:
        if len(set(addresses)) != len(addresses):
            raise ValueError("an address is listed twice")
        return addresses


class DhcpHost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mac: UnicastMac
    ip: IPv4
    name: Name = ""


class Opt121Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dst: Cidr
    gateway: IPv4


class DhcpSubnet(Record):
    bridge_id: Id
    name: Name = ""
    cidr: Cidr
    gateway: IPv4 | None = None
    dns_servers: list[IPv4] = Field(default_factory=list, max_length=8)
    mtu: int | None = Field(default=None, ge=576, le=9000)
    lease_seconds: int = Field(default=86400, ge=60, le=10_000_000)
    enabled: bool = True
    hosts: list[DhcpHost] = Field(default_factory=list, max_length=4096)
    opt121_routes: list[Opt121Route] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _inside(self) -> DhcpSubnet:
        from ipaddress import IPv4Address, IPv4Network

        net = IPv4Network(self.cidr)
        if self.gateway is not None and IPv4Address(self.gateway) not in net:
            raise ValueError(f"gateway {self.gateway} is outside {self.cidr}")
        for h in self.hosts:
            if IPv4Address(h.ip) not in net:
                raise ValueError(f"host address {h.ip} is outside {self.cidr}")
        macs = [h.mac for h in self.hosts]
        if len(macs) != len(set(macs)):
            raise ValueError("dhcp hosts have a duplicate mac")
        return self


__all__ = [
    "AllowedAddressPair",
    "Bridge",
    "Chain",
    "DhcpHost",
    "DhcpSubnet",
    "Host",
    "IPAddrGroup",
    "NatTarget",
    "Opt121Route",
    "Port",
    "PortGroup",
    "PortRange",
    "Record",
    "Route",
    "RouteType",
    "Router",
    "Rule",
    "RuleAction",
    "Tenant",
    "TunnelZone",
    "TunnelZoneMember",
]
