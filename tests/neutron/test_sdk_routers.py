"""Routers (gateway, interfaces, extra routes) and floating IPs through openstacksdk, and the
native router ports, links, routes and NAT rules they become."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from neutron.conftest import SDK_WARNINGS

pytestmark = [pytest.mark.unit, SDK_WARNINGS]

PROJECT = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"
ADMIN = "9f8e7d6c5b4a43219f8e7d6c5b4a4321"


def _chain_rules(native_http: httpx.Client, chain_id: str) -> list[dict[str, Any]]:
    items = native_http.get("/rules", params={"chain_id": chain_id}).json()["items"]
    return sorted(items, key=lambda r: r["position"])


def test_router_gateway_interfaces_routes_and_floating_ip(
    sdk: Any, native_http: httpx.Client
) -> None:
    ext = sdk.network.create_network(name="public", project_id=ADMIN, is_router_external=True)
    ext_sub = sdk.network.create_subnet(
        network_id=ext.id, project_id=ADMIN, ip_version=4, cidr="203.0.113.0/24"
    )
    net = sdk.network.create_network(name="private", project_id=PROJECT)
    sub = sdk.network.create_subnet(
        network_id=net.id, project_id=PROJECT, ip_version=4, cidr="10.60.0.0/24"
    )
    router = sdk.network.create_router(
        name="r1", project_id=PROJECT, external_gateway_info={"network_id": ext.id}
    )
    gw_ip = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
    assert router.external_gateway_info["enable_snat"] is True
    native_ports = native_http.get("/ports", params={"device_id": router.id}).json()["items"]
    assert [p["address"] for p in native_ports] == [f"{gw_ip}/24"]
    peer = native_http.get(f"/ports/{native_ports[0]['peer_id']}").json()
    assert peer["device_id"] == ext.id
    routes = native_http.get("/routes", params={"router_id": router.id}).json()["items"]
    assert {(r["dst"], r["next_hop_gateway"]) for r in routes} >= {("0.0.0.0/0", "203.0.113.1")}
    native_router = native_http.get(f"/routers/{router.id}").json()
    out_rules = _chain_rules(native_http, native_router["outbound_filter_id"])
    assert [r["action"] for r in out_rules] == ["snat"]
    assert out_rules[0]["nat_targets"][0]["address_from"] == gw_ip
    assert out_rules[0]["out_port_ids"] == [native_ports[0]["id"]]

    iface = sdk.network.add_interface_to_router(router, subnet_id=sub.id)
    assert iface["subnet_id"] == sub.id
    iport = sdk.network.get_port(iface["port_id"])
    assert iport.device_owner == "network:router_interface"
    assert iport.fixed_ips[0]["ip_address"] == "10.60.0.1"
    with pytest.raises(Exception, match="already has a port"):
        sdk.network.add_interface_to_router(router, subnet_id=sub.id)
    router = sdk.network.update_router(
        router, routes=[{"destination": "10.70.0.0/16", "nexthop": "10.60.0.254"}]
    )
    routes = native_http.get("/routes", params={"router_id": router.id}).json()["items"]
    assert ("10.70.0.0/16", "10.60.0.254") in {(r["dst"], r["next_hop_gateway"]) for r in routes}

    vm = sdk.network.create_port(network_id=net.id, project_id=PROJECT)
    vm_ip = vm.fixed_ips[0]["ip_address"]
    fip = sdk.network.create_ip(floating_network_id=ext.id, project_id=PROJECT, port_id=vm.id)
    assert (fip.router_id, fip.fixed_ip_address, fip.status) == (router.id, vm_ip, "ACTIVE")
    in_rules = _chain_rules(native_http, native_router["inbound_filter_id"])
    dnat = [r for r in in_rules if r["action"] == "dnat"]
    assert dnat[0]["nw_dst"] == f"{fip.floating_ip_address}/32" and dnat[0]["static"]
    assert dnat[0]["nat_targets"][0]["address_from"] == vm_ip
    with pytest.raises(Exception, match="not a valid external network"):
        sdk.network.create_ip(floating_network_id=net.id, project_id=PROJECT)
    with pytest.raises(Exception, match="still has ports"):
        sdk.network.delete_router(router)
    with pytest.raises(Exception, match="required by"):
        sdk.network.remove_interface_from_router(router, subnet_id=sub.id)

    fip = sdk.network.update_ip(fip, port_id=None)
    assert (fip.router_id, fip.status) == (None, "DOWN")
    in_rules = _chain_rules(native_http, native_router["inbound_filter_id"])
    assert [r["action"] for r in in_rules] == ["reverse-snat"]
    sdk.network.delete_ip(fip)
    router = sdk.network.update_router(router, routes=[])
    sdk.network.remove_interface_from_router(router, subnet_id=sub.id)
    assert native_http.get(f"/ports/{iface['port_id']}").status_code == 404
    sdk.network.delete_router(router)
    assert native_http.get(f"/routers/{router.id}").status_code == 404
    assert native_http.get("/ports", params={"device_id": ext.id}).json()["items"] == []
    sdk.network.delete_port(vm)
    sdk.network.delete_network(net)
    sdk.network.delete_subnet(ext_sub)
    sdk.network.delete_network(ext)


def test_deleting_a_port_disassociates_its_floating_ip(sdk: Any, native_http: httpx.Client) -> None:
    ext = sdk.network.create_network(name="pub2", project_id=ADMIN, is_router_external=True)
    sdk.network.create_subnet(
        network_id=ext.id, project_id=ADMIN, ip_version=4, cidr="198.18.0.0/24"
    )
    net = sdk.network.create_network(name="priv2", project_id=PROJECT)
    sub = sdk.network.create_subnet(
        network_id=net.id, project_id=PROJECT, ip_version=4, cidr="10.61.0.0/24"
    )
    router = sdk.network.create_router(
        name="r2", project_id=PROJECT, external_gateway_info={"network_id": ext.id}
    )
    sdk.network.add_interface_to_router(router, subnet_id=sub.id)
    vm = sdk.network.create_port(network_id=net.id, project_id=PROJECT)
    fip = sdk.network.create_ip(floating_network_id=ext.id, project_id=PROJECT, port_id=vm.id)
    native_router = native_http.get(f"/routers/{router.id}").json()
    in_rules = _chain_rules(native_http, native_router["inbound_filter_id"])
    assert [r["action"] for r in in_rules] == ["dnat", "reverse-snat"]
    # only what is addressed to the gateway can be a reply to SNAT: the floating IP's own
    # connections out look no binding up (their replies meet only the static DNAT)
    gw = sdk.network.get_router(router.id).external_gateway_info["external_fixed_ips"][0]
    assert in_rules[1]["nw_dst"] == f"{gw['ip_address']}/32"

    sdk.network.delete_port(vm)  # Neutron: the floating IP stays, associated with nothing
    kept = sdk.network.get_ip(fip.id)
    assert (kept.port_id, kept.fixed_ip_address, kept.router_id) == (None, None, None)
    assert kept.status == "DOWN" and kept.revision_number == fip.revision_number + 1
    assert kept.floating_ip_address == fip.floating_ip_address
    in_rules = _chain_rules(native_http, native_router["inbound_filter_id"])
    assert [r["action"] for r in in_rules] == ["reverse-snat"]  # no DNAT to a freed address
    again = sdk.network.create_port(network_id=net.id, project_id=PROJECT)
    sdk.network.update_ip(kept, port_id=again.id)  # and it can be associated again
    sdk.network.delete_ip(kept)
    sdk.network.delete_port(again)
    sdk.network.remove_interface_from_router(router, subnet_id=sub.id)
    sdk.network.delete_router(router)
