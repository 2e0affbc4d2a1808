"""``netloom simlog list``: the simulation log of every host, from the cluster
(``GET /api/v1/insights/simlog``), newest first."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import guarded, settings
from netloom.errors import InvalidInput
from netloom.plan import Resolver
from netloom.sim.trace import trace_from_json

simlog_app = typer.Typer(help="The simulation log: every simulated packet and flow event.")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(value: str, now: float) -> float:
    """``10m`` (s, m, h, d: that long ago) or wall-clock seconds since the epoch."""
    v = value.strip()
    try:
        if v and v[-1] in _UNITS:
            return now - float(v[:-1]) * _UNITS[v[-1]]
        return float(v)
    except ValueError:
        raise InvalidInput(
            f"{value!r}: want a duration (30s, 10m, 2h, 1d) or epoch seconds", field="since"
        ) from None


def _match_text(m: dict[str, str]) -> str:
    src, dst = m.get("ip_src"), m.get("ip_dst")
    if src is None and dst is None:
        return " ".join(f"{k}={v}" for k, v in m.items() if k != "in_port")
    proto = {"6": "tcp", "17": "udp", "1": "icmp"}.get(m.get("ip_proto", ""), m.get("ip_proto"))
    sp, dp = m.get("tp_src"), m.get("tp_dst")
    a = f"{src}:{sp}" if sp is not None else str(src)
    b = f"{dst}:{dp}" if dp is not None else str(dst)
    return f"{proto or 'ip'} {a} > {b}"


def _row(e: dict[str, Any]) -> tuple[str, ...]:
    when = time.strftime("%H:%M:%S", time.gmtime(e["t"])) + f".{int(e['t'] * 1000) % 1000:03d}"
    to = [f"port {p[:8]}" for p in e["out"]] + [f"host {h[:8]}" for h in e["hosts"]]
    return (
        str(e["id"]),
        when,
        e["host"][:8],
        e["kind"],
        (e["port"] or "")[:8],
        e["verdict"],
        _match_text(e["match"]) if e["match"] else "",
        ", ".join(to),
        str(e["flow"] or ""),
        e["trace"] or e["detail"],
    )


@simlog_app.command("list")
@guarded
def list_cmd(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="host (id or name)")] = None,
    port: Annotated[str | None, typer.Option("--port", help="in-port (id or name)")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="sim, installed, ...")] = None,
    verdict: Annotated[str | None, typer.Option("--verdict", help="forward, drop...")] = None,
    trace: Annotated[str | None, typer.Option("--trace", help="a trace id")] = None,
    since: Annotated[str | None, typer.Option("--since", help="10m, 2h or epoch s")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="each trace too")] = False,
) -> None:
    """The latest entries of every host's simulation log (newest first)."""
    opts = settings(ctx, api, json_out)
    params = {"kind": kind, "verdict": verdict, "trace": trace, "limit": str(limit)}
    if since is not None:
        params["since"] = str(parse_since(since, time.time()))
    with ApiClient(opts.api) as client:
        r = Resolver(client)
        if host is not None:
            params["host"] = r.find(("host",), host, "host")[1]
        if port is not None:
            params["port"] = r.find(("port",), port, "port")[1]
        query = {k: v for k, v in params.items() if v is not None}
        body: dict[str, Any] = client.request("GET", "/insights/simlog", params=query)
    if opts.json:
        output.print_json(body)
        return
    header = ("id", "time", "host", "kind", "port", "verdict", "match", "to", "flow", "why")
    if not verbose:
        output.render_rows("simulation log", header, [_row(e) for e in body["entries"]])
        return
    for e in body["entries"]:
        typer.echo("  ".join(x for x in _row(e) if x))
        if e["steps"]:
            typer.echo(trace_from_json(e["steps"]).render())


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.add_typer(simlog_app, name="simlog")


__all__ = ["parse_since", "register", "simlog_app"]
