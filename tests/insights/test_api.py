"""The flow history over a live ``netloom cluster``: its file in the state dir, the
``/api/v1/insights/flows`` queries (paged, in the OpenAPI document) and ``netloom flows``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.conftest import Cluster, start_cluster, stop_cluster
from insights.records import record
from netloom.cli.main import app
from netloom.insights.history import FlowHistory

pytestmark = pytest.mark.unit

RECORDS = [
    record(1, src_ip="10.0.0.1", dst_ip="10.0.0.2", in_port_id="vm-a", out_port_id="vm-b"),
    record(2, src_ip="10.0.0.2", dst_ip="10.0.0.1", in_port_id="vm-b", out_port_id="vm-a"),
    record(3, src_ip="10.0.0.1", bytes=50_000, security_groups=("sg-db",)),
    record(4, verdict="drop", rules=("rule-deny-ssh",), dst_port=22, out_port_id=None),
    *[record(10 + n, src_ip="10.0.0.9") for n in range(5)],
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose state dir holds a flow history with RECORDS (ingested before it starts:
    the file is the cluster's)."""
    tmp = tmp_path_factory.mktemp("flows")
    (tmp / "state").mkdir()
    history = FlowHistory(tmp / "state" / "flows.duckdb")
    history.ingest(RECORDS)
    history.close()
    c = start_cluster(tmp)
    try:
        yield c
    finally:
        stop_cluster(c.proc)


@pytest.fixture()
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.api + "/api/v1/insights", timeout=10) as client:
        yield client


def get(http: httpx.Client, path: str, **params: Any) -> Any:
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_cluster_opens_its_flow_history_in_the_state_dir(cluster: Cluster) -> None:
    assert "event=flows.open" in cluster.log_text()
    assert f"path={cluster.state_dir}/flows.duckdb" in cluster.log_text()


def test_flows_between_two_vms_and_of_a_group(http: httpx.Client) -> None:
    between = get(http, "/flows", port_id="vm-a", peer_port_id="vm-b")["flows"]
    assert sorted(f["flow_id"] for f in between) == ["h1:1:1", "h1:2:1"]
    assert between[0]["devices"] == ["bridge-a", "router-a", "bridge-b"]
    of_group = get(http, "/flows", security_group_id="sg-db")["flows"]
    assert [f["flow_id"] for f in of_group] == ["h1:3:1"]
    by_ip = get(http, "/flows", ip="10.0.0.2", peer_ip="10.0.0.1")["flows"]
    assert sorted(f["flow_id"] for f in by_ip) == ["h1:1:1", "h1:2:1"]


def test_flows_are_paged_with_next_links(http: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "/flows?limit=4"
    while url is not None:
        r = http.get(url.removeprefix("/api/v1/insights"))
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [f["flow_id"] for f in body["flows"]]
        url = body["next"]
        assert ("link" in r.headers) == (url is not None)
    assert sorted(seen) == sorted(rec.flow_id for rec in RECORDS)
    assert len(seen) == len(set(seen))


def test_top_talkers_and_drops_by_rule(http: httpx.Client) -> None:
    top = get(http, "/flows/top", limit=2)
    assert top["talkers"][0] == {"src_ip": "10.0.0.1", "bytes": 51_000, "packets": 20, "flows": 2}
    assert top["talkers"][1]["src_ip"] == "10.0.0.9"
    drops = get(http, "/flows/drops", bucket=3600)["drops"]
    assert [(d["rule_id"], d["flows"]) for d in drops] == [("rule-deny-ssh", 1)]


def test_one_flow_and_unknown_ones(http: httpx.Client) -> None:
    assert get(http, "/flows/h1:4:1")["verdict"] == "drop"
    r = http.get("/flows/h9:9:9")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("since=soon", "since"), ("colour=red", "colour"), ("by=x", "by")],
)
def test_bad_parameters_are_400(http: httpx.Client, query: str, field: str) -> None:
    r = http.get(f"/flows/top?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_the_openapi_document_names_the_insights_paths(cluster: Cluster) -> None:
    doc = httpx.get(cluster.api + "/api/v1/openapi.json", timeout=10).json()
    for path in ("", "/top", "/drops", "/{flow_id}"):
        assert "get" in doc["paths"][f"/api/v1/insights/flows{path}"]
    names = {p["name"] for p in doc["paths"]["/api/v1/insights/flows"]["get"]["parameters"]}
    assert {"since", "until", "port_id", "security_group_id", "limit", "marker"} <= names


def test_the_flows_command(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLOOM_API", cluster.api)
    runner = CliRunner()
    res = runner.invoke(app, ["flows", "top", "--json", "--limit", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["talkers"][0]["src_ip"] == "10.0.0.1"
    res = runner.invoke(app, ["flows", "list", "--ip", "10.0.0.9", "--since", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["flows"]) == 5
    res = runner.invoke(app, ["flows", "drops", "--bucket", "60"])
    assert res.exit_code == 0 and "rule-deny-ssh" in res.output, res.output
    res = runner.invoke(app, ["flows", "list", "--since", "yesterday"])
    assert res.exit_code != 0 and "since" in res.output


def test_a_flow_history_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "flows.duckdb").write_text("not a database")
    with pytest.raises(pytest.fail.Exception, match="flow history"):
        start_cluster(tmp_path)


@pytest.mark.parametrize(
    "bad",
    [["--flow-max-age", "0"], ["--flow-max-count", "0"], ["--ipfix", "nowhere"]],
)
def test_bad_flow_options_are_one_line_errors(bad: list[str], tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["cluster", "--state-dir", str(tmp_path), *bad])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "error" in res.output, res.output
