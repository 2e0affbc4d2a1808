"""``netloom flows``: the cluster's flow history (``/api/v1/insights/flows``).

``top`` (top talkers by bytes), ``drops`` (dropped flows per rule over time), ``list`` (flows
of a port, a security group, between two VMs or addresses, in a time window) and ``show``.
Times are Unix seconds or a duration ago (``90s``, ``15m``, ``2h``, ``1d``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import guarded, settings
from netloom.errors import InvalidInput
from netloom.plan import Resolver

flows_app = typer.Typer(help="The flow history: top talkers, drops by rule, flows.")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Api = Annotated[str | None, typer.Option("--api", help="API URL")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Since = Annotated[str | None, typer.Option("--since", help="Unix seconds or a duration ago")]
Until = Annotated[str | None, typer.Option("--until", help="Unix seconds or a duration ago")]
Port = Annotated[str | None, typer.Option("--port", help="flows in or out of this port")]
PeerPort = Annotated[str | None, typer.Option("--peer-port", help="with --port: between both")]
Ip = Annotated[str | None, typer.Option("--ip", help="flows from or to this address")]
PeerIp = Annotated[str | None, typer.Option("--peer-ip", help="with --ip: between both")]
Group = Annotated[str | None, typer.Option("--security-group", help="decided by this group")]
Rule = Annotated[str | None, typer.Option("--rule", help="decided by this rule (id)")]
Host = Annotated[str | None, typer.Option("--host", help="through this host (id)")]
Verdict = Annotated[str | None, typer.Option("--verdict", help="forward | drop | reject")]


def parse_time(value: str, field: str, now: float) -> float:
    """Unix seconds, or a duration before ``now`` (``15m``)."""
    text = value.strip()
    try:
        if text and text[-1] in _UNITS:
            return now - float(text[:-1]) * _UNITS[text[-1]]
        return float(text)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is neither Unix seconds nor a duration like 15m", field=field
        ) from None


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _params(client: ApiClient, **given: str | None) -> dict[str, str]:
    """Query parameters from the options given; names of ports and groups become ids."""
    now = time.time()
    out: dict[str, str] = {}
    resolver = Resolver(client)
    for key, value in given.items():
        if value is None:
            continue
        if key in ("since", "until"):
            value = repr(parse_time(value, key, now))
        elif key in ("port_id", "peer_port_id"):
            value = resolver.find(("port",), value, key)[1]
        elif key == "security_group_id":
            value = resolver.find(("port_group",), value, key)[1]
        out[key] = value
    return out


def _query(
    ctx: typer.Context, api: str | None, json_out: bool, path: str, **given: str | None
) -> dict[str, Any] | None:
    """GET one flow-history resource; print it as JSON and answer None when --json is given."""
    opts = settings(ctx, api, json_out)
    with ApiClient(opts.api) as client:
        body: dict[str, Any] = client.request("GET", path, params=_params(client, **given))
    if opts.json:
        output.print_json(body)
        return None
    return body


@flows_app.command("top")
@guarded
def top_cmd(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="source | destination | pair | port")] = "source",
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 10,
    since: Since = None,
    until: Until = None,
    api: Api = None,
    json_out: Json = False,
) -> None:
    """Top talkers by bytes over a time window."""
    body = _query(
        ctx, api, json_out, "/insights/flows/top", since=since, until=until, by=by, limit=str(limit)
    )
    if body is None:
        return
    talkers = body["talkers"]
    keys = [k for k in (talkers[0] if talkers else {}) if k not in ("bytes", "packets", "flows")]
    rows = [[t[k] for k in keys] + [t["bytes"], t["packets"], t["flows"]] for t in talkers]
    output.render_rows(f"top talkers by {body['by']}", [*keys, "bytes", "packets", "flows"], rows)


@flows_app.command("drops")
@guarded
def drops_cmd(
    ctx: typer.Context,
    bucket: Annotated[float, typer.Option("--bucket", help="seconds per time bucket")] = 60.0,
    rules: Annotated[int, typer.Option("--rules", min=1, help="rules with the most drops")] = 10,
    rule: Rule = None,
    since: Since = None,
    until: Until = None,
    api: Api = None,
    json_out: Json = False,
) -> None:
    """Dropped and rejected flows per deciding rule over time."""
    body = _query(
        ctx,
        api,
        json_out,
        "/insights/flows/drops",
        **{"since": since, "until": until, "rule_id": rule},
        **{"bucket": repr(bucket), "rules": str(rules)},
    )
    if body is None:
        return
    rows = [
        [_when(d["time"]), d["rule_id"] or "(no rule)", d["flows"], d["packets"], d["bytes"]]
        for d in body["drops"]
    ]
    output.render_rows("drops by rule", ["time", "rule_id", "flows", "packets", "bytes"], rows)


def _flow_row(f: dict[str, Any]) -> list[Any]:
    src = f"{f['src_ip']}:{f['src_port']}"
    dst = f"{f['dst_ip']}:{f['dst_port']}"
    last = _when(f["last_seen"])
    return [f["flow_id"], f["proto"], src, dst, f["verdict"], f["packets"], f["bytes"], last]


@flows_app.command("list")
@guarded
def list_cmd(
    ctx: typer.Context,
    port: Port = None,
    peer_port: PeerPort = None,
    ip: Ip = None,
    peer_ip: PeerIp = None,
    security_group: Group = None,
    rule: Rule = None,
    host: Host = None,
    verdict: Verdict = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    api: Api = None,
    json_out: Json = False,
) -> None:
    """Flows, the last seen first (one page of --limit)."""
    body = _query(
        ctx,
        api,
        json_out,
        "/insights/flows",
        **{"port_id": port, "peer_port_id": peer_port, "ip": ip, "peer_ip": peer_ip},
        **{"security_group_id": security_group, "rule_id": rule, "host_id": host},
        **{"verdict": verdict, "since": since, "until": until, "limit": str(limit)},
    )
    if body is None:
        return
    header = ["flow_id", "proto", "source", "destination", "verdict", "packets", "bytes", "last"]
    output.render_rows("flows", header, [_flow_row(f) for f in body["flows"]])


@flows_app.command("show")
@guarded
def show_cmd(
    ctx: typer.Context,
    flow_id: Annotated[str, typer.Argument(help="the flow's id")],
    api: Api = None,
    json_out: Json = False,
) -> None:
    """One flow: its identity, the devices and rules that decided it, its counters."""
    body = _query(ctx, api, json_out, f"/insights/flows/{flow_id}")
    if body is None:
        return
    output.render_rows(f"flow {flow_id}", ["field", "value"], list(body.items()))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.add_typer(flows_app, name="flows")


__all__ = ["parse_time", "register"]
