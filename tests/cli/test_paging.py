"""``list`` pages and sorts through the API's ``limit`` / ``marker`` / ``sort_key`` /
``sort_dir``; ``trace`` runs on the server (``POST /api/v1/trace``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from netloom.cli.main import app

pytestmark = pytest.mark.unit


def _json(cli: CliRunner, *args: str) -> Any:
    result = cli.invoke(app, ["--json", *args])
    assert result.exit_code == 0, result.stderr or result.output
    return json.loads(result.stdout)


def test_list_pages_and_sorts(cli: CliRunner) -> None:
    s = uuid.uuid4().hex[:6]
    tenant = _json(cli, "tenant", "create", "--name", f"pg-{s}")
    names = [f"pg-{s}-{c}" for c in "cab"]
    for n in names:
        _json(cli, "bridge", "create", "--tenant-id", tenant["id"], "--name", n)
    flt = ["--tenant-id", tenant["id"]]
    by_name = _json(cli, "bridge", "list", *flt, "--sort-key", "name", "--sort-dir", "desc")
    assert [b["name"] for b in by_name["items"]] == sorted(names, reverse=True)
    first = _json(cli, "bridge", "list", *flt, "--sort-key", "name", "--limit", "2")
    assert [b["name"] for b in first["items"]] == sorted(names)[:2] and first.get("next")
    marker = first["items"][-1]["id"]
    rest = _json(
        cli, "bridge", "list", *flt, "--sort-key", "name", "--limit", "2", "--marker", marker
    )
    assert [b["name"] for b in rest["items"]] == sorted(names)[2:] and not rest.get("next")
    bad = cli.invoke(app, ["bridge", "list", "--sort-dir", "sideways"])
    assert bad.exit_code == 1 and "sort_dir" in bad.stderr


def test_trace_is_answered_by_the_server(
    cli: CliRunner, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI sends one probe and reads one answer: it no longer lists the topology."""
    s = uuid.uuid4().hex[:6]
    tenant = _json(cli, "tenant", "create", "--name", f"tr-{s}")
    bridge = _json(cli, "bridge", "create", "--tenant-id", tenant["id"], "--name", f"tr-{s}")
    _json(cli, "dhcp-subnet", "create", "--bridge-id", bridge["id"], "--cidr", "10.99.0.0/24")
    port = _json(
        cli,
        "port",
        "create",
        "--device-id",
        bridge["id"],
        "--name",
        f"tr-{s}-p",
        "--fixed-ips",
        "10.99.0.5",
    )
    seen: list[tuple[str, str]] = []
    real = httpx.Client.request

    def spy(self: httpx.Client, method: str, url: Any, **kw: Any) -> httpx.Response:
        seen.append((method, str(url)))
        return real(self, method, url, **kw)

    monkeypatch.setattr(httpx.Client, "request", spy)
    body = _json(cli, "trace", "--from-port", port["id"], "--dst-ip", "10.99.0.9")
    assert body["in_port_id"] == port["id"] and body["verdict"]
    assert [m for m, u in seen if u.endswith("/trace")] == ["POST"]
    assert not [u for m, u in seen if m == "GET" and "/rules" in u]  # no topology download
    direct = http.post(
        "/trace", json={"from_port": port["id"], "dst_ip": "10.99.0.9", "explain": True}
    )
    assert direct.status_code == 200 and direct.json()["verdict"] == body["verdict"]
    # the source address reaches the server, which validates it
    bad = cli.invoke(
        app, ["trace", "--from-port", port["id"], "--dst-ip", "10.99.0.9", "--src-ip", "10.99"]
    )
    assert bad.exit_code != 0 and "src_ip" in (bad.stderr or bad.output)
