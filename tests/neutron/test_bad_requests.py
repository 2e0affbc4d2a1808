"""A catalogue of bad Neutron requests: each gets Neutron's status code and error type in a
``NeutronError`` body, and stores nothing (the store's revision does not move)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from neutron.conftest import PROJECT_A, NeutronCluster

pytestmark = pytest.mark.unit

NET = "{net}"
OTHER_NET = "{other_net}"
SUBNET = "{subnet}"
OTHER_SUBNET = "{other_subnet}"
PORT = "{port}"
PORT_MAC = "{port_mac}"
PORT_IP = "{port_ip}"
SG = "{sg}"
ROUTER = "{router}"
MISSING = str(uuid.UUID(int=7))


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: Any
    status: int
    fault: str
    headers: tuple[tuple[str, str], ...] = ()


def _net(**kw: Any) -> dict[str, Any]:
    return {"network": {"project_id": PROJECT_A, **kw}}


def _subnet(**kw: Any) -> dict[str, Any]:
    base = {"project_id": PROJECT_A, "network_id": NET, "ip_version": 4, "cidr": "10.41.0.0/24"}
    return {"subnet": {**base, **kw}}


def _port(**kw: Any) -> dict[str, Any]:
    return {"port": {"project_id": PROJECT_A, "network_id": NET, **kw}}


def _rule(**kw: Any) -> dict[str, Any]:
    base = {"project_id": PROJECT_A, "security_group_id": SG, "direction": "ingress"}
    return {"security_group_rule": {**base, **kw}}


BAD = "HTTPBadRequest"
RULES = "/security-group-rules"
CASES = [
    Case("malformed json", "POST", "/networks", "{not json", 400, BAD),
    Case("no resource key", "POST", "/networks", {"net": {}}, 400, BAD),
    Case("unknown attribute", "POST", "/networks", _net(colour="red"), 400, BAD),
    Case("bad boolean", "POST", "/networks", _net(admin_state_up="maybe"), 400, BAD),
    Case("name too long", "POST", "/networks", _net(name="x" * 256), 400, BAD),
    Case("status is read-only", "POST", "/networks", _net(status="DOWN"), 400, BAD),
    Case("invalid uuid", "GET", "/networks/not-a-uuid", None, 404, "NetworkNotFound"),
    Case("no such network", "GET", f"/networks/{MISSING}", None, 404, "NetworkNotFound"),
    Case("project is read-only", "PUT", f"/networks/{NET}", _net(), 400, BAD),  # project_id: PUT
    Case("network with ports", "DELETE", f"/networks/{NET}", None, 409, "NetworkInUse"),
    Case("bad cidr", "POST", "/subnets", _subnet(cidr="10.41.0.0/33"), 400, BAD),
    Case("cidr with host bits", "POST", "/subnets", _subnet(cidr="10.41.1.5/24"), 400, BAD),
    Case(
        "overlapping subnet", "POST", "/subnets", _subnet(cidr="10.40.0.0/16"), 400, "InvalidInput"
    ),
    Case("network_id not a uuid", "POST", "/subnets", _subnet(network_id="x"), 400, BAD),
    Case(
        "subnet on no network",
        "POST",
        "/subnets",
        _subnet(network_id=MISSING),
        404,
        "NetworkNotFound",
    ),
    Case("ip_version 5", "POST", "/subnets", _subnet(ip_version=5), 400, BAD),
    Case(
        "cidr of the other version", "POST", "/subnets", _subnet(ip_version=6), 400, "InvalidInput"
    ),
    Case(
        "gateway outside", "POST", "/subnets", _subnet(gateway_ip="10.99.0.1"), 400, "InvalidInput"
    ),
    Case(
        "pool outside",
        "POST",
        "/subnets",
        _subnet(allocation_pools=[{"start": "10.41.0.10", "end": "10.41.1.10"}]),
        400,
        "OutOfBoundsAllocationPool",
    ),
    Case(
        "pool start after end",
        "POST",
        "/subnets",
        _subnet(allocation_pools=[{"start": "10.41.0.20", "end": "10.41.0.10"}]),
        400,
        "InvalidAllocationPool",
    ),
    Case(
        "overlapping pools",
        "POST",
        "/subnets",
        _subnet(
            allocation_pools=[
                {"start": "10.41.0.10", "end": "10.41.0.20"},
                {"start": "10.41.0.15", "end": "10.41.0.30"},
            ]
        ),
        409,
        "OverlappingAllocationPools",
    ),
    Case(
        "gateway inside a pool",
        "POST",
        "/subnets",
        _subnet(
            gateway_ip="10.41.0.15", allocation_pools=[{"start": "10.41.0.10", "end": "10.41.0.20"}]
        ),
        409,
        "GatewayConflictWithAllocationPools",
    ),
    Case("duplicate dns", "POST", "/subnets", _subnet(dns_nameservers=["192.0.2.1"] * 2), 400, BAD),
    Case(
        "too many dns",
        "POST",
        "/subnets",
        _subnet(dns_nameservers=[f"192.0.2.{i}" for i in range(1, 7)]),
        400,
        "DNSNameServersExhausted",
    ),
    Case(
        "bad host route",
        "POST",
        "/subnets",
        _subnet(host_routes=[{"destination": "10.9.0.0/16", "nexthop": "nope"}]),
        400,
        BAD,
    ),
    Case(
        "fixed ip outside every subnet",
        "POST",
        "/ports",
        _port(fixed_ips=[{"ip_address": "10.99.0.5"}]),
        400,
        "InvalidIpForNetwork",
    ),
    Case(
        "fixed ip is the network address",
        "POST",
        "/ports",
        _port(fixed_ips=[{"ip_address": "10.40.0.0"}]),
        400,
        "InvalidIpForNetwork",
    ),
    Case(
        "fixed ip outside the named subnet",
        "POST",
        "/ports",
        _port(fixed_ips=[{"subnet_id": SUBNET, "ip_address": "10.99.0.5"}]),
        400,
        "InvalidIpForSubnet",
    ),
    Case(
        "fixed ip taken",
        "POST",
        "/ports",
        _port(fixed_ips=[{"ip_address": PORT_IP}]),
        409,
        "IpAddressAlreadyAllocated",
    ),
    Case(
        "subnet of another network",
        "POST",
        "/ports",
        _port(fixed_ips=[{"subnet_id": OTHER_SUBNET}]),
        400,
        "InvalidInput",
    ),
    Case("bad mac", "POST", "/ports", _port(mac_address="01:00:5e:00:00:01"), 400, BAD),
    Case("mac in use", "POST", "/ports", _port(mac_address=PORT_MAC), 409, "MacAddressInUse"),
    Case(
        "address pairs without port security",
        "POST",
        "/ports",
        _port(port_security_enabled=False, allowed_address_pairs=[{"ip_address": "10.40.0.99"}]),
        409,
        "AddressPairAndPortSecurityRequired",
    ),
    Case(
        "unknown security group",
        "POST",
        "/ports",
        _port(security_groups=[MISSING]),
        404,
        "SecurityGroupNotFound",
    ),
    Case(
        "unsupported vnic type",
        "POST",
        "/ports",
        _port(**{"binding:vnic_type": "direct"}),
        400,
        BAD,
    ),
    Case(
        "network_id is read-only",
        "PUT",
        f"/ports/{PORT}",
        {"port": {"network_id": OTHER_NET}},
        400,
        BAD,
    ),
    Case("subnet with ports", "DELETE", f"/subnets/{SUBNET}", None, 409, "SubnetInUse"),
    Case("unknown filter", "GET", "/networks?colour=red", None, 400, BAD),
    Case("bad limit", "GET", "/networks?limit=x", None, 400, BAD),
    Case("bad sort key", "GET", "/networks?sort_key=colour", None, 400, BAD),
    Case("no such marker", "GET", f"/networks?marker={MISSING}", None, 404, "NetworkNotFound"),
    Case(
        "stale revision",
        "PUT",
        f"/networks/{NET}",
        {"network": {"name": "n"}},
        412,
        "RevisionNumberConstraintFailed",
        (("If-Match", "revision_number=99"),),
    ),
    Case("no such collection", "GET", "/widgets", None, 404, "HTTPNotFound"),
    Case(
        "port_range_min above max",
        "POST",
        RULES,
        _rule(protocol="tcp", port_range_min=90, port_range_max=80),
        400,
        "SecurityGroupInvalidPortRange",
    ),
    Case("unknown protocol", "POST", RULES, _rule(protocol="carrier-pigeon"), 400, BAD),
    Case(
        "ports without protocol",
        "POST",
        RULES,
        _rule(port_range_min=22, port_range_max=22),
        400,
        "SecurityGroupProtocolRequiredWithPorts",
    ),
    Case(
        "ports for gre",
        "POST",
        RULES,
        _rule(protocol="gre", port_range_min=1, port_range_max=2),
        400,
        "SecurityGroupInvalidProtocolForPortRange",
    ),
    Case(
        "remote prefix and group",
        "POST",
        RULES,
        _rule(remote_ip_prefix="10.0.0.0/8", remote_group_id=SG),
        400,
        "SecurityGroupRemoteGroupAndRemoteIpPrefix",
    ),
    Case(
        "prefix of the other ethertype",
        "POST",
        RULES,
        _rule(ethertype="IPv6", remote_ip_prefix="10.0.0.0/8"),
        400,
        "SecurityGroupRuleParameterConflict",
    ),
    Case(
        "icmp type above 255",
        "POST",
        RULES,
        _rule(protocol="icmp", port_range_min=300),
        400,
        "SecurityGroupInvalidIcmpValue",
    ),
    Case(
        "duplicate rule",
        "POST",
        RULES,
        _rule(direction="egress", ethertype="IPv4"),
        409,
        "SecurityGroupRuleExists",
    ),
    Case(
        "rule of no group",
        "POST",
        RULES,
        _rule(security_group_id=MISSING),
        404,
        "SecurityGroupNotFound",
    ),
    Case("group in use", "DELETE", f"/security-groups/{SG}", None, 409, "SecurityGroupInUse"),
    Case("bad direction", "POST", RULES, _rule(direction="sideways"), 400, BAD),
    Case(
        "floating ip on a network that is not external",
        "POST",
        "/floatingips",
        {"floatingip": {"project_id": PROJECT_A, "floating_network_id": NET}},
        400,
        "BadRequest",
    ),
    Case(
        "interface on a subnet already attached",
        "PUT",
        f"/routers/{ROUTER}/add_router_interface",
        {"subnet_id": SUBNET},
        400,
        "BadRequest",
    ),
    Case(
        "interface with subnet and port",
        "PUT",
        f"/routers/{ROUTER}/add_router_interface",
        {"subnet_id": SUBNET, "port_id": PORT},
        400,
        "BadRequest",
    ),
    Case(
        "removing an interface the router does not have",
        "PUT",
        f"/routers/{ROUTER}/remove_router_interface",
        {"subnet_id": OTHER_SUBNET},
        404,
        "RouterInterfaceNotFoundForSubnet",
    ),
    Case("router with interfaces", "DELETE", f"/routers/{ROUTER}", None, 409, "RouterInUse"),
    Case(
        "gateway on a network that is not external",
        "PUT",
        f"/routers/{ROUTER}",
        {"router": {"external_gateway_info": {"network_id": OTHER_NET}}},
        400,
        "BadRequest",
    ),
    Case(
        "extra route through no interface",
        "PUT",
        f"/routers/{ROUTER}",
        {"router": {"routes": [{"destination": "10.77.0.0/16", "nexthop": "10.99.0.1"}]}},
        400,
        "InvalidRoutes",
    ),
    Case(
        "deleting a router interface port directly",
        "DELETE",
        "/ports/{router_port}",
        None,
        409,
        "ServicePortInUse",
    ),
]


@pytest.fixture(scope="module")
def world(neutron_cluster: NeutronCluster) -> Iterator[dict[str, str]]:
    with httpx.Client(base_url=neutron_cluster.neutron + "/v2.0", timeout=10) as c:
        net = c.post("/networks", json=_net(name="bad")).json()["network"]
        other = c.post("/networks", json=_net(name="other")).json()["network"]
        body = _subnet(network_id=net["id"], cidr="10.40.0.0/24")
        sub = c.post("/subnets", json=body).json()["subnet"]
        body = _subnet(network_id=other["id"], cidr="10.42.0.0/24")
        other_sub = c.post("/subnets", json=body).json()["subnet"]
        port = c.post("/ports", json=_port(network_id=net["id"])).json()["port"]
        router = c.post("/routers", json={"router": {"project_id": PROJECT_A}}).json()["router"]
        path = f"/routers/{router['id']}/add_router_interface"
        iface = c.put(path, json={"subnet_id": sub["id"]}).json()
        yield {
            "router": router["id"],
            "router_port": iface["port_id"],
            "sg": port["security_groups"][0],
            "net": net["id"],
            "other_net": other["id"],
            "subnet": sub["id"],
            "other_subnet": other_sub["id"],
            "port": port["id"],
            "port_mac": port["mac_address"],
            "port_ip": port["fixed_ips"][0]["ip_address"],
        }


def _fill(value: Any, world: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return value


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_request(
    case: Case, world: dict[str, str], neutron_cluster: NeutronCluster, neutron_http: httpx.Client
) -> None:
    before = neutron_cluster.revision()
    body = case.body
    content = body if isinstance(body, str) else None
    json_body = None if body is None or isinstance(body, str) else _fill(body, world)
    r = neutron_http.request(
        case.method,
        _fill(case.path, world),
        content=content,
        json=json_body,
        headers={"Content-Type": "application/json", **dict(case.headers)},
    )
    assert r.status_code == case.status, r.text
    err = r.json()["NeutronError"]
    assert err["type"] == case.fault, err
    assert err["message"] and "detail" in err
    assert neutron_cluster.revision() == before
