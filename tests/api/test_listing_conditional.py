"""Lists through HTTP: pagination (limit, marker, next and Link), sorting (sort_key, sort_dir;
a chain's rules in evaluation order); If-None-Match on reads and writes; 400 (never 422) for bad
input; the OpenAPI document: list parameters, error answers, cascade, no developer markup; the
what-if endpoint POST /api/v1/trace against the cluster's own topology."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from netloom.api.client import ApiClient
from netloom.api.service import ObjectService
from netloom.api.whatif import topology_of
from netloom.model.kinds import KINDS
from netloom.packet.util import ip_to_int
from netloom.sim import result_to_json, run_trace

from .conftest import build_topology, ok

pytestmark = pytest.mark.unit

TENANTS = "/api/v1/tenants"


def _tenants(client: Any, n: int) -> list[dict[str, Any]]:
    return [ok(client.post(TENANTS, json={"name": f"t{i:02d}"}), 201) for i in range(n)]


def _pages(client: Any, url: str, params: dict[str, str]) -> list[list[str]]:
    """Every page, following ``next``; checks that ``Link`` names the same URL."""
    pages: list[list[str]] = []
    response = client.get(url, params=params)
    while True:
        body = ok(response)
        pages.append([d["id"] for d in body["items"]])
        if "next" not in body:
            assert "link" not in response.headers
            return pages
        assert response.headers["link"] == f'<{body["next"]}>; rel="next"'
        response = client.get(body["next"])


def test_limit_and_marker_walk_the_whole_list_once(client: Any) -> None:
    ids = sorted(t["id"] for t in _tenants(client, 7))
    pages = _pages(client, TENANTS, {"limit": "3"})
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids
    after = ok(client.get(TENANTS, params={"limit": "2", "marker": ids[4]}))
    assert [d["id"] for d in after["items"]] == ids[5:7] and "next" not in after
    exact = ok(client.get(TENANTS, params={"limit": "7"}))
    assert len(exact["items"]) == 7 and "next" not in exact
    assert [d["id"] for d in ok(client.get(TENANTS))["items"]] == ids


def test_sort_key_and_dir_with_pages_and_filters(client: Any) -> None:
    made = _tenants(client, 5)
    by_name = [t["id"] for t in sorted(made, key=lambda t: t["name"], reverse=True)]
    pages = _pages(client, TENANTS, {"sort_key": "name", "sort_dir": "desc", "limit": "2"})
    assert [i for p in pages for i in p] == by_name
    ok(client.post("/api/v1/hosts", json={"name": "h1"}), 201)
    ok(client.post("/api/v1/hosts", json={"name": "h0"}), 201)
    hosts = ok(client.get("/api/v1/hosts", params={"sort_key": "name", "alive": "false"}))
    assert [h["name"] for h in hosts["items"]] == ["h0", "h1"]
    asc = ok(client.get(TENANTS, params={"sort_key": "id"}))["items"]
    assert [t["id"] for t in asc] == sorted(t["id"] for t in made)


def test_rules_of_a_chain_page_in_evaluation_order(client: Any) -> None:
    chain = ok(client.post("/api/v1/chains", json={"name": "c"}), 201)["id"]
    for name in ("z", "y", "x", "w"):
        ok(
            client.post(
                "/api/v1/rules", json={"chain_id": chain, "name": name, "action": "accept"}
            ),
            201,
        )
    pages = _pages(client, "/api/v1/rules", {"chain_id": chain, "limit": "3"})
    names = {
        r["id"]: r["name"]
        for r in ok(client.get("/api/v1/rules", params={"chain_id": chain}))["items"]
    }
    assert [names[i] for p in pages for i in p] == ["z", "y", "x", "w"]
    by_name = ok(client.get("/api/v1/rules", params={"chain_id": chain, "sort_key": "name"}))
    assert [r["name"] for r in by_name["items"]] == ["w", "x", "y", "z"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort_key": "colour"}, "sort_key"),
        ({"sort_dir": "up"}, "sort_dir"),
        ({"marker": ""}, "marker"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_list_parameters_are_400_with_the_field(
    client: Any, params: dict[str, str], field: str
) -> None:
    response = client.get(TENANTS, params=params)
    assert response.status_code == 400 and response.json()["field"] == field


def test_an_unknown_marker_is_404(client: Any) -> None:
    _tenants(client, 1)
    for marker in ("00000000-0000-4000-8000-000000000000", "not-an-id"):
        response = client.get(TENANTS, params={"marker": marker})
        assert response.status_code == 404 and response.json()["field"] == "marker"


def test_if_none_match_on_get(client: Any) -> None:
    t = _tenants(client, 1)[0]
    url = f"{TENANTS}/{t['id']}"
    etag = client.get(url).headers["etag"]
    for header in (etag, "*", f'"99", {etag}', f"W/{etag}"):
        response = client.get(url, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.headers["etag"] == etag and response.content == b""
    assert ok(client.get(url, headers={"If-None-Match": '"99"'}))["id"] == t["id"]
    ok(client.patch(url, json={"name": "changed"}))
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 200
    gone = client.get(
        f"{TENANTS}/00000000-0000-4000-8000-000000000000", headers={"If-None-Match": "*"}
    )
    assert gone.status_code == 404


def test_if_none_match_fails_writes_that_match(client: Any) -> None:
    t = _tenants(client, 1)[0]
    url = f"{TENANTS}/{t['id']}"
    etag = client.get(url).headers["etag"]
    for header in ("*", etag):
        response = client.patch(url, json={"name": "x"}, headers={"If-None-Match": header})
        assert response.status_code == 412 and response.json()["field"] == "If-None-Match"
        assert client.delete(url, headers={"If-None-Match": header}).status_code == 412
    ok(client.patch(url, json={"name": "x"}, headers={"If-None-Match": '"99"'}))
    assert client.delete(url, headers={"If-None-Match": etag}).status_code == 204


def test_bad_input_is_400_never_422(client: Any) -> None:
    """Malformed JSON, wrong types, failed validation and bad parameters are all 400."""
    t = _tenants(client, 1)[0]
    cases = [
        client.post(TENANTS, content=b"{", headers={"Content-Type": "application/json"}),
        client.post(TENANTS, json=[1]),
        client.post(TENANTS, json={"name": 5}),
        client.post("/api/v1/bridges", json={"tenant_id": t["id"], "name": "b", "colour": 1}),
        client.patch(f"{TENANTS}/{t['id']}", json={"name": ["x"]}),
        client.post("/api/v1/trace", json={"from_port": t["id"], "dst_ip": "nope"}),
        client.post(
            "/api/v1/trace", json={"from_port": t["id"], "dst_ip": "10.0.0.1", "sport": -1}
        ),
        client.delete(f"{TENANTS}/{t['id']}", params={"cascade": "maybe"}),
        client.get(TENANTS, params={"limit": "x"}),
    ]
    assert [r.status_code for r in cases] == [400] * len(cases), [r.text for r in cases]


def test_openapi_documents_lists_errors_and_cascade_without_markup(client: Any) -> None:
    doc = ok(client.get("/api/v1/openapi.json"))
    for k in KINDS.values():
        base = f"/api/v1/{k.collection}"
        listing = doc["paths"][base]["get"]
        names = {p["name"] for p in listing["parameters"]}
        assert {"limit", "marker", "sort_key", "sort_dir"} <= names
        page = listing["responses"]["200"]
        assert "next" in page["content"]["application/json"]["schema"]["properties"]
        assert "Link" in page["headers"]
        item = doc["paths"][f"{base}/{{id}}"]
        assert {"cascade", "If-Match", "If-None-Match"} <= {
            p["name"] for p in item["delete"]["parameters"]
        }
        assert {"400", "404", "408", "409", "412", "413", "415"} <= set(item["patch"]["responses"])
        assert {"304", "404"} <= set(item["get"]["responses"])
        assert {"409", "413", "415"} <= set(doc["paths"][base]["post"]["responses"])
    assert "/api/v1/trace" in doc["paths"]
    text = json.dumps(doc)
    assert not re.search(r":(class|func|mod|data|meth|attr):", text), "rst role in the document"
    assert "``" not in text, "rst literal in the document"
    assert "422" not in doc["paths"][TENANTS]["post"]["responses"]
    assert "never answers 422" in doc["info"]["description"]


def test_trace_endpoint_answers_what_netloom_trace_json_answers(
    client: Any, service: ObjectService
) -> None:
    t = build_topology(client)
    body = {"from_port": t["vm1"], "dst_ip": "10.0.2.10", "proto": "tcp", "dport": 22}
    answer = ok(client.post("/api/v1/trace", json=body))
    result, assumed = run_trace(topology_of(service), t["vm1"], "10.0.2.10", "tcp", 40000, 22)
    want = {**result_to_json(result), "assumed": assumed, "egress": []}  # no uplink taken
    assert answer == json.loads(json.dumps(want))
    assert answer["verdict"] and answer["trace"]
    icmp = ok(client.post("/api/v1/trace", json={"from_port": t["vm1"], "dst_ip": "10.0.2.10"}))
    assert icmp["match"]


def test_trace_endpoint_refuses_an_unknown_or_wrong_port(client: Any) -> None:
    t = build_topology(client)
    unknown = client.post(
        "/api/v1/trace",
        json={"from_port": "00000000-0000-4000-8000-000000000000", "dst_ip": "10.0.2.10"},
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "from_port"
    router_port = client.post("/api/v1/trace", json={"from_port": t["rport1"], "dst_ip": "1.1.1.1"})
    assert router_port.status_code == 400 and router_port.json()["field"] == "from_port"
    extra = client.post(
        "/api/v1/trace", json={"from_port": t["vm1"], "dst_ip": "10.0.2.10", "ttl": 3}
    )
    assert extra.status_code == 400 and extra.json()["field"] == "ttl"


def test_client_list_passes_paging_and_sorting(client: Any) -> None:
    made = _tenants(client, 4)
    api = ApiClient("http://testserver")
    api._http = [client]  # the test client speaks the same httpx interface
    names = [t["name"] for t in api.list("tenants", sort_key="name", sort_dir="desc", limit=2)]
    assert names == ["t03", "t02"]
    first = sorted(t["id"] for t in made)
    rest = api.list("tenants", limit=10, marker=first[1])
    assert [t["id"] for t in rest] == first[2:]
    assert len(api.list("tenants")) == 4


def test_a_bad_body_is_400_before_a_failed_precondition(client: Any) -> None:
    t = _tenants(client, 1)[0]
    url = f"{TENANTS}/{t['id']}"
    for headers in ({"If-Match": '"7"'}, {"If-None-Match": "*"}):
        bad = client.patch(url, json={"name": {}}, headers=headers)
        assert bad.status_code == 400 and bad.json()["field"] == "name", headers
    stale = client.put(url, json={"name": "n", "version": 7})
    assert stale.status_code == 409 and stale.json()["field"] == "version"


def test_trace_takes_a_source_address(client: Any) -> None:
    t = build_topology(client)
    probe = {"from_port": t["vm1"], "dst_ip": "10.0.2.10"}
    own = ok(client.post("/api/v1/trace", json=probe))
    spoofed = ok(client.post("/api/v1/trace", json={**probe, "src_ip": "10.0.1.99"}))
    assert spoofed["match"]["ip_src"] == ip_to_int("10.0.1.99") != own["match"]["ip_src"]
    assert [s["detail"] for s in spoofed["trace"]] == ["anti-spoofing"]
    assert "anti-spoofing" not in [s["detail"] for s in own["trace"]]
    bad = client.post("/api/v1/trace", json={**probe, "src_ip": "10.0.1"})
    assert bad.status_code == 400 and bad.json()["field"] == "src_ip"
