"""Networks, subnets and ports through openstacksdk against a real cluster, and the native
records each Neutron write becomes (read back through the native API)."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from neutron.conftest import PROJECT_A, SDK_WARNINGS, NeutronCluster

pytestmark = [pytest.mark.unit, SDK_WARNINGS]


def _net(sdk: Any, **kw: Any) -> Any:
    return sdk.network.create_network(project_id=PROJECT_A, **kw)


def test_versions_document_and_extensions(neutron_cluster: NeutronCluster) -> None:
    root = httpx.get(neutron_cluster.neutron + "/", timeout=10).json()
    assert root["versions"][0]["id"] == "v2.0"
    assert root["versions"][0]["links"][0]["href"].endswith("/v2.0/")
    exts = httpx.get(neutron_cluster.neutron + "/v2.0/extensions", timeout=10).json()
    aliases = {e["alias"] for e in exts["extensions"]}
    assert {"binding", "pagination", "sorting", "standard-attr-tag"} <= aliases
    assert "netloom-ipv4-dataplane" in aliases


def test_network_becomes_a_bridge_in_the_same_commit(
    sdk: Any, neutron_cluster: NeutronCluster, native_http: httpx.Client
) -> None:
    before = neutron_cluster.revision()
    net = _net(sdk, name="blue", shared=True)
    assert neutron_cluster.revision() == before + 1  # Neutron document + bridge + tenant: one
    assert (net.status, net.mtu, net.revision_number) == ("ACTIVE", 1450, 0)
    bridge = native_http.get(f"/bridges/{net.id}").json()
    assert bridge["shared"] is True
    # the native API refuses to change what Neutron owns
    r = native_http.patch(f"/bridges/{net.id}", json={"admin_state_up": False})
    assert r.status_code == 409 and "neutron" in r.json()["message"]
    assert native_http.delete(f"/bridges/{net.id}").status_code == 409
    net = sdk.network.update_network(net, name="blue2", is_admin_state_up=False)
    assert (net.name, net.revision_number) == ("blue2", 1)
    assert native_http.get(f"/bridges/{net.id}").json()["admin_state_up"] is False
    sdk.network.delete_network(net)
    assert native_http.get(f"/bridges/{net.id}").status_code == 404


def test_subnet_becomes_a_dhcp_subnet(sdk: Any, native_http: httpx.Client) -> None:
    net = _net(sdk, name="dhcp")
    sub = sdk.network.create_subnet(
        network_id=net.id,
        project_id=PROJECT_A,
        ip_version=4,
        cidr="10.20.0.0/24",
        dns_nameservers=["192.0.2.53"],
        host_routes=[{"destination": "10.99.0.0/16", "nexthop": "10.20.0.254"}],
        allocation_pools=[{"start": "10.20.0.10", "end": "10.20.0.20"}],
    )
    assert sub.gateway_ip == "10.20.0.1"
    native = native_http.get(f"/dhcp_subnets/{sub.id}").json()
    assert native["bridge_id"] == net.id and native["gateway"] == "10.20.0.1"
    assert native["dns_servers"] == ["192.0.2.53"]
    assert native["opt121_routes"] == [{"dst": "10.99.0.0/16", "gateway": "10.20.0.254"}]
    assert sdk.network.get_network(net.id).subnet_ids == [sub.id]
    sub = sdk.network.update_subnet(sub, is_dhcp_enabled=False)
    assert native_http.get(f"/dhcp_subnets/{sub.id}").json()["enabled"] is False
    v6 = sdk.network.create_subnet(
        network_id=net.id, project_id=PROJECT_A, ip_version=6, cidr="2001:db8::/64"
    )
    assert v6.gateway_ip == "2001:db8::1"
    assert native_http.get(f"/dhcp_subnets/{v6.id}").status_code == 404  # IPv4 dataplane
    sdk.network.delete_network(net)
    assert native_http.get(f"/dhcp_subnets/{sub.id}").status_code == 404


def test_port_fixed_ips_mac_and_native_port(sdk: Any, native_http: httpx.Client) -> None:
    net = _net(sdk, name="ports")
    sub = sdk.network.create_subnet(
        network_id=net.id,
        project_id=PROJECT_A,
        ip_version=4,
        cidr="10.30.0.0/24",
        allocation_pools=[{"start": "10.30.0.100", "end": "10.30.0.102"}],
    )
    ports = [sdk.network.create_port(network_id=net.id, project_id=PROJECT_A) for _ in range(3)]
    ips = sorted(p.fixed_ips[0]["ip_address"] for p in ports)
    assert ips == ["10.30.0.100", "10.30.0.101", "10.30.0.102"]
    assert all(p.mac_address.startswith("fa:16:3e:") for p in ports)
    assert all(p.status == "DOWN" and p.binding_vif_type == "unbound" for p in ports)
    native = native_http.get(f"/ports/{ports[0].id}").json()
    assert native["device_id"] == net.id and native["mac"] == ports[0].mac_address
    assert native["fixed_ips"] == [ports[0].fixed_ips[0]["ip_address"]]
    # a chosen address outside the pools, inside the subnet
    chosen = sdk.network.create_port(
        network_id=net.id,
        project_id=PROJECT_A,
        fixed_ips=[{"ip_address": "10.30.0.50"}],
        device_owner="compute:nova",
        device_id="vm-1",
        allowed_address_pairs=[{"ip_address": "10.30.0.200"}],
    )
    assert chosen.fixed_ips == [{"subnet_id": sub.id, "ip_address": "10.30.0.50"}]
    pairs = native_http.get(f"/ports/{chosen.id}").json()["allowed_address_pairs"]
    assert pairs == [{"ip_address": "10.30.0.200/32", "mac": chosen.mac_address}]
    # the native API refuses to touch it; Neutron moves the address
    assert native_http.delete(f"/ports/{chosen.id}").status_code == 409
    moved = sdk.network.update_port(chosen, fixed_ips=[{"ip_address": "10.30.0.51"}])
    assert moved.fixed_ips[0]["ip_address"] == "10.30.0.51"
    assert native_http.get(f"/ports/{chosen.id}").json()["fixed_ips"] == ["10.30.0.51"]
    # the freed address can be taken again
    again = sdk.network.create_port(
        network_id=net.id, project_id=PROJECT_A, fixed_ips=[{"ip_address": "10.30.0.50"}]
    )
    assert ipaddress.ip_address(again.fixed_ips[0]["ip_address"]) in ipaddress.ip_network(sub.cidr)
    for p in [*ports, chosen, again]:
        sdk.network.delete_port(p)
    sdk.network.delete_network(net)


def test_filters_fields_sorting_paging(sdk: Any, neutron_http: httpx.Client) -> None:
    nets = [_net(sdk, name=f"page-{i}", description=f"d{i % 2}") for i in range(5)]
    names = sorted(n.name for n in nets)
    got = [n.name for n in sdk.network.networks(description="d0")]
    assert sorted(got) == ["page-0", "page-2", "page-4"]
    r = neutron_http.get(
        "/networks", params=[("name", "page-1"), ("name", "page-3"), ("fields", "name")]
    )
    assert sorted(r.json()["networks"], key=lambda n: n["name"]) == [
        {"name": "page-1"},
        {"name": "page-3"},
    ]
    r = neutron_http.get(
        "/networks", params={"sort_key": "name", "sort_dir": "desc", "limit": 2}
    ).json()
    page_names = [n["name"] for n in r["networks"]]
    assert page_names == sorted((n["name"] for n in r["networks"]), reverse=True)
    assert {link["rel"] for link in r["networks_links"]} == {"next"}
    # the SDK follows the links page by page
    paged = [n.name for n in sdk.network.networks(limit=2) if n.name.startswith("page-")]
    assert sorted(paged) == names
    for n in nets:
        sdk.network.delete_network(n)


def test_tags_and_if_match_revision(sdk: Any, neutron_http: httpx.Client) -> None:
    net = _net(sdk, name="tagged")
    sdk.network.set_tags(net, ["red", "blue"])
    assert sorted(sdk.network.get_network(net.id).tags) == ["blue", "red"]
    found = [n.id for n in sdk.network.networks(tags="red,blue")]
    assert found == [net.id]
    assert [n.id for n in sdk.network.networks(any_tags="green")] == []
    rev = sdk.network.get_network(net.id).revision_number
    stale = neutron_http.put(
        f"/networks/{net.id}",
        json={"network": {"name": "x"}},
        headers={"If-Match": f"revision_number={rev - 1}"},
    )
    assert stale.status_code == 412
    assert stale.json()["NeutronError"]["type"] == "RevisionNumberConstraintFailed"
    ok = neutron_http.put(
        f"/networks/{net.id}",
        json={"network": {"name": "x"}},
        headers={"If-Match": f"revision_number={rev}"},
    )
    assert ok.status_code == 200 and ok.json()["network"]["revision_number"] == rev + 1
    sdk.network.delete_network(net)
