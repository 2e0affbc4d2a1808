"""Output formats of the object commands (``-f``, ``-c``, ``--long``), names next to ids, the
port list's address/tenant/device filters, rules in evaluation order and id prefixes as input,
all through the CLI against a live cluster."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
WIDE = {"COLUMNS": "250"}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args), env=WIDE)
    assert result.exit_code == 0, f"netloom {' '.join(args)}: {result.stderr or result.output}"
    return result.stdout


def fails(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args), env=WIDE)
    assert result.exit_code == 1, result.output
    return result.stderr


def nl(cli: CliRunner, *args: str) -> Any:
    body = json.loads(run(cli, *args, "--json"))
    return body["items"] if isinstance(body, dict) and "items" in body else body


def topology(cli: CliRunner) -> dict[str, Doc]:
    """A tenant with a bridge (two VM ports, a subnet), a router port on it, a chain of three
    rules; names carry a random suffix so tests of one cluster do not collide."""
    s = uuid.uuid4().hex[:6]
    o: dict[str, Doc] = {"s": {"suffix": s}}
    o["t"] = nl(cli, "tenant", "create", "--name", f"t-{s}")
    o["b"] = nl(cli, "bridge", "create", "--tenant-id", f"t-{s}", "--name", f"b-{s}")
    nl(cli, "dhcp-subnet", "create", "--bridge-id", f"b-{s}", "--cidr", "10.0.1.0/24")
    o["r"] = nl(cli, "router", "create", "--tenant-id", f"t-{s}", "--name", f"r-{s}")
    for n, ip in (("p1", "10.0.1.10"), ("p2", "10.0.1.11")):
        o[n] = nl(
            cli, "port", "create", "--device-id", f"b-{s}", "--name", f"{n}-{s}", "--fixed-ips", ip
        )
    o["rp"] = nl(
        cli, "port", "create", "--device-id", f"r-{s}", "--name", f"rp-{s}", "--address",
        "10.0.1.1/24",
    )  # fmt: skip
    o["c"] = nl(cli, "chain", "create", "--tenant-id", f"t-{s}", "--name", f"c-{s}")
    for n, action, pos in (("ra", "accept", None), ("rb", "drop", None), ("rc", "accept", "0")):
        extra = ["--position", pos] if pos else []
        o[n] = nl(
            cli, "rule", "create", "--chain-id", f"c-{s}", "--name", f"{n}-{s}",
            "--action", action, *extra,
        )  # fmt: skip
    return o


@pytest.fixture(scope="module")
def topo(cluster: Any) -> dict[str, Doc]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLOOM_API", cluster.api)
        return topology(CliRunner())


def test_port_list_table_names_short_ids_fixed_ips(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    out = run(cli, "port", "list", "--tenant", f"t-{s}")
    assert UUID_RE.search(out) is None  # ids are cut to 8 characters, never wrapped
    for n in ("p1", "p2", "rp"):
        assert topo[n]["id"][:8] in out and f"{n}-{s}" in out
    assert f"b-{s}" in out and f"r-{s}" in out  # the device's name next to its id
    assert "10.0.1.10" in out and "10.0.1.1/24" in out
    assert "ports (3)" in out


def test_port_list_formats(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    want = {topo[n]["id"] for n in ("p1", "p2")}
    args = ("port", "list", "--device", f"b-{s}")
    as_json = json.loads(run(cli, *args, "-f", "json"))
    assert as_json == json.loads(run(cli, *args, "--json"))
    assert {d["id"] for d in as_json["items"]} == want
    as_yaml = yaml.safe_load(run(cli, *args, "-f", "yaml"))
    assert {d["id"] for d in as_yaml} == want and all("fixed_ips" in d for d in as_yaml)
    rows = list(csv.DictReader(io.StringIO(run(cli, *args, "-f", "csv"))))
    assert {r["id"] for r in rows} == want  # full ids outside tables
    assert {r["device_name"] for r in rows} == {f"b-{s}"}
    assert {r["fixed_ips"] for r in rows} == {"10.0.1.10", "10.0.1.11"}
    values = run(cli, *args, "-f", "value", "-c", "id").splitlines()
    assert set(values) == want and len(values) == 2
    pairs = run(cli, *args, "-f", "value", "-c", "name", "-c", "device_name").splitlines()
    assert sorted(pairs) == [f"p1-{s} b-{s}", f"p2-{s} b-{s}"]
    picked = json.loads(run(cli, *args, "-f", "json", "-c", "id", "-c", "fixed_ips"))
    assert all(set(d) == {"id", "fixed_ips"} for d in picked)


def test_long_shows_more_columns(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    args = ("port", "list", "--device", f"b-{s}", "-f", "csv")
    short = next(csv.reader(io.StringIO(run(cli, *args))))
    long = next(csv.reader(io.StringIO(run(cli, *args, "--long"))))
    assert set(short) < set(long) and "allowed_address_pairs" in long


def test_port_filters(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]

    def ids(*args: str) -> set[str]:
        return set(run(cli, "port", "list", *args, "-f", "value", "-c", "id").split())

    scope = ("--tenant", f"t-{s}")
    assert ids(*scope, "--ip", "10.0.1.10") == {topo["p1"]["id"]}
    assert ids(*scope, "--ip", "10.0.1.1") == {topo["rp"]["id"]}
    assert ids(*scope, "--ip", "10.0.1.0/24") == {topo[n]["id"] for n in ("p1", "p2", "rp")}
    assert ids(*scope, "--ip", "10.9.9.9") == set()
    assert ids("--device", f"r-{s}") == {topo["rp"]["id"]}
    assert ids("--tenant", topo["t"]["id"][:8], "--type", "bridge") == {
        topo[n]["id"] for n in ("p1", "p2")
    }
    filtered = json.loads(run(cli, "port", "list", *scope, "--ip", "10.0.1.11", "--json"))
    items = filtered["items"] if isinstance(filtered, dict) else filtered
    assert [d["id"] for d in items] == [topo["p2"]["id"]]
    assert "ip" in fails(cli, "port", "list", "--ip", "not-an-ip")


def test_rule_list_in_evaluation_order(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    rows = list(
        csv.DictReader(io.StringIO(run(cli, "rule", "list", "--chain-id", f"c-{s}", "-f", "csv")))
    )
    assert [r["name"] for r in rows] == [f"rc-{s}", f"ra-{s}", f"rb-{s}"]
    assert [int(r["position"]) for r in rows] == sorted(int(r["position"]) for r in rows)
    assert {r["chain_name"] for r in rows} == {f"c-{s}"}
    table = run(cli, "rule", "list", "--chain-id", f"c-{s}")
    assert "position" in table and f"c-{s}" in table
    assert table.index(f"rc-{s}") < table.index(f"ra-{s}") < table.index(f"rb-{s}")


def test_show_formats(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    p1 = topo["p1"]
    table = run(cli, "port", "show", f"p1-{s}")
    assert f"{p1['device_id']} (b-{s})" in table  # full id in a show, then the name
    doc = yaml.safe_load(run(cli, "port", "show", f"p1-{s}", "-f", "yaml"))
    assert doc["id"] == p1["id"] and doc["fixed_ips"] == ["10.0.1.10"]
    assert run(cli, "port", "show", f"p1-{s}", "-f", "value", "-c", "id", "-c", "device_name") == (
        f"{p1['id']}\nb-{s}\n"
    )
    rows = list(csv.DictReader(io.StringIO(run(cli, "port", "show", f"p1-{s}", "-f", "csv"))))
    assert len(rows) == 1 and rows[0]["id"] == p1["id"]
    assert json.loads(run(cli, "port", "show", f"p1-{s}", "-f", "json")) == json.loads(
        run(cli, "port", "show", f"p1-{s}", "--json")
    )
    created = yaml.safe_load(
        run(cli, "tenant", "create", "--name", f"tf-{s}", "-f", "yaml", "-c", "name")
    )
    assert created == {"name": f"tf-{s}"}


def test_bad_format_and_column(cli: CliRunner) -> None:
    assert "format" in fails(cli, "tenant", "list", "-f", "xml")
    err = fails(cli, "tenant", "list", "-c", "nope")
    assert "nope" in err and "column" in err


def test_id_prefixes_as_input(cli: CliRunner, topo: dict[str, Doc]) -> None:
    s = topo["s"]["suffix"]
    p1 = topo["p1"]
    assert nl(cli, "port", "show", p1["id"][:8])["id"] == p1["id"]
    assert nl(cli, "port", "show", p1["id"][:8].upper())["id"] == p1["id"]
    # a reference option: a port on the bridge named by an id prefix
    port = nl(cli, "port", "create", "--device-id", topo["b"]["id"][:10], "--name", f"p3-{s}")
    assert port["device_id"] == topo["b"]["id"] and port["type"] == "bridge"
    assert nl(cli, "port", "list", "--device-id", topo["r"]["id"][:8])[0]["id"] == topo["rp"]["id"]
    # two objects sharing a prefix: ambiguous, with the count
    base = uuid.uuid4().hex[:8]
    for i in (1, 2):
        tid = f"{base}-0000-4000-8000-00000000000{i}"
        nl(cli, "tenant", "create", "--id", tid, "--name", f"pfx{i}-{s}")
    err = fails(cli, "tenant", "show", base)
    assert "2 objects" in err and base in err
    assert nl(cli, "tenant", "show", f"{base}-0000-4000-8000-000000000002")["id"].endswith("2")
    assert "not_found" in fails(cli, "tenant", "show", "fffffffff0")
