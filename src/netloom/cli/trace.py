"""`netloom trace`: the what-if trace, run by the cluster.

Asks the API (``POST /api/v1/trace``) to run the production simulator on a probe packet from a
VM port against the cluster's own view of the topology, so nothing but the answer crosses the
network, and prints the path, the rules that matched, the rule that decided, the verdict and what
the trace assumed. No packet is sent.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import guarded, settings
from netloom.errors import InvalidInput
from netloom.plan import Resolver
from netloom.sim import render_json
from netloom.sim.trace import trace_from_json


def egress_text(entry: dict[str, Any]) -> str:
    """One egress of a trace in words (``netloom trace`` prints it)."""
    uplink = entry["uplink_name"] or entry["uplink_port_id"]
    host = entry["host_name"] or entry["host_id"]
    via = f" via {entry['next_hop_gateway']}" if entry["next_hop_gateway"] else ""
    why = f"route {entry['dst']} ({entry['route_id'][:8]})"
    if entry["learned_from"]:
        why += (
            f" learned from bgp peer {entry['peer_address']} AS {entry['peer_asn']}"
            f" ({entry['learned_from'][:8]})"
        )
    else:
        why = "static " + why
    return f"leaves by uplink {uplink} of host {host}{via}: {why}"


def _trace_cmd(
    ctx: typer.Context,
    from_port: Annotated[str, typer.Option("--from-port", help="VM port (id or name)")],
    dst_ip: Annotated[str, typer.Option("--dst-ip", help="destination IPv4 address")],
    proto: Annotated[str, typer.Option("--proto", help="icmp, tcp or udp")] = "icmp",
    src_ip: Annotated[
        str | None,
        typer.Option("--src-ip", help="source IPv4 address (default: the port's first fixed IP)"),
    ] = None,
    sport: Annotated[int, typer.Option("--sport", min=0, max=65535)] = 40000,
    dport: Annotated[int, typer.Option("--dport", min=0, max=65535)] = 80,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="also say why each earlier rule of a chain did not match"
        ),
    ] = False,
) -> None:
    """What-if: the path a packet from PORT to DST would take, without sending it."""
    opts = settings(ctx, api, json_out)
    if proto not in ("icmp", "tcp", "udp"):
        raise InvalidInput(f"protocol {proto!r}: want icmp, tcp or udp", field="proto")
    probe: dict[str, Any] = {
        "dst_ip": dst_ip,
        "proto": proto,
        "sport": sport,
        "dport": dport,
        "explain": verbose,
    }
    if src_ip is not None:
        probe["src_ip"] = src_ip
    with ApiClient(opts.api) as client:
        port_id = Resolver(client).find(("port",), from_port, "from_port")[1]
        body: dict[str, Any] = client.request(
            "POST", "/trace", json_body={"from_port": port_id, **probe}
        )
    if opts.json:
        output.print_json(body)
        return
    for line in body["assumed"]:
        typer.echo(f"(assumed: {line})")
    typer.echo(render_json(body))
    for entry in body.get("egress", ()):
        typer.echo(egress_text(entry))
    rule = trace_from_json(body["trace"]).decided_by()
    if rule is not None:
        typer.echo(f"decided by: rule {rule.name} ({rule.id}): {rule.decision}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.command("trace")(guarded(_trace_cmd))
