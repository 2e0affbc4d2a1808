"""Build a whole tenant topology through the CLI against a real cluster, read it back by HTTP.

Every object is created with the CLI (names where the CLI accepts names), then each one is
fetched with plain httpx and compared with what the CLI printed and with what was asked for.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit

Doc = dict[str, Any]


def nl(cli: CliRunner, *args: str) -> Any:
    """Run ``netloom --json ARGS`` in-process; return the parsed JSON it printed."""
    result = cli.invoke(app, ["--json", *args])
    assert result.exit_code == 0, f"netloom {' '.join(args)}: {result.stderr or result.output}"
    if not result.stdout.strip():
        return None
    body = json.loads(result.stdout)
    return body["items"] if isinstance(body, dict) and "items" in body else body


def strip_version(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "version"}


def build(cli: CliRunner, suffix: str) -> dict[str, Doc]:
    """The tenant topology of the brief; returns name -> the CLI's latest JSON of it."""
    s = suffix
    o: dict[str, Doc] = {}
    o["h1"] = nl(cli, "host", "create", "--name", f"h1{s}")
    o["t1"] = nl(cli, "tenant", "create", "--name", f"t1{s}")
    o["r1"] = nl(cli, "router", "create", "--tenant-id", f"t1{s}", "--name", f"r1{s}")
    for b in ("b1", "b2"):
        o[b] = nl(cli, "bridge", "create", "--tenant-id", f"t1{s}", "--name", f"{b}{s}")
    o["dhcp1"] = nl(
        cli,
        "dhcp-subnet",
        "create",
        "--bridge-id",
        f"b1{s}",
        "--cidr",
        "10.0.1.0/24",
        "--gateway",
        "10.0.1.1",
        "--dns-servers",
        "10.0.1.2,10.0.1.3",
        "--mtu",
        "1450",
        "--opt121-routes",
        '[{"dst": "10.0.2.0/24", "gateway": "10.0.1.1"}]',
        "--hosts",
        '{"mac": "02:00:00:00:01:10", "ip": "10.0.1.10", "name": "vm1"}',
    )
    o["dhcp2"] = nl(
        cli,
        "dhcp-subnet",
        "create",
        "--bridge-id",
        f"b2{s}",
        "--cidr",
        "10.0.2.0/24",
        "--gateway",
        "10.0.2.1",
        "--dns-servers",
        "10.0.2.2",
        "--no-enabled",
    )
    # router ports: the CLI infers type=router from the device
    o["rp1"] = nl(
        cli,
        "port",
        "create",
        "--device-id",
        f"r1{s}",
        "--name",
        f"rp1{s}",
        "--mac",
        "02:00:00:00:00:01",
        "--address",
        "10.0.1.1/24",
    )
    o["rp2"] = nl(
        cli,
        "port",
        "create",
        "--device-id",
        f"r1{s}",
        "--name",
        f"rp2{s}",
        "--mac",
        "02:00:00:00:00:02",
        "--address",
        "10.0.2.1/24",
    )
    o["bp1"] = nl(cli, "port", "create", "--device-id", f"b1{s}", "--name", f"bp1{s}")
    o["bp2"] = nl(
        cli, "port", "create", "--device-id", f"b2{s}", "--name", f"bp2{s}", "--type", "bridge"
    )
    o["vm1"] = nl(
        cli,
        "port",
        "create",
        "--device-id",
        f"b1{s}",
        "--name",
        f"vm1{s}",
        "--mac",
        "02:00:00:00:01:10",
        "--fixed-ips",
        "10.0.1.10",
    )
    o["vm2"] = nl(
        cli,
        "port",
        "create",
        "--device-id",
        f"b2{s}",
        "--name",
        f"vm2{s}",
        "--mac",
        "02:00:00:00:02:10",
        "--fixed-ips",
        "10.0.2.10",
        "--allowed-address-pairs",
        '[{"ip_address": "10.0.2.128/25"}]',
    )
    o["rp1"] = nl(cli, "port", "link", f"rp1{s}", "--peer", f"bp1{s}")
    o["rp2"] = nl(cli, "port", "link", o["rp2"]["id"], "--peer", o["bp2"]["id"])
    o["vm1"] = nl(cli, "port", "bind", f"vm1{s}", "--host", f"h1{s}", "--interface", f"tv1{s}")
    o["vm2"] = nl(cli, "port", "bind", f"vm2{s}", "--host", o["h1"]["id"], "--interface", f"tv2{s}")
    o["cin"] = nl(cli, "chain", "create", "--tenant-id", f"t1{s}", "--name", f"cin{s}")
    o["cout"] = nl(cli, "chain", "create", "--tenant-id", f"t1{s}", "--name", f"cout{s}")
    o["pg1"] = nl(
        cli, "port-group", "create", "--tenant-id", f"t1{s}", "--name", f"pg1{s}", "--stateful"
    )
    o["ipg1"] = nl(
        cli,
        "ip-addr-group",
        "create",
        "--name",
        f"ipg1{s}",
        "--addresses",
        "10.0.1.10",
        "--addresses",
        "10.0.2.10,10.0.2.11",
    )
    o["rule1"] = nl(
        cli,
        "rule",
        "create",
        "--chain-id",
        f"cin{s}",
        "--action",
        "accept",
        "--position",
        "0",
        "--nw-src",
        "10.0.1.0/24",
        "--tp-dst",
        "22",
        "--nw-proto",
        "6",
        "--ethertype",
        "0x0800",
        "--in-port-group-id",
        f"pg1{s}",
        "--ip-addr-group-dst-id",
        f"ipg1{s}",
        "--match-forward-flow",
    )
    o["rule2"] = nl(
        cli,
        "rule",
        "create",
        "--chain-id",
        f"cin{s}",
        "--action",
        "jump",
        "--jump-chain-id",
        f"cout{s}",
        "--position",
        "1",
    )
    o["rule3"] = nl(
        cli,
        "rule",
        "create",
        "--chain-id",
        f"cout{s}",
        "--action",
        "dnat",
        "--nat-targets",
        '{"address_from": "10.0.2.10", "address_to": "10.0.2.10",'
        ' "port_from": 8080, "port_to": 8080}',
        "--tp-dst",
        "80-81",
        "--in-port-ids",
        f"rp1{s},rp2{s}",
        "--inv-in-ports",
    )
    o["rt1"] = nl(
        cli,
        "route",
        "create",
        "--router-id",
        f"r1{s}",
        "--dst",
        "10.0.1.0/24",
        "--next-hop-port-id",
        f"rp1{s}",
    )
    o["rt2"] = nl(
        cli,
        "route",
        "create",
        "--router-id",
        f"r1{s}",
        "--dst",
        "10.0.2.0/24",
        "--next-hop-port-id",
        f"rp2{s}",
        "--weight",
        "50",
    )
    o["rt3"] = nl(
        cli, "route", "create", "--router-id", f"r1{s}", "--dst", "0.0.0.0/0", "--type", "blackhole"
    )
    o["vm1"] = nl(
        cli,
        "port",
        "update",
        f"vm1{s}",
        "--port-group-ids",
        f"pg1{s}",
        "--inbound-filter-id",
        f"cin{s}",
    )
    o["r1"] = nl(cli, "router", "update", f"r1{s}", "--outbound-filter-id", f"cout{s}")
    o["tz1"] = nl(
        cli,
        "tunnel-zone",
        "create",
        "--name",
        f"tz1{s}",
        "--members",
        json.dumps({"host_id": f"h1{s}", "ip": "192.0.2.11"}),
    )
    return o


COLLECTION = {
    "h": "hosts",
    "t": "tenants",
    "r": "routers",
    "b": "bridges",
    "d": "dhcp_subnets",
    "c": "chains",
    "p": "port_groups",
    "i": "ip_addr_groups",
    "tz": "tunnel_zones",
}


def collection_of(key: str) -> str:
    if key.startswith(("rp", "bp", "vm")):
        return "ports"
    if key.startswith("rule"):
        return "rules"
    if key.startswith("rt"):
        return "routes"
    if key.startswith("pg"):
        return "port_groups"
    if key.startswith("ipg"):
        return "ip_addr_groups"
    if key.startswith("tz"):
        return "tunnel_zones"
    return COLLECTION[key[0]]


def test_full_topology_roundtrip(cli: CliRunner, http: httpx.Client) -> None:
    o = build(cli, "-rt")
    ids = {k: v["id"] for k, v in o.items()}
    got = {}
    for key, doc in o.items():
        r = http.get(f"/{collection_of(key)}/{doc['id']}")
        assert r.status_code == 200, (key, r.text)
        got[key] = r.json()
    # ports that were linked from the other side changed after the CLI printed them
    for key in ("bp1", "bp2"):
        assert got[key]["peer_id"] == ids["rp" + key[-1]]
        o[key] = got[key]
    for key, doc in o.items():
        assert strip_version(got[key]) == strip_version(doc), key
    # what was asked for, field by field
    assert got["r1"]["tenant_id"] == ids["t1"] and got["b2"]["tenant_id"] == ids["t1"]
    assert got["r1"]["outbound_filter_id"] == ids["cout"]
    d1 = got["dhcp1"]
    assert (d1["bridge_id"], d1["cidr"], d1["gateway"]) == (ids["b1"], "10.0.1.0/24", "10.0.1.1")
    assert d1["dns_servers"] == ["10.0.1.2", "10.0.1.3"] and d1["mtu"] == 1450
    assert d1["opt121_routes"] == [{"dst": "10.0.2.0/24", "gateway": "10.0.1.1"}]
    assert d1["hosts"] == [{"mac": "02:00:00:00:01:10", "ip": "10.0.1.10", "name": "vm1"}]
    assert got["dhcp2"]["enabled"] is False
    assert got["rp1"]["type"] == "router" and got["rp1"]["address"] == "10.0.1.1/24"
    assert got["bp1"]["type"] == "bridge"
    assert got["rp1"]["peer_id"] == ids["bp1"] and got["rp2"]["peer_id"] == ids["bp2"]
    for vm, tap in (("vm1", "tv1-rt"), ("vm2", "tv2-rt")):
        assert (got[vm]["host_id"], got[vm]["interface_name"]) == (ids["h1"], tap)
        assert isinstance(got[vm]["tunnel_key"], int)  # allocated by the system
    assert got["vm1"]["port_group_ids"] == [ids["pg1"]]
    assert got["vm1"]["inbound_filter_id"] == ids["cin"]
    assert got["vm2"]["allowed_address_pairs"] == [{"ip_address": "10.0.2.128/25", "mac": None}]
    assert got["pg1"]["stateful"] is True
    assert got["ipg1"]["addresses"] == ["10.0.1.10", "10.0.2.10", "10.0.2.11"]
    r1 = got["rule1"]
    assert (r1["chain_id"], r1["action"], r1["nw_src"]) == (ids["cin"], "accept", "10.0.1.0/24")
    assert r1["tp_dst"] == {"start": 22, "end": 22} and r1["ethertype"] == 0x0800
    assert r1["in_port_group_id"] == ids["pg1"] and r1["ip_addr_group_dst_id"] == ids["ipg1"]
    assert r1["match_forward_flow"] is True and r1["nw_proto"] == 6
    assert got["rule2"]["jump_chain_id"] == ids["cout"] and got["rule2"]["position"] == 1
    r3 = got["rule3"]
    assert r3["nat_targets"] == [
        {"address_from": "10.0.2.10", "address_to": "10.0.2.10", "port_from": 8080, "port_to": 8080}
    ]
    assert r3["tp_dst"] == {"start": 80, "end": 81}
    assert r3["in_port_ids"] == [ids["rp1"], ids["rp2"]] and r3["inv_in_ports"] is True
    assert got["rt1"]["next_hop_port_id"] == ids["rp1"] and got["rt2"]["weight"] == 50
    assert got["rt3"]["type"] == "blackhole"
    assert got["tz1"]["members"] == [{"host_id": ids["h1"], "ip": "192.0.2.11"}]

    # list through the CLI == list through HTTP, with option filters and --filter
    by_cli = nl(cli, "port", "list", "--device-id", "r1-rt")
    by_http = http.get("/ports", params={"device_id": ids["r1"]}).json()
    by_http = by_http["items"] if isinstance(by_http, dict) else by_http
    assert sorted(p["id"] for p in by_cli) == sorted(p["id"] for p in by_http)
    assert {p["id"] for p in by_cli} == {ids["rp1"], ids["rp2"]}
    routes = nl(cli, "route", "list", "--filter", f"router_id={ids['r1']}", "--type", "normal")
    assert {r["id"] for r in routes if not r["system"]} == {ids["rt1"], ids["rt2"]}
    # show by name == show by id
    assert nl(cli, "bridge", "show", "b1-rt") == nl(cli, "bridge", "show", ids["b1"])


def test_human_output_lists_and_shows(cli: CliRunner) -> None:
    nl(cli, "tenant", "create", "--name", "human-t")
    nl(cli, "bridge", "create", "--tenant-id", "human-t", "--name", "human-b")
    listed = cli.invoke(app, ["bridge", "list", "--name", "human-b"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "human-b" in listed.stdout and "bridges (1)" in listed.stdout
    shown = cli.invoke(app, ["bridge", "show", "human-b"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "admin_state_up" in shown.stdout and "yes" in shown.stdout


def test_update_unset_and_version(cli: CliRunner, http: httpx.Client) -> None:
    c = nl(cli, "chain", "create", "--name", "upd-c")
    b = nl(cli, "bridge", "create", "--name", "upd-b", "--inbound-filter-id", "upd-c")
    assert b["inbound_filter_id"] == c["id"]
    version = http.get(f"/bridges/{b['id']}").json()["version"]
    b2 = nl(
        cli,
        "bridge",
        "update",
        "upd-b",
        "--unset",
        "inbound-filter-id",
        "--no-admin-state-up",
        "--if-version",
        str(version),
    )
    assert b2["inbound_filter_id"] is None and b2["admin_state_up"] is False
    assert b2["name"] == "upd-b"  # untouched fields are kept
    stale = cli.invoke(
        app, ["bridge", "update", "upd-b", "--name", "x", "--if-version", str(version)]
    )
    assert stale.exit_code == 1
    assert stale.stderr.startswith("error: precondition_failed: ")
    assert http.get(f"/bridges/{b['id']}").json()["name"] == "upd-b"


def test_data_option_and_file(cli: CliRunner, tmp_path: Any) -> None:
    path = tmp_path / "ipg.json"
    path.write_text(json.dumps({"name": "from-file", "addresses": ["192.0.2.1"]}))
    g = nl(cli, "ip-addr-group", "create", "--data", f"@{path}", "--addresses", "192.0.2.2")
    assert (g["name"], g["addresses"]) == ("from-file", ["192.0.2.2"])  # options win
    g = nl(cli, "ip-addr-group", "update", g["id"], "--data", '{"addresses": ["192.0.2.9"]}')
    assert g["addresses"] == ["192.0.2.9"]


def test_cascade_delete(cli: CliRunner, http: httpx.Client) -> None:
    r = nl(cli, "router", "create", "--name", "casc-r")
    p = nl(
        cli,
        "port",
        "create",
        "--device-id",
        "casc-r",
        "--name",
        "casc-p",
        "--mac",
        "02:00:00:00:0c:01",
        "--address",
        "198.51.100.1/24",
    )
    rt = nl(
        cli,
        "route",
        "create",
        "--router-id",
        "casc-r",
        "--dst",
        "198.51.100.0/24",
        "--next-hop-port-id",
        "casc-p",
    )
    refused = cli.invoke(app, ["router", "delete", "casc-r"])
    assert refused.exit_code == 1 and refused.stderr.startswith("error: ")
    assert http.get(f"/routers/{r['id']}").status_code == 200  # nothing changed
    done = cli.invoke(app, ["router", "delete", "casc-r", "--cascade"])
    assert done.exit_code == 0, done.stderr
    assert "with 1 ports, 3 routes" in done.stdout  # the port's connected and local routes too
    for coll, id in (("routers", r["id"]), ("ports", p["id"]), ("routes", rt["id"])):
        assert http.get(f"/{coll}/{id}").status_code == 404


def test_unlink_unbind(cli: CliRunner, http: httpx.Client) -> None:
    nl(cli, "host", "create", "--name", "ul-h")
    nl(cli, "bridge", "create", "--name", "ul-b")
    nl(cli, "router", "create", "--name", "ul-r")
    a = nl(cli, "port", "create", "--device-id", "ul-b", "--name", "ul-a")
    b = nl(
        cli,
        "port",
        "create",
        "--device-id",
        "ul-r",
        "--name",
        "ul-c",
        "--mac",
        "02:00:00:00:0d:01",
        "--address",
        "203.0.113.1/24",
    )
    nl(cli, "port", "link", "ul-a", "--peer", "ul-c")
    nl(cli, "port", "unlink", "ul-c")
    assert http.get(f"/ports/{a['id']}").json()["peer_id"] is None
    assert http.get(f"/ports/{b['id']}").json()["peer_id"] is None
    nl(cli, "port", "bind", "ul-a", "--host", "ul-h", "--interface", "ul0")
    nl(cli, "port", "unbind", "ul-a")
    assert http.get(f"/ports/{a['id']}").json()["host_id"] is None


# --- failures: real binary, exit code, exactly one stderr line -------------------------------


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_bad_cidr_is_one_line_and_changes_nothing(
    cluster: Any, cli: CliRunner, http: httpx.Client, run_netloom: Any
) -> None:
    b = nl(cli, "bridge", "create", "--name", "err-b")
    before = http.get("/dhcp_subnets").json()
    p = run_netloom(
        "dhcp-subnet",
        "create",
        "--bridge-id",
        b["id"],
        "--cidr",
        "10.9.0.1/24",
        "--api",
        cluster.api,
    )
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert line.startswith("error: invalid_input: ") and "cidr" in line, line
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert http.get("/dhcp_subnets").json() == before


def test_unknown_object(cluster: Any, run_netloom: Any) -> None:
    p = run_netloom("bridge", "show", "00000000-0000-4000-8000-000000000000", "--api", cluster.api)
    assert p.returncode == 1
    assert one_line(p.stderr).startswith("error: not_found: ")
    p = run_netloom("--api", cluster.api, "router", "delete", "no-such-router")
    assert p.returncode == 1
    assert one_line(p.stderr) == "error: not_found: no router named 'no-such-router'"


def test_bad_option_value(cluster: Any, run_netloom: Any) -> None:
    p = run_netloom("port", "create", "--device-id", "x", "--vlan-id", "ten", "--api", cluster.api)
    assert p.returncode == 1
    assert one_line(p.stderr) == "error: invalid_input: 'ten' is not an integer (field: vlan_id)"
    p = run_netloom(
        "rule",
        "create",
        "--chain-id",
        "x",
        "--action",
        "dnat",
        "--nat-targets",
        "{not json",
        "--api",
        cluster.api,
    )
    assert p.returncode == 1
    assert one_line(p.stderr).startswith("error: invalid_input: invalid JSON")


def test_unreachable_api(run_netloom: Any) -> None:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        p = run_netloom("tenant", "list", "--api", url)
    assert p.returncode == 3
    assert one_line(p.stderr) == f"error: cannot reach the API at {url}"
