"""The outside world's plan without namespaces: the address plan of gateways, uplinks and public
addresses, the upstream's bird.conf, and the lab plan with gateways applied on the real API (an
in-memory store): provider router, uplinks, BGP objects, links, routes and NAT."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netloom.api.app import create_app
from netloom.api.client import ApiClient
from netloom.api.service import ObjectService
from netloom.errors import InvalidInput
from netloom.lab.lab import Lab
from netloom.lab.plan import (
    LabPlan,
    assign_floating_ips,
    floating_ip,
    plan_outside,
    snat_ip,
    transit_addresses,
    upstream_config,
)
from netloom.lab.probes import parse_bird_protocols
from netloom.lab.state import LabState, StateFile
from netloom.lab.topology_build import plan_params
from netloom.lab.upstream import UpstreamConfig, UpstreamPeer, render_bird_conf
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan
from netloom.sim import render_json
from netloom.store.memory import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit


def test_gateways_uplinks_and_public_addresses() -> None:
    plan = LabPlan.build("t1", 2, 1, gateways=3)
    assert [h.name for h in plan.gateways] == ["t1-gw1", "t1-gw2", "t1-gw3"]
    assert [h.short for h in plan.gateways] == ["gw1", "gw2", "gw3"]
    assert [h.underlay_ip for h in plan.gateways] == ["192.0.2.201", "192.0.2.202", "192.0.2.203"]
    assert {h.role for h in plan.gateways} == {"gateway"} and plan.hosts[0].role == "compute"
    u = plan.uplinks[1]
    assert (u.host, u.host_if, u.upstream_if) == ("t1-gw2", "uplink0", "gw2")
    assert (u.port_address, u.upstream_address) == ("198.19.2.2/24", "198.19.2.1/24")
    assert (snat_ip(1), snat_ip(2)) == ("203.0.113.1", "203.0.113.2")
    assert (floating_ip(0), floating_ip(3)) == ("203.0.113.64", "203.0.113.67")
    assert transit_addresses(2) == ("198.18.128.5/30", "198.18.128.6/30")
    assert LabPlan.build("t1", 1, 1).gateways == ()
    with pytest.raises(InvalidInput, match="--gateways"):
        LabPlan.build("t1", 1, 1, gateways=33)
    with pytest.raises(InvalidInput, match="--gateways"):
        LabPlan.build("t1", 1, 1, gateways=-1)


def test_floating_ips_go_to_the_first_vm_of_each_host_or_the_first_n() -> None:
    vms = list(LabPlan.build("t1", 2, 2).vms)
    assign_floating_ips(vms, None)
    assert [(v.name, v.floating_ip) for v in vms if v.floating_ip] == [
        ("h1-vm1", "203.0.113.64"),
        ("h2-vm1", "203.0.113.65"),
    ]
    vms = list(LabPlan.build("t1", 2, 2).vms)
    assign_floating_ips(vms, 3)
    assert [v.floating_ip for v in vms] == ["203.0.113.64", "203.0.113.65", "203.0.113.66", None]
    with pytest.raises(InvalidInput, match="--floating-ips"):
        assign_floating_ips(vms, 5)


def _upstream(gateways: int = 2, *, bfd: bool = True) -> UpstreamConfig:
    plan = LabPlan.build("t1", 1, 1, gateways=gateways)
    return upstream_config(plan_outside("t1", "/run/x/t1.d", bfd=bfd), list(plan.uplinks))


def test_bird_conf_a_session_per_uplink_ecmp_and_bfd() -> None:
    conf = render_bird_conf(_upstream(2))
    assert "router id 198.18.0.1;" in conf
    assert "merge paths yes;" in conf  # the kernel gets one multipath route (ECMP)
    assert "export where source = RTS_BGP;" in conf  # nothing but BGP routes in the kernel
    assert "local as 64512;" in conf and "hold time 3;" in conf and "keepalive time 1;" in conf
    for g in (1, 2):
        assert (
            f"protocol bgp gw{g} from uplink {{\n  neighbor 198.19.{g}.2 as 64513;\n"
            f"  source address 198.19.{g}.1;\n  bfd on;\n}}"
        ) in conf
    assert "route 0.0.0.0/0 blackhole;" in conf and "route 198.18.0.0/24 blackhole;" in conf
    assert "if net ~ [ 203.0.113.0/24+ ] then accept;" in conf
    assert "protocol bfd {" in conf and "multiplier 5;" in conf
    plain = render_bird_conf(_upstream(1, bfd=False))
    assert "protocol bfd" not in plain and "bfd off;" in plain


def test_bird_conf_refuses_bad_input() -> None:
    peer = UpstreamPeer("gw1", "198.19.1.2", "198.19.1.1", 64513)
    with pytest.raises(InvalidInput, match="named twice"):
        render_bird_conf(UpstreamConfig("198.18.0.1", 64512, (peer, peer), (), ()))
    with pytest.raises(InvalidInput, match="bad prefix"):
        render_bird_conf(UpstreamConfig("198.18.0.1", 64512, (peer,), ("10.0.0.1/8",), ()))
    with pytest.raises(InvalidInput, match="RFC 4271"):
        render_bird_conf(UpstreamConfig("198.18.0.1", 64512, (peer,), (), (), hold_time=2))


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
def test_bird_parses_the_rendered_conf(tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(render_bird_conf(_upstream(6)))
    done = subprocess.run(
        ["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


# -- the lab plan with gateways, on the real API ---------------------------------------------------


@pytest.fixture
def api() -> Iterator[ApiClient]:
    store = MemoryStore()
    client = ApiClient("http://testserver")
    with TestClient(create_app(ObjectService(store)), base_url="http://testserver") as http:
        client._http = [http]  # the test client speaks the same httpx interface
        yield client
    store.close()


def _lab_with_gateways(api: ApiClient, gateways: int = 2) -> Lab:
    plan = LabPlan.build("t1", 2, 2, gateways=gateways)
    state = LabState(name="t1", dir="/run/x/t1.d", switch_netns="t1-sw")
    state.hosts = [*plan.hosts, *plan.gateways]
    state.vms = list(plan.vms)
    state.uplinks = list(plan.uplinks)
    state.outside = plan_outside("t1", state.dir)
    for h in state.hosts:
        h.host_id = api.create("hosts", {"name": h.name})["id"]
    for i, v in enumerate(state.vms):
        v.ip = f"10.0.0.{10 + i}/24"
    assign_floating_ips(state.vms, None)
    return Lab(StateFile(Path("/nonexistent/t1.json"), state))


def _by(api: ApiClient, collection: str, **match: Any) -> list[dict[str, Any]]:
    return [d for d in api.list(collection) if all(d.get(k) == v for k, v in match.items())]


def test_lab_plan_with_gateways_makes_the_provider_uplinks_bgp_links_and_nat(
    api: ApiClient,
) -> None:
    lab = _lab_with_gateways(api)
    docs = parse_documents(load_plan("lab").expand(plan_params(lab)))
    dry = Applier(api, docs, dry_run=True)
    dry.run()
    assert _by(api, "routers") == []  # a dry run writes nothing
    applier = Applier(api, docs)
    applier.run()
    ids = applier.ids
    provider = api.get("routers", ids["provider"])
    assert provider["name"] == "t1-provider"
    group = api.get("port_groups", ids["uplinks"])
    assert group["stateful"] is True
    hosts = {h.name: h.host_id for h in lab.state.hosts}
    for g in (1, 2):
        port = api.get("ports", ids[f"uplink-gw{g}"])
        assert port["device_id"] == provider["id"] and port["type"] == "router"
        assert (port["host_id"], port["interface_name"]) == (hosts[f"t1-gw{g}"], "uplink0")
        assert port["address"] == f"198.19.{g}.2/24" and port["port_group_ids"] == [group["id"]]
        peer = api.get("bgp_peers", ids[f"peer-gw{g}"])
        assert (peer["address"], peer["asn"], peer["local_as"]) == (f"198.19.{g}.1", 64512, 64513)
        assert (peer["hold_time"], peer["keepalive"], peer["bfd"]) == (3, 1, True)
    assert [n["prefix"] for n in _by(api, "bgp_networks")] == ["203.0.113.0/24"]
    # the lab's router: linked to the provider, a default route to it, its NAT chains
    router = api.get("routers", ids["router"])
    tlink = api.get("ports", ids["tlink-lab"])
    assert tlink["peer_id"] == ids["plink-lab"] and tlink["address"] == "198.18.128.2/30"
    default = _by(api, "routes", router_id=router["id"], dst="0.0.0.0/0")
    assert [(r["next_hop_port_id"], r["next_hop_gateway"]) for r in default] == [
        (tlink["id"], "198.18.128.1")
    ]
    public = _by(api, "routes", router_id=provider["id"], next_hop_gateway="198.18.128.2")
    assert sorted(r["dst"] for r in public) == [
        "203.0.113.1/32",  # the lab router's SNAT address
        "203.0.113.64/32",  # h1-vm1's floating IP
        "203.0.113.65/32",  # h2-vm1's
    ]
    inbound = _by(api, "rules", chain_id=router["inbound_filter_id"])
    outbound = _by(api, "rules", chain_id=router["outbound_filter_id"])
    assert sorted((r["action"], r.get("nw_dst")) for r in inbound) == [
        ("dnat", "203.0.113.64/32"),
        ("dnat", "203.0.113.65/32"),
        ("reverse-snat", "203.0.113.1/32"),
    ]
    snat = [r for r in outbound if not r["static"]]
    assert [(r["out_port_ids"], r["nat_targets"][0]["address_from"]) for r in snat] == [
        ([tlink["id"]], "203.0.113.1")
    ]
    assert snat[0]["nat_targets"][0]["port_from"] == 1024
    assert {r["out_port_ids"][0] for r in outbound} == {tlink["id"]}  # only toward the provider


def test_a_lab_without_gateways_has_no_provider(api: ApiClient) -> None:
    lab = _lab_with_gateways(api)
    lab.state.uplinks, lab.state.outside = [], None
    params = plan_params(lab)
    assert "gateways" not in params
    docs = load_plan("lab").expand(params)
    assert {d["kind"] for d in docs} == {"tenant", "router", "bridge", "port", "dhcp_subnet"}


def test_a_vm_without_floating_ip_leaves_by_snat_through_the_provider(api: ApiClient) -> None:
    """The what-if trace of a VM's packet to the external host, with the route the gateway
    agent would learn written by hand (a test scaffold): SNAT on the lab's router, then the
    provider's route out of an uplink, whose next hop is the upstream (ARP, not yet known)."""
    lab = _lab_with_gateways(api)
    applier = Applier(api, parse_documents(load_plan("lab").expand(plan_params(lab))))
    applier.run()
    ids = applier.ids
    api.create(
        "routes",
        {
            "router_id": ids["provider"],
            "dst": "0.0.0.0/0",
            "next_hop_port_id": ids["uplink-gw1"],
            "next_hop_gateway": "198.19.1.1",
        },
    )
    probe = {"from_port": ids["port-h1-vm2"], "dst_ip": "198.18.0.10", "proto": "tcp"}
    body = api.request("POST", "/trace", json_body={**probe, "sport": 40000, "dport": 80})
    text = render_json(body)
    assert re.search(r"rule +nat-lab-out #100000 .* snat +\(src -> 203\.0\.113\.1:\d+\)", text)
    assert re.search(r"router +t1-provider +route .* via t1-provider-gw1", text)
    assert re.search(r"router +t1-provider +arp-request +\(who has 198\.19\.1\.1\)", text)
    assert body["verdict"] == "not-yet"


def test_bird_protocol_table_is_parsed() -> None:
    text = (
        "BIRD 2.0.12 ready.\n"
        "Name       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     15:30:12.351  \n"
        "announce   Static     master4    up     15:30:12.351  \n"
        "gw1        BGP        ---        up     15:31:02.114  Established   \n"
        "gw2        BGP        ---        start  15:30:12.351  Connect       "
        "Socket: No route to host\n"
    )
    assert parse_bird_protocols(text) == {
        "device1": ("Device", "up", ""),
        "announce": ("Static", "up", ""),
        "gw1": ("BGP", "up", "Established"),
        "gw2": ("BGP", "start", "Connect Socket: No route to host"),
    }
