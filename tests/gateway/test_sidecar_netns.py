"""A real bird2 upstream peers with a gateway sidecar: session up, routes learned and
withdrawn as netlink events, bird killed and restarted, everything removed on close.

Scaffolding (the test's, not the product's): a "host" namespace with a bridge standing in for
the datapath, cabling the sidecar's host-side veth to an "upstream" namespace that runs bird.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netloom.gateway.config import names
from netloom.gateway.manager import Gateway, desired
from netloom.gateway.metrics import GatewayMetrics
from netloom.gateway.sidecar import SidecarSettings
from netloom.model.bgp import BgpNetwork, BgpPeer, LearnedRoute, PeerStatus, SessionState
from netloom.model.records import Port
from netloom.model.types import new_id
from waiting import eventually

pytestmark = pytest.mark.netns

UP_IP, GW_IP = "198.19.1.1", "198.19.1.2"  # RFC 2544 benchmark range, as the lab's uplinks
UP_AS, GW_AS = 65000, 65001
EXTERNAL = "198.18.0.0/24"
ADVERTISED = "203.0.113.0/24"
MORE = "203.0.113.128/25"
BFD_UPSTREAM = 'protocol bfd { interface "*" { interval 100 ms; }; }\n'


def _need() -> None:
    if os.geteuid() != 0 or shutil.which("bird") is None or shutil.which("birdc") is None:
        pytest.skip("needs root and bird2")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Recorder:
    routes: dict[str, tuple[LearnedRoute, ...]] = field(default_factory=dict)
    status: dict[str, PeerStatus] = field(default_factory=dict)

    reports: int = 0
    sets: list[tuple[LearnedRoute, ...]] = field(default_factory=list)  # every report, in order

    def learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        self.routes[port_id] = tuple(routes)
        self.sets.append(tuple(routes))
        self.reports += 1

    def peer_status(self, status: PeerStatus) -> None:
        self.status[status.peer_id] = status


@dataclass
class Upstream:
    ns: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> str:
        return str(self.dir / "up.ctl")

    def configure(self, routes: Sequence[str], *, bfd: bool = False) -> None:
        statics = "".join(f"  route {r} blackhole;\n" for r in routes)
        text = (
            f"router id {UP_IP};\nprotocol device {{}}\n"
            + (BFD_UPSTREAM if bfd else "")
            + f"protocol static announced {{\n  ipv4;\n{statics}}}\n"
            + f"protocol bgp downlink {{\n  local {UP_IP} as {UP_AS};\n"
            f"  neighbor {GW_IP} as {GW_AS};\n  direct;\n  hold time 3;\n  keepalive time 1;\n"
            f"  connect retry time 1;\n{'  bfd on;' if bfd else ''}\n"
            "  ipv4 { import all; export where source = RTS_STATIC; };\n}\n"
        )
        (self.dir / "up.conf").write_text(text)
        if self.proc is None:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "bird", "-f", "-c", str(self.dir / "up.conf"),
                 "-s", self.sock, "-P", str(self.dir / "up.pid")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            sh("birdc", "-s", self.sock, "configure")

    def has_route(self, prefix: str) -> bool:
        """Whether the upstream's bird holds a route to ``prefix`` (learned from the sidecar)."""
        argv = ["birdc", "-s", self.sock, "show", "route", prefix]
        got = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return prefix in got.stdout

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short run directory: bird's control socket path must fit sockaddr_un."""
    d = Path(f"/tmp/nltgw{secrets.token_hex(3)}")
    d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def world(short_tmp: Path) -> Iterator[tuple[str, Upstream]]:
    """(host namespace, upstream) cabled through a bridge in the host namespace."""
    _need()
    tag = secrets.token_hex(3)
    host, up = f"nltgwh{tag}", f"nltgwu{tag}"
    upstream = Upstream(up, short_tmp)
    try:
        sh("ip", "netns", "add", host)
        sh("ip", "netns", "add", up)
        sh("ip", "-n", host, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", host, "link", "add", "hup", "type", "veth", "peer", "name", "up0",
           "netns", up)  # fmt: skip
        sh("ip", "-n", host, "link", "set", "hup", "master", "br0")
        for ns, dev in ((host, "br0"), (host, "hup"), (up, "up0"), (up, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", up, "addr", "add", f"{UP_IP}/24", "dev", "up0")
        yield host, upstream
    finally:
        upstream.stop()
        for ns in (host, up):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _records(*, bfd: bool = False) -> tuple[Port, BgpPeer, BgpNetwork]:
    router, host_id = new_id(), new_id()
    port = Port(
        device_id=router, type="router", mac="02:00:00:00:aa:02", address=f"{GW_IP}/24",
        host_id=host_id, interface_name="eth1",
    )  # fmt: skip
    peer = BgpPeer(
        router_id=router, address=UP_IP, asn=UP_AS, local_as=GW_AS, hold_time=3, keepalive=1,
        bfd=bfd,
    )  # fmt: skip
    return port, peer, BgpNetwork(router_id=router, prefix=ADVERTISED)


def _gateway(host_ns: str, tmp: Path, rec: Recorder, metrics: GatewayMetrics) -> Gateway:
    def plug(port_id: str, ifname: str | None) -> None:
        if ifname is not None:  # the test's stand-in for the datapath: a bridge
            sh("ip", "-n", host_ns, "link", "set", ifname, "master", "br0")

    settings = SidecarSettings(run_dir=tmp, host_ns=host_ns, backoff_min_s=0.2)
    return Gateway(rec, plug, metrics, settings)


def _up(rec: Recorder, peer: BgpPeer) -> bool:
    st = rec.status.get(peer.id)
    return st is not None and st.state is SessionState.ESTABLISHED


def test_session_routes_restart_and_cleanup(world: tuple[str, Upstream], short_tmp: Path) -> None:
    host_ns, upstream = world
    port, peer, net = _records()
    rec, metrics = Recorder(), GatewayMetrics()
    learned = LearnedRoute(EXTERNAL, UP_IP, peer.id)

    async def scenario() -> None:
        gw = _gateway(host_ns, short_tmp, rec, metrics)
        try:
            upstream.configure([EXTERNAL])
            await gw.apply(desired([port], [peer], [net], port.host_id or ""))
            await eventually(lambda: _up(rec, peer), 20, "the session established")
            assert metrics.session_up.labels(peer.id)._value.get() == 1
            await eventually(lambda: rec.routes.get(port.id) == (learned,), 10, "route learned")
            assert rec.status[peer.id].routes == 1
            assert upstream.has_route(ADVERTISED) and not upstream.has_route(MORE)
            more = BgpNetwork(router_id=peer.router_id, prefix=MORE)  # bird reconfigured
            await gw.apply(desired([port], [peer], [net, more], port.host_id or ""))
            await eventually(lambda: upstream.has_route(MORE), 10, "a new network announced")
            assert _up(rec, peer)
            upstream.configure([])
            await eventually(lambda: rec.routes.get(port.id) == (), 10, "route withdrawn")
            upstream.configure([EXTERNAL])
            await eventually(lambda: rec.routes.get(port.id) == (learned,), 10, "route again")
            sc = gw.sidecars[port.id]
            pid = sc.pid
            assert pid is not None
            seen = len(rec.sets)
            os.kill(pid, 9)
            await eventually(lambda: sc.restarts == 1 and sc.pid not in (None, pid), 10, "restart")
            # bird's death is reported as nothing learned, whatever the kernel table held
            await eventually(lambda: () in rec.sets[seen:], 10, "routes gone with bird")
            await eventually(lambda: rec.routes.get(port.id) == (learned,), 20, "routes back")
            await eventually(lambda: _up(rec, peer), 20, "the session back")
            assert metrics.restarts._value.get() == 1
            pid = sc.pid
        finally:
            await gw.close()
        ns, host_if, _side = names(port.id)
        assert not Path(f"/run/netns/{ns}").exists()
        assert pid is not None and not Path(f"/proc/{pid}").exists()
        links = subprocess.run(["ip", "-n", host_ns, "-o", "link"], capture_output=True, text=True)
        assert host_if not in links.stdout
        assert rec.routes[port.id] == ()
        assert rec.status[peer.id].state is SessionState.DOWN

    asyncio.run(scenario())


def test_bfd_session_comes_up(world: tuple[str, Upstream], short_tmp: Path) -> None:
    host_ns, upstream = world
    port, peer, net = _records(bfd=True)
    rec = Recorder()

    async def scenario() -> None:
        gw = _gateway(host_ns, short_tmp, rec, GatewayMetrics())
        try:
            upstream.configure([EXTERNAL], bfd=True)
            await gw.apply(desired([port], [peer], [net], port.host_id or ""))
            await eventually(
                lambda: _up(rec, peer) and rec.status[peer.id].bfd_up is True, 20, "BFD up"
            )
        finally:
            await gw.close()

    asyncio.run(scenario())


def _prefixes(n: int) -> list[str]:
    """``n`` /25s of 198.18.0.0/15 (RFC 2544)."""
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    return [f"{ipaddress.IPv4Address(base + 128 * i)}/25" for i in range(n)]


def test_a_thousand_prefixes_arrive_and_go_in_few_reports(
    world: tuple[str, Upstream], short_tmp: Path
) -> None:
    host_ns, upstream = world
    port, peer, net = _records()
    rec = Recorder()
    many = _prefixes(1000)

    async def scenario() -> None:
        gw = _gateway(host_ns, short_tmp, rec, GatewayMetrics())
        try:
            upstream.configure([])
            await gw.apply(desired([port], [peer], [net], port.host_id or ""))
            await eventually(lambda: _up(rec, peer), 20, "the session established")
            before = rec.reports
            t0 = time.monotonic()
            upstream.configure(many)
            await eventually(lambda: len(rec.routes.get(port.id, ())) == 1000, 30, "1000 routes")
            announce = time.monotonic() - t0
            assert rec.reports - before < 1000  # bursts are reported together
            t0 = time.monotonic()
            upstream.configure([])
            await eventually(lambda: rec.routes.get(port.id) == (), 30, "1000 withdrawn")
            withdraw = time.monotonic() - t0
            print(f"1000 prefixes: learned in {announce:.2f} s, withdrawn in {withdraw:.2f} s")
        finally:
            await gw.close()

    asyncio.run(scenario())
