"""``netloom apply -f``: a topology file created in dependency order, checked by HTTP; a bad
document rolls back everything the run created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit

# Deliberately out of order: ports before their devices, rules before their chains, each
# router port naming its bridge peer AND the bridge port naming the router port.
TOPOLOGY: list[dict[str, Any]] = [
    {
        "kind": "route",
        "ref": "default",
        "router_id": "@ap-r",
        "dst": "0.0.0.0/0",
        "next_hop_port_id": "@ap-rp1",
        "next_hop_gateway": "10.8.1.254",
    },
    {
        "kind": "port",
        "name": "ap-rp1",
        "device_id": "@ap-r",
        "mac": "02:00:00:00:08:01",
        "address": "10.8.1.1/24",
        "peer_id": "@ap-bp1",
    },
    {"kind": "port", "name": "ap-bp1", "device_id": "@ap-b1", "peer_id": "@ap-rp1"},
    {
        "kind": "port",
        "name": "ap-vm1",
        "device_id": "@ap-b1",
        "mac": "02:00:00:00:08:10",
        "fixed_ips": ["10.8.1.10"],
        "host_id": "@ap-h",
        "interface_name": "apvm1",
        "port_group_ids": ["@ap-pg"],
        "inbound_filter_id": "@ap-in",
    },
    {
        "kind": "rule",
        "ref": "r-jump",
        "chain_id": "@ap-in",
        "action": "jump",
        "jump_chain_id": "@ap-sub",
    },
    {
        "kind": "rule",
        "ref": "r-drop",
        "chain_id": "@ap-sub",
        "action": "drop",
        "position": 1,
        "in_port_group_id": "@ap-pg",
        "ip_addr_group_src_id": "@ap-ipg",
    },
    {"kind": "tenant", "name": "ap-t"},
    {"kind": "host", "name": "ap-h"},
    {"kind": "router", "name": "ap-r", "tenant_id": "@ap-t"},
    {"kind": "bridge", "name": "ap-b1", "tenant_id": "@ap-t"},
    {
        "kind": "dhcp-subnet",
        "ref": "ap-d1",
        "bridge_id": "@ap-b1",
        "cidr": "10.8.1.0/24",
        "gateway": "10.8.1.1",
    },
    {"kind": "chains", "name": "ap-in", "tenant_id": "@ap-t"},
    {"kind": "chain", "name": "ap-sub", "tenant_id": "@ap-t"},
    {"kind": "port_group", "name": "ap-pg", "tenant_id": "@ap-t"},
    {"kind": "ip-addr-group", "name": "ap-ipg", "addresses": ["10.8.1.10"]},
]


COLLECTIONS = (
    "tenants",
    "hosts",
    "routers",
    "bridges",
    "ports",
    "routes",
    "chains",
    "rules",
    "port_groups",
    "ip_addr_groups",
    "dhcp_subnets",
)


def count_all(http: httpx.Client) -> dict[str, int]:
    colls = COLLECTIONS
    # a router port's own routes (system) come with the port, a port group's address group
    # with the group: not counted as plan objects
    only = {"routes": {"system": "false"}, "ip_addr_groups": {"port_group_id": "null"}}
    return {c: len(http.get(f"/{c}", params=only.get(c, {})).json()["items"]) for c in colls}


def snapshot(http: httpx.Client) -> dict[str, int]:
    """Every object's id -> version: what changed between two calls."""
    return {
        str(d["id"]): int(d["version"])
        for c in COLLECTIONS
        for d in http.get(f"/{c}").json()["items"]
    }


def test_apply_creates_in_dependency_order(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(TOPOLOGY))
    before = count_all(http)
    dry = cli.invoke(app, ["--json", "apply", "-f", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert {d["action"] for d in planned} == {"create", "link"}  # ap-vm1 is created bound
    order = [d["ref"] for d in planned if d["action"] == "create"]
    pos = {ref: i for i, ref in enumerate(order)}
    assert pos["ap-t"] < pos["ap-r"] < pos["ap-rp1"] < pos["default"]
    assert count_all(http) == before  # a dry run writes nothing

    result = cli.invoke(app, ["--json", "apply", "-f", str(path)])
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert len(created) == len(TOPOLOGY)
    after = count_all(http)
    assert sum(after.values()) - sum(before.values()) == len(TOPOLOGY)

    def one(coll: str, name: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = http.get(f"/{coll}", params={"name": name}).json()["items"]
        assert len(items) == 1, (coll, name, items)
        return items[0]

    t, h = one("tenants", "ap-t"), one("hosts", "ap-h")
    r, b = one("routers", "ap-r"), one("bridges", "ap-b1")
    rp1, bp1, vm1 = one("ports", "ap-rp1"), one("ports", "ap-bp1"), one("ports", "ap-vm1")
    cin, csub = one("chains", "ap-in"), one("chains", "ap-sub")
    pg, ipg = one("port_groups", "ap-pg"), one("ip_addr_groups", "ap-ipg")
    assert r["tenant_id"] == b["tenant_id"] == t["id"]
    assert (rp1["type"], rp1["device_id"], rp1["peer_id"]) == ("router", r["id"], bp1["id"])
    assert (bp1["type"], bp1["device_id"], bp1["peer_id"]) == ("bridge", b["id"], rp1["id"])
    assert (vm1["host_id"], vm1["interface_name"]) == (h["id"], "apvm1")
    assert vm1["port_group_ids"] == [pg["id"]] and vm1["inbound_filter_id"] == cin["id"]
    rules = http.get("/rules", params={"chain_id": csub["id"]}).json()["items"]
    assert [(x["action"], x["in_port_group_id"], x["ip_addr_group_src_id"]) for x in rules] == [
        ("drop", pg["id"], ipg["id"])
    ]
    jump = http.get("/rules", params={"chain_id": cin["id"]}).json()["items"]
    assert [x["jump_chain_id"] for x in jump] == [csub["id"]]
    (route,) = http.get("/routes", params={"router_id": r["id"], "system": "false"}).json()["items"]
    assert (route["next_hop_port_id"], route["next_hop_gateway"]) == (rp1["id"], "10.8.1.254")
    (subnet,) = http.get("/dhcp_subnets", params={"bridge_id": b["id"]}).json()["items"]
    assert subnet["cidr"] == "10.8.1.0/24"
    # what apply printed is what the API holds now
    everything = (t, h, r, b, rp1, bp1, vm1, cin, csub, pg, ipg, route, subnet, *rules, *jump)
    held = {x["id"]: x for x in everything}
    assert {d["id"] for d in created} == set(held)
    for doc in created:
        assert doc == held[doc["id"]]

    # the same file again: every object found (nameless rules by position, the route by its
    # destination and next hop, the subnet by its CIDR), nothing written
    state = snapshot(http)
    again = cli.invoke(app, ["apply", "-f", str(path)])
    assert again.exit_code == 0, again.stderr
    assert "no change" in again.stdout
    assert snapshot(http) == state


def test_apply_failure_rolls_back(cli: CliRunner, http: httpx.Client, tmp_path: Path) -> None:
    docs = [
        {"kind": "tenant", "name": "rb-t"},
        {"kind": "router", "name": "rb-r", "tenant_id": "@rb-t"},
        {"kind": "bridge", "name": "rb-b", "tenant_id": "@rb-t"},
        {
            "kind": "port",
            "name": "rb-rp",
            "device_id": "@rb-r",
            "mac": "02:00:00:00:09:01",
            "address": "10.9.1.1/24",
            "peer_id": "@rb-bp",
        },
        {"kind": "port", "name": "rb-bp", "device_id": "@rb-b"},
        {"kind": "dhcp_subnet", "bridge_id": "@rb-b", "cidr": "10.9.1.1/24"},  # host bits set
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(docs))
    before = count_all(http)
    result = cli.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid_input: document #6"), lines
    assert "nothing kept" in lines[0]
    assert count_all(http) == before


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"kind": "nope"}], "unknown kind 'nope'"),
        ([{"kind": "bridge", "tenant_id": "@missing"}], "unknown reference @missing"),
        (
            [
                {"kind": "chain", "name": "a", "tenant_id": "@b"},
                {"kind": "tenant", "name": "b", "ref": "b", "x": "@a"},
            ],
            "reference cycle",
        ),
        ([{"kind": "tenant", "name": "d"}, {"kind": "tenant", "name": "d"}], "used twice"),
        ({"kind": "tenant"}, "JSON list"),
    ],
)
def test_apply_rejects_bad_files(
    cli: CliRunner, http: httpx.Client, tmp_path: Path, docs: Any, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(docs))
    before = count_all(http)
    result = cli.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert count_all(http) == before


def test_apply_a_yaml_plan_with_parameters(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "params: {tenant: yp-t, nets: []}\n"
        "objects:\n"
        "  - {kind: tenant, ref: t, name: '${tenant}'}\n"
        "  - {each: nets, kind: bridge, name: 'yp-${item}', tenant_id: '@t'}\n"
    )
    result = cli.invoke(
        app, ["--json", "apply", "-f", str(path), "-p", "tenant=yp-t2", "-p", 'nets=["a","b"]']
    )
    assert result.exit_code == 0, result.stderr
    made = {d["name"]: d for d in json.loads(result.stdout)}
    assert set(made) == {"yp-t2", "yp-a", "yp-b"}
    assert made["yp-a"]["tenant_id"] == made["yp-t2"]["id"]
    bad = cli.invoke(app, ["apply", "-f", str(path), "-p", "nope=1"])
    assert bad.exit_code == 1 and "unknown parameter(s) nope" in bad.stderr


def test_apply_a_bundled_plan(cli: CliRunner, http: httpx.Client) -> None:
    before = count_all(http)
    result = cli.invoke(
        app, ["--json", "apply", "--plan", "stateful-sg", "-p", "prefix=bp", "-p", "deny_port=23"]
    )
    assert result.exit_code == 0, result.stderr
    kinds = [d.get("position") for d in json.loads(result.stdout) if "chain_id" in d]
    assert len(kinds) == 9  # egress 2, the allowed port 1, ingress 6 (one jumps to the port's)
    after = count_all(http)
    assert after["chains"] == before["chains"] + 3 and after["rules"] == before["rules"] + 9
    both = cli.invoke(app, ["apply", "--plan", "stateful-sg", "-f", "x.yaml"])
    assert both.exit_code == 1 and "exactly one of" in both.stderr


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "two-tenants.yaml"


def _changes(cli: CliRunner, path: Path, *extra: str) -> list[dict[str, Any]]:
    """What applying ``path`` would do (a dry run, as JSON), unchanged objects left out."""
    result = cli.invoke(app, ["--json", "apply", "-f", str(path), "--dry-run", *extra])
    assert result.exit_code == 0, result.stderr
    return [c for c in json.loads(result.stdout) if c["action"] != "unchanged"]


def test_two_tenants_apply_twice_edit_then_prune(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "two-tenants.yaml"
    text = EXAMPLE.read_text()
    path.write_text(text)
    first = cli.invoke(app, ["apply", "-f", str(path)])
    assert first.exit_code == 0, first.stderr

    def in_tenant(coll: str, tenant: str) -> dict[str, dict[str, Any]]:
        tid = http.get("/tenants", params={"name": tenant}).json()["items"][0]["id"]
        items = http.get(f"/{coll}", params={"tenant_id": tid}).json()["items"]
        return {d["name"]: d for d in items}

    bridges, chains = in_tenant("bridges", "A"), in_tenant("chains", "A")
    assert set(bridges) == {"net1", "net2"} and set(in_tenant("bridges", "B")) == {"net"}
    ingress = chains["sg-ingress"]["id"]
    rules = http.get("/rules", params={"chain_id": ingress}).json()["items"]
    assert [r["name"] for r in sorted(rules, key=lambda r: r["position"])] == [
        "return",
        "icmp",
        "dhcp",
        "iperf",
        "drop-ssh",
        "drop-rest",
    ]
    ssh = next(r for r in rules if r["name"] == "drop-ssh")
    assert (ssh["nw_proto"], ssh["tp_dst"]) == (6, {"start": 22, "end": 22})
    (a4,) = http.get("/ports", params={"name": "a4"}).json()["items"]
    assert a4["outbound_filter_id"] == ingress and a4["fixed_ips"] == ["10.0.2.11"]
    router = in_tenant("routers", "A")["router"]
    routes = http.get("/routes", params={"router_id": router["id"]}).json()["items"]
    assert all(r["system"] for r in routes)  # the router ports' own
    assert {r["dst"] for r in routes} == {
        "10.0.1.0/24",
        "10.0.2.0/24",
        "10.0.1.1/32",
        "10.0.2.1/32",
    }

    # applied twice: the second run reports no change and writes nothing
    state = snapshot(http)
    second = cli.invoke(app, ["apply", "-f", str(path)])
    assert second.exit_code == 0, second.stderr
    assert "no change" in second.stdout
    assert snapshot(http) == state

    # one rule edited: one update, of that rule only
    path.write_text(text.replace("nw_proto: tcp, tp_dst: 22}", "nw_proto: tcp, tp_dst: 2222}"))
    planned = _changes(cli, path)
    assert [(c["action"], c["id"], c["changes"]) for c in planned] == [
        ("update", ssh["id"], {"tp_dst": {"start": 2222, "end": 2222}})
    ]
    assert snapshot(http) == state  # the dry run wrote nothing
    edited = cli.invoke(app, ["apply", "-f", str(path)])
    assert edited.exit_code == 0, edited.stderr
    assert "1 updated" in edited.stdout
    after = snapshot(http)
    assert {i for i in after if after[i] != state.get(i)} == {ssh["id"]}
    assert http.get(f"/rules/{ssh['id']}").json()["tp_dst"] == {"start": 2222, "end": 2222}

    # a rule and a VM port dropped from the file: --prune deletes them, nothing else
    lines = path.read_text().splitlines(keepends=True)
    kept = "".join(
        line
        for i, line in enumerate(lines)
        if "name: b1," not in line
        and "name: iperf," not in line
        and not (i and "name: iperf," in lines[i - 1])
    )
    path.write_text(kept)
    iperf = next(r for r in rules if r["name"] == "iperf")
    (b1,) = http.get("/ports", params={"name": "b1"}).json()["items"]
    planned = _changes(cli, path, "--prune")
    assert sorted((c["action"], c["id"]) for c in planned) == sorted(
        [("delete", iperf["id"]), ("delete", b1["id"])]
    )
    assert "no change" in cli.invoke(app, ["apply", "-f", str(path)]).stdout  # no prune: kept
    pruned = cli.invoke(app, ["apply", "-f", str(path), "--prune"])
    assert pruned.exit_code == 0, pruned.stderr
    assert "2 deleted" in pruned.stdout
    final = snapshot(http)
    assert set(after) - set(final) == {iperf["id"], b1["id"]}
    assert {i: v for i, v in after.items() if i in final} == final


def test_reordering_rules_rereads_the_rules_it_moved(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    """Moving one rule up moves the others down (new versions): their own updates read them
    again instead of failing on If-Match."""

    def plan(order: list[str], drop: str = "") -> list[dict[str, Any]]:
        return [
            {"kind": "tenant", "name": "ro-t"},
            {"kind": "chain", "name": "ro-c", "tenant_id": "@ro-t"},
            *(
                {
                    "kind": "rule",
                    "ref": f"ro-{n}",
                    "name": n,
                    "chain_id": "@ro-c",
                    "position": i,
                    "action": "drop" if n == drop else "accept",
                    "tp_dst": i + 1,
                }
                for i, n in enumerate(order)
            ),
        ]

    path = tmp_path / "rules.json"
    path.write_text(json.dumps(plan(["r1", "r2", "r3"])))
    assert cli.invoke(app, ["apply", "-f", str(path)]).exit_code == 0
    path.write_text(json.dumps(plan(["r3", "r1", "r2"], drop="r2")))
    result = cli.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 0, result.stderr
    (chain,) = http.get("/chains", params={"name": "ro-c"}).json()["items"]
    rules = http.get("/rules", params={"chain_id": chain["id"]}).json()["items"]
    held = sorted((r["position"], r["name"], r["action"], r["tp_dst"]["start"]) for r in rules)
    assert held == [(0, "r3", "accept", 1), (1, "r1", "accept", 2), (2, "r2", "drop", 3)]
    again = cli.invoke(app, ["apply", "-f", str(path)])
    assert "no change" in again.stdout


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"kind": "bridge", "name": "dr-b", "tenant_id": "no-such-tenant"}, "no tenant named"),
        ({"kind": "chain", "name": "dr-c", "shared": "maybe"}, "shared"),
        (
            {"kind": "rule", "chain_id": "@dr-c2", "action": "accept", "nw_proto": "pigeon"},
            "pigeon",
        ),
    ],
)
def test_dry_run_checks_references_and_bodies(
    cli: CliRunner, http: httpx.Client, tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    path = tmp_path / "dry.json"
    path.write_text(json.dumps([{"kind": "chain", "name": "dr-c2"}, doc]))
    state = snapshot(http)
    result = cli.invoke(app, ["apply", "-f", str(path), "--dry-run"])
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert snapshot(http) == state


def test_prune_leaves_what_the_system_made(
    cli: CliRunner, http: httpx.Client, tmp_path: Path
) -> None:
    """A port group's address group and a router port's routes are the system's: a plan
    never names them, and --prune must not try to delete them."""
    path = tmp_path / "pg.yaml"
    path.write_text(
        "objects:\n"
        "  - {kind: tenant, ref: t, name: pp-t}\n"
        "  - {kind: port_group, name: pp-pg, tenant_id: '@t'}\n"
        "  - {kind: router, name: pp-r, tenant_id: '@t'}\n"
        "  - {kind: port, name: pp-rp, device_id: '@pp-r', address: 10.77.0.1/24}\n"
    )
    first = cli.invoke(app, ["apply", "-f", str(path)])
    assert first.exit_code == 0, first.stderr
    before = count_all(http)
    again = cli.invoke(app, ["apply", "-f", str(path), "--prune"])
    assert again.exit_code == 0, again.stderr
    assert "no change" in again.stdout
    assert count_all(http) == before
