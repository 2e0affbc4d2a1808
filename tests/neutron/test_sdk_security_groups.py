"""Security groups and rules through openstacksdk, and the native port groups, chains and rules
they become."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from neutron.conftest import SDK_WARNINGS

pytestmark = [pytest.mark.unit, SDK_WARNINGS]

PROJECT = "5e4d3c2b1a0f49e8d7c6b5a4f3e2d1c0"


def _rules(native_http: httpx.Client, chain_id: str) -> list[dict[str, Any]]:
    items = native_http.get("/rules", params={"chain_id": chain_id}).json()["items"]
    return sorted(items, key=lambda r: r["position"])


def test_default_group_and_port_filters(sdk: Any, native_http: httpx.Client) -> None:
    net = sdk.network.create_network(name="sg-net", project_id=PROJECT)
    sdk.network.create_subnet(
        network_id=net.id, project_id=PROJECT, ip_version=4, cidr="10.50.0.0/24"
    )
    default = [g for g in sdk.network.security_groups(project_id=PROJECT) if g.name == "default"]
    assert len(default) == 1
    rules = {
        (r["direction"], r["ethertype"], r["remote_group_id"])
        for r in default[0].security_group_rules
    }
    assert rules == {
        ("egress", "IPv4", None),
        ("egress", "IPv6", None),
        ("ingress", "IPv4", default[0].id),
        ("ingress", "IPv6", default[0].id),
    }
    port = sdk.network.create_port(network_id=net.id, project_id=PROJECT)
    assert port.security_group_ids == [default[0].id]
    native = native_http.get(f"/ports/{port.id}").json()
    assert native["port_group_ids"] == [default[0].id]
    inbound = _rules(native_http, native["inbound_filter_id"])
    outbound = _rules(native_http, native["outbound_filter_id"])
    assert [r["action"] for r in inbound] == ["accept", "accept", "jump", "drop"]
    assert [r["action"] for r in outbound] == ["accept", "accept", "accept", "jump", "drop"]
    assert inbound[1]["ethertype"] == outbound[1]["ethertype"] == 0x0806  # ARP: never filtered
    ingress_chain = outbound[3]["jump_chain_id"]
    (allow_members,) = _rules(native_http, ingress_chain)  # the IPv6 rule makes none
    assert allow_members["remote_group_src_id"] == default[0].id
    # no port security: no filters, no groups
    bare = sdk.network.update_port(port, security_group_ids=[], is_port_security_enabled=False)
    assert bare.security_group_ids == []
    native = native_http.get(f"/ports/{port.id}").json()
    assert native["inbound_filter_id"] is None and native["port_group_ids"] == []
    assert native_http.get(f"/chains/{inbound[0]['chain_id']}").status_code == 404
    sdk.network.delete_port(port)
    sdk.network.delete_network(net)


def test_rules_by_name_and_number_ranges_and_remote_groups(
    sdk: Any, native_http: httpx.Client
) -> None:
    web = sdk.network.create_security_group(name="web", project_id=PROJECT)
    ssh_from = sdk.network.create_security_group(name="bastion", project_id=PROJECT)
    ssh = sdk.network.create_security_group_rule(
        security_group_id=web.id,
        project_id=PROJECT,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=22,
        port_range_max=22,
        remote_group_id=ssh_from.id,
    )
    udp = sdk.network.create_security_group_rule(
        security_group_id=web.id,
        project_id=PROJECT,
        direction="ingress",
        protocol="17",
        port_range_min=5000,
        port_range_max=5100,
        remote_ip_prefix="192.0.2.0/24",
    )
    ping = sdk.network.create_security_group_rule(
        security_group_id=web.id,
        project_id=PROJECT,
        direction="ingress",
        protocol="icmp",
        port_range_min=8,
    )
    n_ssh = native_http.get(f"/rules/{ssh.id}").json()
    assert (n_ssh["nw_proto"], n_ssh["tp_dst"]) == (6, {"start": 22, "end": 22})
    assert n_ssh["remote_group_src_id"] == ssh_from.id
    n_udp = native_http.get(f"/rules/{udp.id}").json()
    assert (n_udp["nw_proto"], n_udp["nw_src"]) == (17, "192.0.2.0/24")
    assert n_udp["tp_dst"] == {"start": 5000, "end": 5100}
    n_ping = native_http.get(f"/rules/{ping.id}").json()
    assert (n_ping["nw_proto"], n_ping["tp_src"]) == (1, {"start": 8, "end": 8})
    got = sdk.network.get_security_group(web.id)
    assert {r["id"] for r in got.security_group_rules} >= {ssh.id, udp.id, ping.id}
    # the native API cannot edit a translated rule
    assert native_http.patch(f"/rules/{ssh.id}", json={"action": "drop"}).status_code == 409
    sdk.network.delete_security_group_rule(udp)
    assert native_http.get(f"/rules/{udp.id}").status_code == 404
    # a group in use by a port cannot go; deleting the remote group takes the rules naming it
    net = sdk.network.create_network(name="sg-net2", project_id=PROJECT)
    port = sdk.network.create_port(
        network_id=net.id, project_id=PROJECT, security_group_ids=[web.id]
    )
    with pytest.raises(Exception, match="in use"):
        sdk.network.delete_security_group(web)
    sdk.network.delete_security_group(ssh_from)
    assert native_http.get(f"/rules/{ssh.id}").status_code == 404
    assert ssh.id not in {
        r["id"] for r in sdk.network.get_security_group(web.id).security_group_rules
    }
    sdk.network.delete_port(port)
    sdk.network.delete_network(net)
    sdk.network.delete_security_group(web)
    assert native_http.get(f"/port_groups/{web.id}").status_code == 404
