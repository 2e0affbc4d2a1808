"""``bench northsouth``'s pure parts: the figures' shape, options, the prefixes announced, the
tap's frame parsing, and the agent view's learned-route count it reads."""

from __future__ import annotations

import struct

import pytest

from netloom.agent.view import AgentView
from netloom.bench.northsouth import routes, spread
from netloom.bench.northsouth.echo import Stream
from netloom.bench.northsouth.failover import _gap
from netloom.bench.northsouth.run import Options, figures
from netloom.errors import InvalidInput
from netloom.model.types import new_id

pytestmark = pytest.mark.unit

SHAPE = {
    "gateways": None,
    "ratios": {"tcp_stream", "tcp_maerts", "tcp_rr", "tcp_crr"},
    "spread": {"min", "max"},
    "failover": {"gap_ms", "survived_other", "survived_dead", "new_conn_ms"},
    "learned_routes": {"announce_ms", "withdraw_ms"},
}


def check_shape(res: dict[str, object]) -> None:
    """Exactly the documented keys (a ``detail`` aside)."""
    assert set(res) - {"detail"} == set(SHAPE)
    for key, sub in SHAPE.items():
        if sub is not None:
            got = res[key]
            assert isinstance(got, dict)
            assert set(got) == sub


def test_figures_have_the_documented_shape_with_nulls_for_parts_not_run() -> None:
    got = {"spread": {"min": 90, "max": 110, "per_gateway": {}}, "routes": None}
    res = figures(Options(gateways=6), got)
    check_shape(res)
    assert res["gateways"] == 6
    assert res["spread"] == {"min": 90, "max": 110}
    assert res["ratios"]["tcp_crr"] is None
    assert res["learned_routes"] == {"announce_ms": None, "withdraw_ms": None}


@pytest.mark.parametrize(
    "opts",
    [Options(gateways=1), Options(parts=("nope",)), Options(prefixes=0), Options(prefixes=5000)],
)
def test_bad_options_are_refused(opts: Options) -> None:
    with pytest.raises(InvalidInput):
        opts.validate()


def test_prefixes_are_distinct_host_routes_of_the_benchmark_block() -> None:
    got = routes.prefixes(1000)
    assert len(set(got)) == 1000
    assert got[0] == "198.18.32.0/32"
    assert all(p.endswith("/32") for p in got)


def _frame(dst: str, flags: int, proto: int = 6) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 40, 0, 0, 64, proto, 0,
        bytes(map(int, ["198", "18", "0", "10"])), bytes(map(int, dst.split("."))),
    )  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", 40001, 5310, 0, 0, 0x50, flags, 0, 0, 0)
    return b"\x02" * 12 + b"\x08\x00" + ip + tcp


def test_tap_reads_tcp_to_the_public_range_and_tells_a_syn() -> None:
    flow = ("198.18.0.10", 40001, "203.0.113.64", 5310)
    assert spread._tcp_of(_frame("203.0.113.64", 0x02)) == (flow, True)
    assert spread._tcp_of(_frame("203.0.113.64", 0x12)) == (flow, False)  # SYN-ACK
    assert spread._tcp_of(_frame("203.0.113.64", 0x10)) == (flow, False)
    assert spread._tcp_of(_frame("198.18.0.1", 0x02)) is None  # not public
    assert spread._tcp_of(_frame("203.0.113.64", 0x02, proto=17)) is None


def test_a_stream_gap_counts_silence_until_the_end() -> None:
    st = Stream(1, None)  # type: ignore[arg-type]
    st.arrivals = [0.9, 1.0, 1.2, 2.0]
    assert _gap(st, 1.0, 2.1) == pytest.approx(0.8)
    st.arrivals = [0.5]
    assert _gap(st, 1.0, 3.0) == pytest.approx(2.0)


def test_the_agent_view_counts_the_learned_routes_it_holds() -> None:
    view = AgentView()
    router, port, peer = new_id(), new_id(), new_id()
    base = {"router_id": router, "next_hop_port_id": port, "type": "normal"}
    static = new_id()
    view.apply("route", static, {**base, "id": static, "dst": "10.0.0.0/24"})
    for i in range(3):
        rid = new_id()
        doc = {**base, "id": rid, "dst": f"198.18.32.{i}/32", "learned_from": peer}
        view.apply("route", rid, doc)
    assert view.learned_routes() == 3


def test_render_prints_every_figure_and_the_errors() -> None:
    from netloom.bench.northsouth.run import render

    got = {"spread": {"min": 90, "max": 110, "per_gateway": {"gw1": 90, "gw2": 110}}}
    res = {
        **figures(Options(gateways=2), got),
        "detail": {**got, "errors": {"failover": "no stream"}, "elapsed_s": 1.0},
    }
    lines = [" ".join(line.split()) for line in render(res).splitlines()]
    assert "spread min / max 90 / 110" in lines
    assert "ratio tcp_crr None" in lines
    assert "error failover no stream" in lines
