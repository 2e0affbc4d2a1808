"""The lab's outside world in namespaces: the upstream router with bird2, the external host,
an uplink cable per gateway host; bird restarted when it died; everything gone after down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from netloom.errors import LabError
from netloom.lab import netns, nsexec, outside, probes, supervisor
from netloom.lab.lab import Lab
from netloom.lab.plan import upstream_config
from netloom.lab.state import OutsideRecord
from netloom.lab.supervisor import RestartPolicy
from netloom.lab.upstream import render_bird_conf
from netloom.netns import entered
from waiting import wait_until

pytestmark = pytest.mark.netns

NewLab = Callable[..., Lab]


def _bird(lab: Lab) -> psutil.Process | None:
    recs = [p for p in lab.state.processes if p.role == "bird"]
    return supervisor.still_ours(recs[0]) if recs and supervisor.alive(recs[0]) else None


def test_gateways_upstream_external_host_and_bird_then_gone(new_lab: NewLab) -> None:
    lab = new_lab()
    lab.up(1, 1, agents=False, gateways=2)
    name, s = lab.name, lab.state
    assert s.outside is not None
    up, ext = s.outside.upstream_netns, s.outside.external_netns
    assert set(netns.list_netns(f"{name}-")) >= {f"{name}-up", f"{name}-ext", f"{name}-gw1"}
    # the cables: uplink0 in each gateway host without an address, gwN in the upstream
    for g in (1, 2):
        gw = netns.link_info(f"{name}-gw{g}", "uplink0")
        assert gw.addresses == [] and gw.mtu == 1500
        assert netns.link_info(up, f"gw{g}").addresses == [f"198.19.{g}.1/24"]
        assert netns.link_info(f"{name}-gw{g}", "eth0").addresses == [f"192.0.2.20{g}/24"]
    assert netns.link_info(ext, "eth0").addresses == ["198.18.0.10/24"]
    for key, want in outside.UPSTREAM_SYSCTLS.items():
        got = nsexec.run(up, ["cat", f"/proc/sys/{key}"]).stdout.strip()
        assert got == want, key
    # the external host reaches the upstream, which reaches nothing further without BGP
    assert probes.ping(ext, "198.18.0.1", count=2, timeout=2.0)
    # bird: the rendered config, a session per uplink, listening for BGP (TCP 179)
    conf = Path(s.outside.bird_conf).read_text()
    assert conf == render_bird_conf(upstream_config(s.outside, s.uplinks))
    shown = outside.birdc(s.outside, "show", "protocols")
    assert "gw1        BGP" in shown and "gw2        BGP" in shown
    assert nsexec.run(up, ["ss", "-Hltn", "sport = :179"]).stdout.strip()
    protocols = probes.bird_protocols(s.outside.bird_socket)
    assert {n: p[0] for n, p in protocols.items() if p[0] == "BGP"} == {"gw1": "BGP", "gw2": "BGP"}
    bird = _bird(lab)
    assert bird is not None
    # the upstream's multipath hash reads the 5-tuple: with a two-path route (written by the
    # test where BGP would install it), flows between the same two hosts take both paths
    multipath = ["nexthop", "via", "198.19.1.2", "nexthop", "via", "198.19.2.2"]
    nsexec.run(up, ["ip", "route", "add", "203.0.113.0/24", *multipath])
    assert sorted(probes.route_nexthops(up, "203.0.113.0/24")) == ["198.19.1.2", "198.19.2.2"]
    spread = probes.route_choices(up, "203.0.113.64", "198.18.0.10", "ext0", 64)
    assert set(spread) == {"198.19.1.2", "198.19.2.2"}, spread
    # a gateway's uplink down: the upstream stops choosing that path (carrier loss; the kernel
    # hands the carrier change to its link watcher, which may run up to a second later)
    nsexec.run(f"{name}-gw1", ["ip", "link", "set", "uplink0", "down"], check=True)

    def only_the_live_path() -> bool:
        left = probes.route_choices(up, "203.0.113.64", "198.18.0.10", "ext0", 64)
        return set(left) == {"198.19.2.2"}

    wait_until(only_the_live_path, 5.0, "the upstream choosing only the live gateway's path")
    nsexec.run(f"{name}-gw1", ["ip", "link", "set", "uplink0", "up"], check=True)
    assert (lab.netns_of("ext"), lab.netns_of("up"), lab.netns_of("gw2")) == (
        ext,
        up,
        f"{name}-gw2",
    )
    status = lab.status()
    assert status["outside"]["upstream_netns"] == up and len(status["uplinks"]) == 2
    pins, pids = list(s.bpf_pins), [p.pid for p in s.processes if supervisor.alive(p)]
    lab.down()
    assert netns.list_netns(f"{name}-") == []
    assert not Path(s.dir).exists()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    assert [p for p in pins if Path(p).exists()] == []


def test_bird_killed_is_restarted_by_lab_status(new_lab: NewLab) -> None:
    lab = new_lab()
    lab.up(1, 0, agents=False, gateways=1)
    assert lab.state.outside is not None
    bird = _bird(lab)
    assert bird is not None
    os.kill(bird.pid, signal.SIGKILL)
    policy = RestartPolicy(backoff_s=0.0)

    def restarted() -> bool:
        lab.supervise(policy)
        now = _bird(lab)
        return now is not None and now.pid != bird.pid

    wait_until(restarted, 10.0, "bird restarted")
    rec = lab.state.outside
    wait_until(lambda: "gw1" in _protocols(rec), 10.0, "the new bird answering with its sessions")


def _protocols(rec: OutsideRecord) -> str:
    try:
        return outside.birdc(rec, "show", "protocols")
    except LabError:
        return ""  # not listening yet


@pytest.mark.bpf
@pytest.mark.slow
def test_a_floating_ip_is_reached_through_a_gateway_uplink(new_lab: NewLab) -> None:
    """External host -> floating IP with the upstream's route written by the test (a scaffold
    standing in for the route BGP installs): the upstream resolves the uplink port's address
    (the provider router answers ARP on the gateway's datapath), the gateway's agent routes
    the datagram through the provider and the lab's router (DNAT) to the VM on a compute host,
    which sees the external host's own address. One way only: the reply's path needs the
    provider's route out, which only BGP gives it."""
    lab = new_lab()
    lab.up(1, 1, gateways=1, datapath="bpf")
    api = lab.api()
    wait_until(lambda: all(h["alive"] for h in api.list("hosts")), 30.0, "every agent alive")
    s = lab.state
    assert s.outside is not None
    vm = lab.vms()[0]
    fip = s.vms[0].floating_ip
    assert fip == "203.0.113.64"
    nsexec.run(
        s.outside.upstream_netns, ["ip", "route", "add", "203.0.113.0/24", "via", "198.19.1.2"]
    )
    with entered(vm.netns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(s.outside.external_netns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("0.0.0.0", 9999))
        rx.setblocking(False)
        got: list[tuple[bytes, str]] = []

        def arrived() -> bool:
            tx.sendto(b"north", (fip, 9999))  # again: the first ones wait for upcalls
            try:
                data, (src, _) = rx.recvfrom(100)
            except BlockingIOError:
                return False
            got.append((data, src))
            return True

        wait_until(arrived, 15.0, "a datagram to the floating IP in the VM", step=0.2)
    assert got[0] == (b"north", "198.18.0.10")
    neigh = nsexec.run(s.outside.upstream_netns, ["ip", "neigh", "show", "198.19.1.2"]).stdout
    assert "lladdr" in neigh  # the provider router's uplink port answered ARP


# A gateway's BGP speaker as the test's own bird (a scaffold for the upstream's side: the lab's
# agents are off, so the uplink NIC is the gateway namespace's own interface). It announces the
# public range and a prefix the upstream must refuse.
STAND_IN = """router id {ip};
protocol device {{
}}
protocol static offered {{
  ipv4;
  route 203.0.113.0/24 blackhole;
  route 10.0.0.0/8 blackhole;
}}
protocol bfd {{
  interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 5; }};
}}
protocol bgp upstream {{
  local {ip} as 64513;
  neighbor {peer} as 64512;
  hold time 3;
  keepalive time 1;
  connect delay time 1;
  connect retry time 1;
  bfd on;
  ipv4 {{ import none; export where proto = "offered"; }};
}}
"""


def _stand_in(lab: Lab, g: int, tmp: Path) -> subprocess.Popen[bytes]:
    u = lab.state.uplinks[g - 1]
    ns = u.host
    netns.add_address(ns, u.host_if, u.port_address)
    ip, peer = u.port_address.split("/")[0], u.upstream_address.split("/")[0]
    conf = tmp / f"gw{g}.conf"
    conf.write_text(STAND_IN.format(ip=ip, peer=peer))
    argv = [
        "bird",
        "-f",
        "-c",
        str(conf),
        "-s",
        str(tmp / f"gw{g}.ctl"),
        "-P",
        str(tmp / f"{g}.pid"),
    ]
    return nsexec.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_upstream_peers_merges_equal_routes_and_drops_a_dead_gateway(
    new_lab: NewLab, tmp_path: Path
) -> None:
    lab = new_lab()
    lab.up(1, 0, agents=False, gateways=2)
    rec = lab.state.outside
    assert rec is not None
    up = rec.upstream_netns
    speakers = [_stand_in(lab, g, tmp_path) for g in (1, 2)]
    try:

        def sessions() -> dict[str, str]:
            seen = probes.bird_protocols(rec.bird_socket)
            return {n: seen[n][2] for n in ("gw1", "gw2")}

        wait_until(lambda: set(sessions().values()) == {"Established"}, 20.0, "both sessions up")
        both = ["198.19.1.2", "198.19.2.2"]
        wait_until(
            lambda: sorted(probes.route_nexthops(up, "203.0.113.0/24")) == both,
            10.0,
            "one multipath route over both gateways",
        )
        assert probes.route_nexthops(up, "10.0.0.0/8") == []  # refused by the import filter
        wait_until(
            lambda: outside.birdc(rec, "show", "bfd", "sessions").count(" Up ") == 2,
            10.0,
            "both BFD sessions up",
        )
        speakers[0].kill()  # gateway 1 dies: BFD notices, bird withdraws its path
        wait_until(
            lambda: probes.route_nexthops(up, "203.0.113.0/24") == ["198.19.2.2"],
            10.0,
            "the dead gateway's path withdrawn",
        )
    finally:
        for p in speakers:
            p.kill()
            p.wait(timeout=10)
