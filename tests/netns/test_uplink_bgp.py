"""An uplink on the real system: a router port bound to a NIC of a gateway host (the BPF
datapath on it), an upstream namespace on the other end of the cable.

* the upstream pings the port's address and, by a static route, a VM behind the router;
* with a BGP peer on the router, the agent's bird2 sidecar peers with a real bird2 upstream
  *through the datapath* (BGP steered by flows between the uplink and the sidecar): the
  session comes up, the router's network is announced, the upstream's route is learned;
* bird killed: the agent restarts it and the session comes back;
* the agent stopped (SIGTERM): the sidecar's namespace, bird and veth are gone;
* what the gateway learns reaches the NSDB (a route of the router learned on the uplink, the
  peer's status established) and goes when the gateway's agent is killed.

The upstream namespace, its static route and its bird are this test's scaffolding.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from netloom.gateway.config import names
from netloom.gateway.plumbing import kill, pids_in
from netloom.lab import netns, nsexec
from netloom.lab.plan import sidecar_ns_prefix
from waiting import wait_until

from .conftest import NET1, NetLab, VmSpec, netlab, ping_ok

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

UP_IP, PORT_IP = "198.19.1.1", "198.19.1.2"
PORT_MAC = "02:00:00:00:aa:02"
UP_AS, GW_AS = 65000, 65001
EXTERNAL = "198.18.0.0/24"
ADVERTISED = "203.0.113.0/24"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def lab() -> Iterator[NetLab]:
    if shutil.which("bird") is None:
        pytest.skip("needs bird2")
    with netlab(1, {"a": VmSpec(1, 1, 10)}) as lab:
        yield lab


@pytest.fixture
def upstream(lab: NetLab) -> Iterator[tuple[str, Path]]:
    """The upstream namespace (named under the lab, so the lab's teardown removes it) cabled
    to the gateway host's ``upl0``, with a static route to the tenant's net1."""
    ns = f"{lab.name}-up"
    run_dir = Path(f"/tmp/nltup{secrets.token_hex(3)}")
    run_dir.mkdir()
    bird: list[subprocess.Popen[bytes]] = []
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", lab.host_ns(1), "link", "add", "upl0", "type", "veth",
           "peer", "name", "eth0", "netns", ns)  # fmt: skip
        nsexec.run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        sh("ip", "-n", ns, "addr", "add", f"{UP_IP}/24", "dev", "eth0")
        for where, dev in ((ns, "eth0"), (ns, "lo"), (lab.host_ns(1), "upl0")):
            sh("ip", "-n", where, "link", "set", dev, "up")
        sh("ip", "-n", ns, "route", "add", f"{NET1}.0/24", "via", PORT_IP)
        (run_dir / "up.conf").write_text(_upstream_conf())
        argv = ["ip", "netns", "exec", ns, "bird", "-f", "-c", str(run_dir / "up.conf")]
        argv += ["-s", str(run_dir / "up.ctl"), "-P", str(run_dir / "up.pid")]
        bird.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield ns, run_dir
    finally:
        for p in bird:
            p.kill()
            p.wait(10)
        shutil.rmtree(run_dir, ignore_errors=True)


def _upstream_conf() -> str:
    return (
        f"router id {UP_IP};\nprotocol device {{}}\n"
        f"protocol static ext {{\n  ipv4;\n  route {EXTERNAL} blackhole;\n}}\n"
        f"protocol bgp downlink {{\n  local {UP_IP} as {UP_AS};\n"
        f"  neighbor {PORT_IP} as {GW_AS};\n  direct;\n  hold time 3;\n  keepalive time 1;\n"
        "  connect retry time 1;\n"
        "  ipv4 { import all; export where source = RTS_STATIC; };\n}\n"
    )


def _metric(lab: NetLab, name: str, peer: str | None = None) -> float:
    key = f'{name}{{peer="{peer}"}}' if peer else name
    return lab.metrics(1).get(key, -1.0)


def test_uplink_pings_bgp_through_the_datapath_restart_and_cleanup(
    lab: NetLab, upstream: tuple[str, Path]
) -> None:
    up_ns, run_dir = upstream
    api = lab.api
    router = lab.ids["router"]
    host_id = lab.lab.state.hosts[0].host_id
    assert host_id is not None
    port = api.create(
        "ports",
        {"device_id": router, "type": "router", "address": f"{PORT_IP}/24", "mac": PORT_MAC},
    )["id"]
    api.bind_port(port, host_id, "upl0")
    wait_until(partial(ping_ok, up_ns, PORT_IP), 20, "the upstream to ping the port", 0.1)
    wait_until(partial(ping_ok, up_ns, lab.ip("a")), 20, "the upstream to ping VM a", 0.1)

    peer = api.create(
        "bgp_peers",
        {"router_id": router, "address": UP_IP, "asn": UP_AS, "local_as": GW_AS,
         "hold_time": 3, "keepalive": 1},
    )["id"]  # fmt: skip
    api.create("bgp_networks", {"router_id": router, "prefix": ADVERTISED})
    up = partial(_metric, lab, "netloom_bgp_session_up", peer)
    wait_until(lambda: up() == 1, 30, "the BGP session through the datapath", 0.2)
    wait_until(
        lambda: _metric(lab, "netloom_bgp_routes_learned", peer) == 1, 10, "route learned", 0.1
    )
    ns, host_if, _side = names(port, sidecar_ns_prefix(lab.host_ns(1)))
    assert EXTERNAL.split("/")[0] in sh("ip", "-n", ns, "route", "show", "table", "all")
    announced = sh("birdc", "-s", str(run_dir / "up.ctl"), "show", "route", ADVERTISED)
    assert ADVERTISED in announced

    [bird] = pids_in(ns)
    os.kill(bird, signal.SIGKILL)
    restarts = partial(_metric, lab, "netloom_bgp_daemon_restarts_total")
    wait_until(lambda: restarts() == 1, 10, "bird's death noticed", 0.1)
    assert up() == 0  # the session is down as soon as bird is
    wait_until(lambda: up() == 1, 30, "bird restarted and the session back", 0.2)

    agent = lab.agent_pid(1)
    assert agent is not None
    [bird] = pids_in(ns)
    os.kill(agent, signal.SIGTERM)
    wait_until(lambda: lab.agent_pid(1) is None, 15, "the agent to stop", 0.1)
    assert not Path(f"/run/netns/{ns}").exists()
    assert not Path(f"/proc/{bird}").exists()
    assert host_if not in sh("ip", "-n", lab.host_ns(1), "-o", "link")


def _learned(lab: NetLab, peer: str) -> list[dict[str, Any]]:
    return lab.api.list("routes", {"learned_from": peer})


def test_learned_route_and_session_state_reach_the_api_and_go_with_the_host(
    lab: NetLab, upstream: tuple[str, Path]
) -> None:
    up_ns, _ = upstream
    api = lab.api
    router = lab.ids["router"]
    host_id = lab.lab.state.hosts[0].host_id
    assert host_id is not None
    port = api.create(
        "ports",
        {"device_id": router, "type": "router", "address": f"{PORT_IP}/24", "mac": PORT_MAC},
    )["id"]
    api.bind_port(port, host_id, "upl0")
    wait_until(partial(ping_ok, up_ns, PORT_IP), 20, "the upstream to ping the port", 0.1)
    peer = api.create(
        "bgp_peers",
        {"router_id": router, "address": UP_IP, "asn": UP_AS, "local_as": GW_AS,
         "hold_time": 3, "keepalive": 1},
    )["id"]  # fmt: skip
    wait_until(lambda: len(_learned(lab, peer)) == 1, 40, "the learned route in the NSDB", 0.2)
    (route,) = _learned(lab, peer)
    assert (route["dst"], route["next_hop_port_id"], route["next_hop_gateway"]) == (
        EXTERNAL,
        port,
        UP_IP,
    )
    status = api.get("bgp_peers", peer)["status"]
    assert (status["state"], status["port_id"], status["host_id"]) == (
        "established",
        port,
        host_id,
    )
    sidecar_ns = names(port, sidecar_ns_prefix(lab.host_ns(1)))[0]
    try:
        lab.kill_agent(1)  # SIGKILL: nothing of its own runs, the cluster notices the silence
        wait_until(lambda: _learned(lab, peer) == [], 20, "the dead gateway's routes gone", 0.2)
        assert api.get("bgp_peers", peer)["status"]["state"] == "down"
    finally:  # the killed agent could not remove its sidecar's namespace
        for pid in pids_in(sidecar_ns):
            kill(pid)
        if sidecar_ns in netns.list_netns("nlgw-"):
            netns.delete(sidecar_ns)
