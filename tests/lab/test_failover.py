"""A gateway dies (its agent SIGKILLed, its uplink down) under established connections from the
external host to a floating IP: the upstream drops its path (BFD), the cluster drops the routes
learned on its uplink (host death), the connections through the other gateway keep working,
those that came in by the dead one continue through the other (their flow state was pushed to
every gateway of the uplinks' stateful group), and a new connection succeeds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator

import pytest

from netloom.api.client import ApiClient
from netloom.gateway.birdctl import parse_bfd
from netloom.lab import netns, nsexec, outside, probes, supervisor
from netloom.lab.lab import Lab
from netloom.lab.plan import sidecar_ns_prefix
from netloom.lab.state import ProcessRecord
from netloom.netns import entered
from waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

NewLab = Callable[..., Lab]
EXT = "198.18.0.10"
PORT = 8090
PER_GATEWAY = 3
ETH_P_ALL = 0x0003
Pair = tuple[socket.socket, socket.socket]  # (external host's end, VM's end)


def _learned(api: ApiClient) -> set[tuple[str, str]]:
    return {(r["dst"], r["next_hop_gateway"]) for r in api.list("routes") if r.get("learned_from")}


def _sniffer(ns: str, ifname: str) -> socket.socket:
    """A packet socket on ``ifname`` in ``ns``: every frame it sends or receives (ETH_P_ALL:
    only those sockets see what a device sends)."""
    with entered(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def _sports_seen(sniffer: socket.socket) -> set[int]:
    """Source ports of the TCP segments to PORT the sniffer caught since it was last read."""
    seen: set[int] = set()
    while True:
        try:
            frame = sniffer.recv(2048)
        except BlockingIOError:
            return seen
        ip = frame[14:]
        if frame[12:14] != b"\x08\x00" or len(ip) < 24 or ip[9] != socket.IPPROTO_TCP:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4 :]
        if int.from_bytes(tcp[2:4], "big") == PORT:
            seen.add(int.from_bytes(tcp[0:2], "big"))


def _connect(ext: str, dst: str, sport: int, server: socket.socket) -> Pair:
    with entered(ext):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((EXT, sport))
    c.settimeout(20.0)
    c.connect((dst, PORT))
    s, _ = server.accept()
    s.settimeout(20.0)
    return c, s


def _echo(pair: Pair, tag: bytes) -> None:
    """``tag`` each way, within the sockets' timeouts (TCP retransmits what a failover lost)."""
    c, s = pair
    c.sendall(tag)
    assert _read(s, len(tag)) == tag
    s.sendall(tag)
    assert _read(c, len(tag)) == tag


def _read(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, "connection closed"
        got += chunk
    return got


@contextlib.contextmanager
def _closing(pairs: list[Pair]) -> Iterator[list[Pair]]:
    try:
        yield pairs
    finally:
        for c, s in pairs:
            c.close()
            s.close()


def _ready(lab: Lab, api: ApiClient) -> str:
    wait_until(lambda: all(h["alive"] for h in api.list("hosts")), 30.0, "every agent alive")
    want = {("0.0.0.0/0", f"198.19.{g}.1") for g in (1, 2)}
    wait_until(lambda: _learned(api) >= want, 30.0, "the routes learned from the upstream")
    assert lab.state.outside is not None
    up = lab.state.outside.upstream_netns
    wait_until(lambda: len(probes.route_nexthops(up, "203.0.113.0/24")) == 2, 30.0, "both paths")
    return up


def test_gateway_death_with_connections_surviving(new_lab: NewLab) -> None:
    lab = new_lab()
    lab.up(1, 1, gateways=2, datapath="bpf")
    api = lab.api()
    up = _ready(lab, api)
    assert lab.state.outside is not None
    ext, vm = lab.state.outside.external_netns, lab.vms()[0].netns
    fip = lab.state.vms[0].floating_ip
    assert fip is not None
    wait_until(lambda: bool(probes.ping(ext, fip, timeout=1.0)), 20.0, "the floating IP")
    cables = {u.port_address.split("/")[0]: u.upstream_if for u in lab.state.uplinks}
    sniff = {gw: _sniffer(up, ifname) for gw, ifname in cables.items()}
    with probes.listening(vm, PORT) as server, _closing([]) as pairs:
        server.settimeout(20.0)
        by_gw = _spread(ext, fip, server, sniff)
        pairs += [p for ps in by_gw.values() for p in ps]
        # the agent dies (SIGKILL: its bird with it); the uplink is still up: BFD notices
        gw_ns, agent, nic = _gateway(lab, 1)
        os.kill(agent.pid, signal.SIGKILL)
        wait_until(lambda: not supervisor.alive(agent), 10.0, "the gateway's agent dead")
        wait_until(
            lambda: probes.route_nexthops(up, "203.0.113.0/24") == ["198.19.2.2"],
            10.0,
            "the upstream's path by the dead gateway gone (BFD)",
        )
        nsexec.run(gw_ns, ["ip", "link", "set", nic, "down"], check=True)
        wait_until(
            lambda: not {gw for _, gw in _learned(api)} & {"198.19.1.1"},
            30.0,
            "the routes learned on the dead gateway's uplink removed",
        )
        for i, pair in enumerate(by_gw["198.19.2.2"]):
            _echo(pair, b"other %d" % i)
        for i, pair in enumerate(by_gw["198.19.1.2"]):
            _echo(pair, b"moved %d" % i)
        assert _sports_seen(sniff["198.19.2.2"]) == {c.getsockname()[1] for c, _ in pairs}
        pairs.append(_connect(ext, fip, 42000, server))
        _echo(pairs[-1], b"new")
    for sniffer in sniff.values():
        sniffer.close()


def _spread(
    ext: str, fip: str, server: socket.socket, sniff: dict[str, socket.socket]
) -> dict[str, list[Pair]]:
    """Connections from distinct source ports, each sorted by the cable its segments took
    from the upstream (its multipath hash), until every gateway carries PER_GATEWAY."""
    by_gw: dict[str, list[Pair]] = {gw: [] for gw in sniff}
    for sport in range(41000, 41100):
        pair = _connect(ext, fip, sport, server)
        _echo(pair, b"before %d" % sport)
        [gw] = [gw for gw, s in sniff.items() if sport in _sports_seen(s)]  # exactly one
        by_gw[gw].append(pair)
        if min(len(ps) for ps in by_gw.values()) >= PER_GATEWAY:
            return by_gw
    raise AssertionError(f"connections not spread over the gateways: {by_gw}")


def _gateway(lab: Lab, index: int) -> tuple[str, ProcessRecord, str]:
    """Gateway ``index``'s namespace, agent and uplink NIC."""
    gw = next(h for h in lab.state.hosts if h.role == "gateway" and h.index == index)
    agent = next(p for p in lab.state.processes if p.role == "agent" and p.netns == gw.netns)
    uplink = next(u for u in lab.state.uplinks if u.index == index)
    return gw.netns, agent, uplink.host_if


def test_silent_gateway_taken_out_by_bfd(new_lab: NewLab) -> None:
    """A gateway that stops answering without closing anything (its agent and bird frozen:
    no FIN, no link down) is taken out of the upstream's paths by BFD, not the hold timer."""
    lab = new_lab()
    lab.up(1, 1, gateways=2, datapath="bpf")
    api = lab.api()
    up = _ready(lab, api)
    assert lab.state.outside is not None
    ext, vm = lab.state.outside.external_netns, lab.vms()[0].netns
    fip = lab.state.vms[0].floating_ip
    assert fip is not None
    rec = lab.state.outside

    def bfd_up() -> bool:
        text = outside.birdc(rec, "show", "bfd", "sessions")
        return parse_bfd([(0, line) for line in text.splitlines()]).get("198.19.1.2", False)

    # BFD comes up after the BGP session (slowly: RFC 5880 §6.8.3); until then the hold timer
    # is all the upstream has to notice a silent gateway
    wait_until(bfd_up, 20.0, "the upstream's BFD session with gw1 up")
    gw_ns, agent, _nic = _gateway(lab, 1)
    frozen = [agent.pid]
    frozen += [p for ns in netns.list_netns(sidecar_ns_prefix(gw_ns)) for p in nsexec.pids_in(ns)]
    assert len(frozen) == 2, frozen  # the agent and its sidecar's bird
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        wait_until(
            lambda: probes.route_nexthops(up, "203.0.113.0/24") == ["198.19.2.2"],
            10.0,
            "the upstream's path by the silent gateway gone",
        )
        gw1 = outside.birdc(rec, "show", "protocols", "all", "gw1")
        assert "Last error:       Error: BFD session down" in gw1, gw1
        wait_until(
            lambda: not {gw for _, gw in _learned(api)} & {"198.19.1.1"},
            30.0,
            "the routes learned on the silent gateway's uplink removed (host death)",
        )
        with probes.listening(vm, PORT) as server:
            server.settimeout(20.0)
            for sport in range(42000, 42004):  # whichever way the upstream hashes them
                pair = _connect(ext, fip, sport, server)
                with _closing([pair]):
                    _echo(pair, b"new")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
