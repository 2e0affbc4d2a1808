"""North-south end to end on the kernel datapath, with real BGP: the upstream learns the public
range from both gateways' bird2, the provider router learns its routes out from the upstream
(no static route anywhere), the external host reaches a VM by its floating IP (ping and TCP),
a VM without one reaches the external host through SNAT, and a reply leaves by another
gateway than the one its request came in by."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netloom.api.client import ApiClient
from netloom.lab import nsexec, probes
from netloom.lab.lab import Lab
from netloom.lab.plan import snat_ip
from netloom.model.neighbors import ARP_KIND
from netloom.store import open_store
from waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

NewLab = Callable[..., Lab]
EXT = "198.18.0.10"


def _learned(api: ApiClient) -> set[tuple[str, str]]:
    """(prefix, next hop) of the provider's routes learned by BGP."""
    return {(r["dst"], r["next_hop_gateway"]) for r in api.list("routes") if r.get("learned_from")}


@contextlib.contextmanager
def _gateway_lab(new_lab: NewLab) -> Iterator[tuple[Lab, ApiClient, Any]]:
    """One compute host with a VM with a floating IP and one without; two gateways whose
    sessions are up and whose learned routes are in the NSDB."""
    lab = new_lab()
    lab.up(1, 2, gateways=2, datapath="bpf")
    yield _ready(lab, lab.api())  # the lab's own client: the lab closes it


def _ready(lab: Lab, api: ApiClient) -> tuple[Lab, ApiClient, Any]:
    wait_until(lambda: all(h["alive"] for h in api.list("hosts")), 30.0, "every agent alive")
    want = {(p, f"198.19.{g}.1") for p in ("0.0.0.0/0", "198.18.0.0/24") for g in (1, 2)}
    wait_until(lambda: _learned(api) >= want, 30.0, "the routes learned from the upstream")
    s = lab.state
    assert s.outside is not None
    up = s.outside.upstream_netns
    wait_until(
        lambda: len(probes.route_nexthops(up, "203.0.113.0/24")) == 2,
        30.0,
        "the upstream's two paths to the public range",
    )
    return lab, api, s


def _reached(lab: Lab, client: str, server: str, dst: str, port: int) -> tuple[str, str | None]:
    """A TCP handshake (retried while first packets wait for upcalls and ARP)."""
    got: list[tuple[str, str | None]] = []

    def ok() -> bool:
        got.append(probes.seen_source(client, server, dst, port, timeout=2.0))
        return got[-1][0] == "connected"

    wait_until(ok, 20.0, f"tcp {client} -> {dst}:{port}", step=0.2)
    return got[-1]


def test_floating_ip_and_snat_with_bgp(new_lab: NewLab) -> None:
    with _gateway_lab(new_lab) as (lab, _api, s):
        _floating_ip_and_snat(lab, s)


def _floating_ip_and_snat(lab: Lab, s: Any) -> None:
    fip_vm, snat_vm = lab.vms()[0], lab.vms()[1]
    fip = s.vms[0].floating_ip
    assert fip is not None and s.vms[1].floating_ip is None
    ext = s.outside.external_netns
    # floating IP: DNAT in, SNAT out; the VM sees the external host's own address
    wait_until(lambda: bool(probes.ping(ext, fip, timeout=1.0)), 20.0, "an echo reply")
    assert len(probes.ping(ext, fip, count=3, timeout=2.0)) == 3
    assert _reached(lab, ext, fip_vm.netns, fip, 8080) == ("connected", EXT)
    # SNAT: the external host sees the router's public address; pings come back too
    assert _reached(lab, snat_vm.netns, ext, EXT, 8081) == ("connected", snat_ip(1))
    wait_until(lambda: bool(probes.ping(snat_vm.netns, EXT, timeout=1.0)), 20.0, "echo via SNAT")
    assert len(probes.ping(snat_vm.netns, EXT, count=3, timeout=2.0)) == 3
    # the upstream's MAC on each uplink a reply may take is shared through the NSDB
    store = open_store(s.cluster.store_url)
    try:
        ips = {it.data["ip"] for it in store.list(ARP_KIND)}
    finally:
        store.close()
    assert {"198.19.1.1", "198.19.2.1"} <= ips


def test_a_reply_leaves_by_another_gateway(new_lab: NewLab) -> None:
    """Paths pinned by more specific routes: into the cloud by gw1 (the upstream's /32s), out
    by gw2 (the provider's /32 to the external host). The floating IP's reply and the SNAT
    connection's reply (translated back on gw1 with the NAT state the compute host pushed to
    every gateway of the uplinks' stateful port group) both cross gateways."""
    with _gateway_lab(new_lab) as (lab, api, s):
        _pinned_paths(lab, api, s)


def _pinned_paths(lab: Lab, api: ApiClient, s: Any) -> None:
    up, ext = s.outside.upstream_netns, s.outside.external_netns
    fip = s.vms[0].floating_ip
    assert fip is not None
    for dst in (fip, snat_ip(1)):
        nsexec.run(up, ["ip", "route", "add", f"{dst}/32", "via", "198.19.1.2"])
    provider = next(r for r in api.list("routers") if r["name"].endswith("provider"))
    gw2 = next(p for p in api.list("ports") if p["name"] == f"{lab.name}-provider-gw2")
    assert gw2["device_id"] == provider["id"]
    api.create(
        "routes",
        {
            "router_id": provider["id"],
            "dst": f"{EXT}/32",
            "next_hop_port_id": gw2["id"],
            "next_hop_gateway": "198.19.2.1",
        },
    )
    assert _reached(lab, ext, lab.vms()[0].netns, fip, 8080) == ("connected", EXT)
    assert _reached(lab, lab.vms()[1].netns, ext, EXT, 8081) == ("connected", snat_ip(1))
