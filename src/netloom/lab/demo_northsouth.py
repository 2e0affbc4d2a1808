"""The demo's north-south steps (a lab with gateways): the upstream router's BGP sessions to
every gateway, its route to the floating range with one path per gateway, the external host
reaching a VM by its floating IP, and a VM without one reaching the external host through SNAT.

Each step reads the real thing (bird's protocol table, the upstream's kernel routes, TCP
handshakes whose far end reports the source address it saw) and fails with what it saw
otherwise; nothing falls back to a static route."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from netloom.errors import DemoStepFailed, LabError
from netloom.lab import outside, probes
from netloom.lab.addressing import EXTERNAL_HOST_IP, EXTERNAL_IF, PUBLIC_NET
from netloom.lab.demo_plan import (
    BGP_TIMEOUT,
    CONNECT_TIMEOUT,
    FLOATING_VM,
    NORTH_PORT,
    SNAT_VM,
    SPREAD_FLOWS,
)
from netloom.lab.plan import floating_ip, snat_ip

if TYPE_CHECKING:
    from netloom.lab.demo import Demo


def step_bgp(demo: Demo) -> str:
    """Every uplink's session, as the upstream's bird reports it, established."""
    rec = outside.require(demo.lab.state.outside, demo.lab.name)
    names = [u.upstream_if for u in demo.lab.state.uplinks]
    deadline = time.monotonic() + BGP_TIMEOUT
    while True:
        try:
            seen = probes.bird_protocols(rec.bird_socket)
        except LabError as exc:
            raise DemoStepFailed(exc.message) from None
        states = {n: seen.get(n, ("BGP", "missing", ""))[1:] for n in names}
        if all(info.startswith("Established") for _, info in states.values()):
            break
        if time.monotonic() > deadline:
            shown = "; ".join(f"{n} {st} {info}" for n, (st, info) in states.items())
            raise DemoStepFailed(f"not every session established in {BGP_TIMEOUT:.0f} s: {shown}")
        time.sleep(0.2)
    demo.summary.northsouth["bgp"] = {n: info for n, (_, info) in states.items()}
    return "\n".join(
        f"upstream AS {rec.upstream_as} <-> {n} (gateway AS {rec.gateway_as}): {info}"
        for n, (_, info) in states.items()
    )


def step_routes(demo: Demo) -> str:
    """The upstream's kernel route to the public range: one next hop per gateway (bird merged
    the equal BGP routes), and how its 5-tuple hash spreads flows over them."""
    rec = outside.require(demo.lab.state.outside, demo.lab.name)
    want = sorted(u.port_address.split("/")[0] for u in demo.lab.state.uplinks)
    hops = sorted(probes.route_nexthops(rec.upstream_netns, str(PUBLIC_NET)))
    if hops != want:
        raise DemoStepFailed(f"upstream route to {PUBLIC_NET}: next hops {hops}, expected {want}")
    fip = floating_ip(0)
    spread = probes.route_choices(
        rec.upstream_netns, fip, EXTERNAL_HOST_IP, EXTERNAL_IF, SPREAD_FLOWS
    )
    demo.summary.northsouth["upstream_nexthops"] = hops
    demo.summary.northsouth["spread"] = dict(spread)
    return (
        f"ip route show {PUBLIC_NET} (in {rec.upstream_netns}): "
        + ", ".join(f"nexthop via {h}" for h in hops)
        + f"\n{SPREAD_FLOWS} TCP flows {EXTERNAL_HOST_IP} -> {fip} by source port: "
        + ", ".join(f"{n} via {h}" for h, n in sorted(spread.items()))
    )


def step_floating_ip(demo: Demo) -> str:
    """The external host pings the VM's floating IP and opens a TCP connection to it; the VM
    sees the external host's own address (DNAT in, SNAT out, nothing else)."""
    rec = outside.require(demo.lab.state.outside, demo.lab.name)
    vm, fip = demo.vms[FLOATING_VM], floating_ip(0)
    first = _first_echo(rec.external_netns, fip)
    rtts = probes.ping(rec.external_netns, fip, count=3, timeout=1.0) if first else []
    outcome, source = probes.seen_source(
        rec.external_netns, vm.netns, fip, NORTH_PORT, CONNECT_TIMEOUT
    )
    demo.summary.northsouth["floating_ip"] = {
        "vm": vm.name,
        "floating_ip": fip,
        "first_echo_ms": None if first is None else round(first * 1000, 3),
        "ping_replies": len(rtts),
        "tcp": outcome,
        "vm_saw": source,
    }
    if first is None or outcome != "connected" or source != EXTERNAL_HOST_IP:
        raise DemoStepFailed(
            f"external host -> {fip} ({vm.name}): {'an' if first else 'no'} echo reply, "
            f"tcp/{NORTH_PORT} {outcome}, the VM saw source {source}"
        )
    return (
        f"external host {EXTERNAL_HOST_IP} -> {fip} ({vm.name} {vm.expected_ip}): "
        f"first echo {first * 1000:.2f} ms (upcalls, ARP), then {len(rtts)}/3 replies, "
        f"tcp/{NORTH_PORT} "
        f"connected, {vm.name} saw source {source}"
    )


def _first_echo(ns: str, dst: str) -> float | None:
    """The round trip of the first echo reply, in up to 3 tries (the first packets of a flow
    are upcalls on the gateway and on the VM's host, the reply's next hop may need ARP)."""
    for _ in range(3):
        rtts = probes.ping(ns, dst, timeout=2.0)
        if rtts:
            return rtts[0]
    return None


def step_snat(demo: Demo) -> str:
    """A VM without a floating IP connects to the external host, which sees the tenant
    router's public address."""
    rec = outside.require(demo.lab.state.outside, demo.lab.name)
    vm, public = demo.vms[SNAT_VM], snat_ip(1)
    outcome, source = probes.seen_source(
        vm.netns, rec.external_netns, EXTERNAL_HOST_IP, NORTH_PORT, CONNECT_TIMEOUT
    )
    demo.summary.northsouth["snat"] = {"vm": vm.name, "tcp": outcome, "external_saw": source}
    if outcome != "connected" or source != public:
        raise DemoStepFailed(
            f"{vm.name} -> external host tcp/{NORTH_PORT}: {outcome}, it saw source {source} "
            f"(expected {public})"
        )
    return (
        f"{vm.name} {vm.expected_ip} -> external host {EXTERNAL_HOST_IP} tcp/{NORTH_PORT}: "
        f"connected; the external host saw source {source} (SNAT, a leased port block)"
    )


__all__ = ["step_bgp", "step_floating_ip", "step_routes", "step_snat"]
