"""The gateway's pure parts: bird's configuration, kernel routes to learned routes, bird's
control-socket replies, which uplinks need a sidecar."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netloom.errors import InvalidInput
from netloom.gateway.birdctl import parse_bfd, parse_protocols
from netloom.gateway.config import (
    FIRST_TABLE,
    SidecarSpec,
    allocate_tables,
    names,
    protocol_name,
    render,
)
from netloom.gateway.manager import desired
from netloom.gateway.routes import DEL, NEW, KernelRoute, LearnedTable, parse_route
from netloom.model.bgp import BgpNetwork, BgpPeer, LearnedRoute, SessionState
from netloom.model.records import Port
from netloom.model.types import new_id

pytestmark = pytest.mark.unit

ROUTER = new_id()
HOST = new_id()


def _peer(address: str = "198.19.1.1", **kw: Any) -> BgpPeer:
    return BgpPeer(router_id=ROUTER, address=address, asn=65000, local_as=65001, **kw)


def _spec(*peers: BgpPeer, nets: tuple[str, ...] = ("203.0.113.0/24",)) -> SidecarSpec:
    networks = tuple(BgpNetwork(router_id=ROUTER, prefix=n) for n in nets)
    return SidecarSpec("p1", "198.19.1.2/24", "02:00:00:00:00:02", peers, networks)


def _render(spec: SidecarSpec) -> str:
    return render(spec, allocate_tables(spec.peers, {}), "nlgs0")


def test_config_names_the_session_timers_and_exports() -> None:
    peer = _peer(hold_time=3, keepalive=1, password="s3cret")
    text = _render(_spec(peer))
    name = protocol_name(peer.id)
    assert "router id 198.19.1.2;" in text
    assert f"protocol bgp {name} {{" in text
    assert "local 198.19.1.2 as 65001;" in text and "neighbor 198.19.1.1 as 65000;" in text
    assert "hold time 3;" in text and "keepalive time 1;" in text
    assert 'password "s3cret";' in text
    assert "route 203.0.113.0/24 blackhole;" in text
    assert "import all;" in text and "export where source = RTS_STATIC;" in text
    assert f"kernel table {FIRST_TABLE};" in text and "export where source = RTS_BGP;" in text
    # not the bare word: a protocol name is made of a random id's hex digits
    assert "bfd on;" not in text and "protocol bfd" not in text


def test_config_bfd_only_when_asked() -> None:
    text = _render(_spec(_peer(bfd=True)))
    assert "bfd on;" in text and "protocol bfd {" in text and 'interface "nlgs0"' in text


def test_config_refuses_what_bird_cannot_quote() -> None:
    with pytest.raises(InvalidInput) as err:
        _render(_spec(_peer(password='a"b')))
    assert err.value.field == "password"


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 not installed")
def test_bird_parses_what_is_rendered(tmp_path: Path) -> None:
    for spec in (
        _spec(_peer(hold_time=3, keepalive=1, bfd=True, password="x\\y"), _peer("198.19.1.3")),
        _spec(_peer(), nets=()),
    ):
        conf = tmp_path / "bird.conf"
        conf.write_text(_render(spec))
        got = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
        assert got.returncode == 0, got.stderr


def test_tables_stay_with_their_peer() -> None:
    a, b, c = _peer(), _peer("198.19.1.3"), _peer("198.19.1.4")
    first = allocate_tables((a, b), {})
    assert sorted(first.values()) == [FIRST_TABLE, FIRST_TABLE + 1]
    again = allocate_tables((b, c), first)
    assert again[b.id] == first[b.id] and again[c.id] != again[b.id]


def test_names_are_unique_and_fit_ifnamsiz() -> None:
    a, b = names(new_id()), names(new_id())
    assert a != b and all(len(n) <= 15 for n in (*a[1:], *b[1:]))


def _msg(event: str, dst: str, plen: int, table: int, *hops: str) -> dict[str, Any]:
    attrs: list[tuple[str, Any]] = [("RTA_DST", dst), ("RTA_TABLE", table)]
    if len(hops) == 1:
        attrs.append(("RTA_GATEWAY", hops[0]))
    elif hops:
        attrs.append(("RTA_MULTIPATH", [{"attrs": [("RTA_GATEWAY", h)]} for h in hops]))
    return {"event": event, "family": 2, "dst_len": plen, "table": table, "attrs": attrs}


class _Msg(dict[str, Any]):
    def get_attr(self, name: str) -> Any:
        return next((v for k, v in self["attrs"] if k == name), None)


def test_netlink_routes_map_to_learned_routes_with_multipath() -> None:
    table = LearnedTable({100: "peerA", 101: "peerB"})
    events = [
        _Msg(_msg(NEW, "198.18.0.0", 24, 100, "198.19.1.1")),
        _Msg(_msg(NEW, "0.0.0.0", 0, 101, "198.19.1.3", "198.19.1.4")),
        _Msg(_msg(NEW, "10.9.0.0", 16, 7, "198.19.1.1")),  # not a peer's table
        _Msg({"event": NEW, "family": 10, "attrs": []}),  # IPv6
    ]
    for m in events:
        got = parse_route(m)
        if got is not None:
            table.apply(*got)
    assert table.routes() == (
        LearnedRoute("0.0.0.0/0", "198.19.1.3", "peerB"),
        LearnedRoute("0.0.0.0/0", "198.19.1.4", "peerB"),
        LearnedRoute("198.18.0.0/24", "198.19.1.1", "peerA"),
    )
    assert table.count("peerB") == 1
    got = parse_route(_Msg(_msg(DEL, "0.0.0.0", 0, 101, "198.19.1.3", "198.19.1.4")))
    assert got is not None and table.apply(*got)
    assert [r.peer_id for r in table.routes()] == ["peerA"]
    assert not table.apply(NEW, KernelRoute(100, "198.18.0.0/24", ("198.19.1.1",)))  # same
    assert table.set_tables({101: "peerB"}) and table.routes() == ()


PROTOCOLS = [
    (1, "BIRD 2.0.12 ready."),
    (2002, "Name       Proto      Table      State  Since         Info"),
    (1002, "device1    Device     ---        up     1796311936    "),
    (1002, "peer_a     BGP        ---        up     1796311940    Established   "),
    (1002, "peer_b     BGP        ---        start  1796311936    Active        Socket: refused"),
    (1002, "peer_c     BGP        ---        stop   1796311936    Close"),
    (0, ""),
]


def test_show_protocols_maps_to_session_states() -> None:
    rows = parse_protocols(PROTOCOLS)
    assert rows["peer_a"].session is SessionState.ESTABLISHED and rows["peer_a"].since > 0
    assert rows["peer_b"].session is SessionState.ACTIVE
    assert rows["peer_c"].session is SessionState.IDLE


def test_show_bfd_sessions() -> None:
    lines = [
        (1020, "bfd1:"),
        (1020, "IP address                Interface  State      Since         Interval  Timeout"),
        (1020, "198.19.1.1                nlgs0      Up         1796311940    0.100    0.300"),
        (1020, "198.19.1.3                nlgs0      Down       1796311940    1.000    0.000"),
    ]
    assert parse_bfd(lines) == {"198.19.1.1": True, "198.19.1.3": False}


def test_desired_sidecars_follow_bound_uplinks_with_peers_on_their_subnet() -> None:
    def port(address: str, host: str = HOST, **kw: Any) -> Port:
        return Port(device_id=ROUTER, type="router", mac="02:00:00:00:00:09", address=address,
                    host_id=host, interface_name="eth1", **kw)  # fmt: skip

    up1, up2, other = port("198.19.1.2/24"), port("198.19.2.2/24"), port("198.19.1.5/24", new_id())
    p1, p2 = _peer("198.19.1.1"), _peer("198.19.9.1")
    net = BgpNetwork(router_id=ROUTER, prefix="203.0.113.0/24")
    got = desired([up1, up2, other], [p1, p2], [net], HOST)
    assert list(got) == [up1.id]  # up2 has no peer on its subnet, other is another host's
    assert got[up1.id].peers == (p1,) and got[up1.id].networks == (net,)
    assert got[up1.id].address == "198.19.1.2/24"
