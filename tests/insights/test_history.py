"""FlowHistory: ingest (a later record replaces), retention, the queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from insights.records import record
from netloom.errors import InvalidInput
from netloom.insights.history import FlowHistory
from netloom.insights.queries import FlowFilter

pytestmark = pytest.mark.unit


@pytest.fixture
def history() -> FlowHistory:
    return FlowHistory(batch_rows=3)


def test_a_later_record_of_a_flow_replaces_the_earlier(history: FlowHistory) -> None:
    history.ingest([record(1, packets=1, bytes=100), record(2)])
    history.ingest([record(3), record(4)])  # past batch_rows: written
    history.ingest([record(1, packets=5, bytes=900, last_seen=2000.0, final=True)])
    assert history.count() == 4
    got = history.get("h1:1:1")
    assert got is not None
    assert (got.packets, got.bytes, got.last_seen, got.final) == (5, 900, 2000.0, True)
    assert got.devices == ("bridge-a", "router-a", "bridge-b")
    assert got == record(1, packets=5, bytes=900, last_seen=2000.0, final=True)


def test_the_file_keeps_the_flows(tmp_path: Path) -> None:
    path = tmp_path / "flows.duckdb"
    first = FlowHistory(path)
    first.ingest([record(n) for n in range(5)])
    first.close()
    again = FlowHistory(path)
    assert again.count() == 5
    again.close()


def test_retention_by_age_then_by_size() -> None:
    by_age = FlowHistory(max_age_s=100.0)
    by_age.ingest([record(n) for n in range(10)])  # last seen 1010 .. 1019
    assert by_age.expire(now=1115.0) == 5  # last seen before 1015 are gone
    assert by_age.count() == 5
    history = FlowHistory(max_age_s=100.0, max_flows=3)
    history.ingest([record(n) for n in range(10)])
    assert history.expire(now=1115.0) == 7  # then the oldest beyond 3 flows
    assert sorted(r.flow_id for r in history.flows().items) == ["h1:7:1", "h1:8:1", "h1:9:1"]


def test_top_talkers_by_bytes_over_a_window(history: FlowHistory) -> None:
    history.ingest(
        [
            record(1, src_ip="10.0.0.1", bytes=500),
            record(2, src_ip="10.0.0.1", bytes=700),
            record(3, src_ip="10.0.0.2", bytes=1000),
            record(4, src_ip="10.0.0.3", bytes=9000, first_seen=5000.0, last_seen=5001.0),
        ]
    )
    top = history.top_talkers(FlowFilter(since=0.0, until=2000.0), limit=2)
    assert [(t.key, t.bytes, t.flows) for t in top] == [
        (("10.0.0.1",), 1200, 2),
        (("10.0.0.2",), 1000, 1),
    ]
    pairs = history.top_talkers(by="pair", limit=1)
    assert pairs[0].key == ("10.0.0.3", "10.0.1.1")


def test_drops_by_rule_over_time(history: FlowHistory) -> None:
    history.ingest(
        [
            record(1, verdict="drop", rules=("rule-deny",), last_seen=1030.0, out_port_id=None),
            record(2, verdict="drop", rules=("rule-deny",), last_seen=1050.0),
            record(3, verdict="reject", rules=("rule-rej",), last_seen=1130.0),
            record(4, verdict="drop", rules=(), last_seen=1140.0),
            record(5),  # forwarded: not a drop
        ]
    )
    points = history.drops_by_rule(bucket_s=60.0)
    assert [(p.rule_id, p.time, p.flows) for p in points] == [
        ("rule-deny", 1020.0, 2),
        ("rule-rej", 1080.0, 1),
        (None, 1140.0, 1),
    ]
    top = history.drops_by_rule(bucket_s=60.0, rules=1)  # the rule with the most drops
    assert [(p.rule_id, p.flows) for p in top] == [("rule-deny", 2)]
    accepted_then_dropped = record(6, verdict="drop", rules=("rule-nat", "rule-deny"))
    history.ingest([accepted_then_dropped])
    assert {p.rule_id for p in history.drops_by_rule(bucket_s=1e6)} == {
        "rule-deny",
        "rule-rej",
        None,
    }


def test_flows_of_a_port_a_group_between_two_vms_and_in_a_window(history: FlowHistory) -> None:
    history.ingest(
        [
            record(1, in_port_id="vm-a", out_port_id="vm-b", src_ip="10.0.0.1", dst_ip="10.0.0.2"),
            record(2, in_port_id="vm-b", out_port_id="vm-a", src_ip="10.0.0.2", dst_ip="10.0.0.1"),
            record(3, in_port_id="vm-a", out_port_id="vm-c", security_groups=("sg-db",)),
            record(4, first_seen=3000.0, last_seen=3100.0),
        ]
    )

    def ids(where: FlowFilter) -> list[str]:
        return sorted(r.flow_id for r in history.flows(where).items)

    assert ids(FlowFilter(port_id="vm-a")) == ["h1:1:1", "h1:2:1", "h1:3:1"]
    assert ids(FlowFilter(port_id="vm-a", peer_port_id="vm-b")) == ["h1:1:1", "h1:2:1"]
    assert ids(FlowFilter(ip="10.0.0.1", peer_ip="10.0.0.2")) == ["h1:1:1", "h1:2:1"]
    assert ids(FlowFilter(security_group_id="sg-db")) == ["h1:3:1"]
    assert ids(FlowFilter(since=2000.0, until=4000.0)) == ["h1:4:1"]


def test_flows_come_in_pages_last_seen_first(history: FlowHistory) -> None:
    history.ingest([record(n) for n in range(7)])
    seen: list[str] = []
    marker = None
    while True:
        page = history.flows(limit=3, marker=marker)
        seen += [r.flow_id for r in page.items]
        if page.marker is None:
            break
        marker = page.marker
    assert seen == [f"h1:{n}:1" for n in reversed(range(7))]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda h: h.flows(limit=0), "limit"),
        (lambda h: h.flows(marker="nonsense"), "marker"),
        (lambda h: h.top_talkers(by="colour"), "by"),
        (lambda h: h.drops_by_rule(bucket_s=0), "bucket"),
        (lambda h: FlowFilter(peer_ip="10.0.0.1"), "peer_ip"),
        (lambda h: FlowFilter(since=5.0, until=1.0), "since"),
        (lambda h: FlowFilter(verdict="maybe"), "verdict"),
    ],
)
def test_bad_queries_are_invalid_input(history: FlowHistory, call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        call(history)  # type: ignore[operator]
    assert err.value.field == field


def test_pages_keep_flows_seen_at_the_same_time_in_flow_id_order(history: FlowHistory) -> None:
    history.ingest([record(n, last_seen=5000.0 if n < 6 else 4000.0 + n) for n in range(9)])
    seen: list[str] = []
    page = history.flows(limit=4)
    seen += [r.flow_id for r in page.items]
    while page.marker is not None:
        page = history.flows(limit=4, marker=page.marker)
        seen += [r.flow_id for r in page.items]
    tied = sorted(f"h1:{n}:1" for n in range(6))
    assert seen == [*tied, "h1:8:1", "h1:7:1", "h1:6:1"]
