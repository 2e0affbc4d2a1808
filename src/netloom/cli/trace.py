"""`netloom trace`: the offline what-if trace.

Reads the live topology through the REST API, then runs the production simulator
(:func:`netloom.sim.trace_probe`) on a probe packet from a VM port, and prints the path, the rules
that matched and the verdict. No packet is sent anywhere.

The simulation starts from empty host state, so two things an agent would have learned are
assumed: next hops resolve from the ports' known addresses (the simulator does that itself), and a
SNAT port block is leased when a SNAT rule asks for one (the agent leases blocks from the cluster;
the trace says that it assumed one).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.objects import Resolver, guarded, settings
from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS
from netloom.model.records import Record
from netloom.packet.util import ip_to_int
from netloom.sim import MemoryTopology, Result, SimState, Verdict, render_result, result_to_json
from netloom.sim.trace import trace_probe

# What-if leases: a whole range, so any port the simulator picks is inside it.
_WHATIF_BLOCK = (1024, 65535)
_MAX_ASSUMPTIONS = 8


def load_topology(client: ApiClient) -> MemoryTopology:
    """Every record of every kind, validated as the agent's cache would."""
    records: list[Record] = []
    for kind in KINDS.values():
        for doc in client.list(kind.collection):
            data = {k: v for k, v in doc.items() if k != "version"}
            records.append(kind.record.model_validate(data))
    return MemoryTopology(records)


def run_trace(
    topology: MemoryTopology,
    from_port: str,
    dst_ip: str,
    proto: str,
    sport: int,
    dport: int,
) -> tuple[Result, list[str]]:
    """Simulate the probe; lease what-if SNAT blocks when the simulator waits for one."""
    state = SimState()
    assumed: list[str] = []
    for _ in range(_MAX_ASSUMPTIONS):
        result = trace_probe(topology, state, from_port, dst_ip, proto, sport, dport)
        awaiting = [
            a for a in result.awaiting if a and a[0] == "snat-block" and a[2] != "exhausted"
        ]
        if result.verdict != Verdict.NOT_YET or not awaiting:
            return result, assumed
        for _, device, ip in awaiting:
            state.lease_snat_block(device, ip_to_int(ip), *_WHATIF_BLOCK)
            assumed.append(f"SNAT port block {_WHATIF_BLOCK[0]}-{_WHATIF_BLOCK[1]} on {ip}")
    return result, assumed


def _trace_cmd(
    ctx: typer.Context,
    from_port: Annotated[str, typer.Option("--from-port", help="VM port (id or name)")],
    dst_ip: Annotated[str, typer.Option("--dst-ip", help="destination IPv4 address")],
    proto: Annotated[str, typer.Option("--proto", help="icmp, tcp or udp")] = "icmp",
    sport: Annotated[int, typer.Option("--sport", min=0, max=65535)] = 40000,
    dport: Annotated[int, typer.Option("--dport", min=0, max=65535)] = 80,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What-if: the path a packet from PORT to DST would take, without sending it."""
    opts = settings(ctx, api, json_out)
    if proto not in ("icmp", "tcp", "udp"):
        raise InvalidInput(f"protocol {proto!r}: want icmp, tcp or udp", field="proto")
    with ApiClient(opts.api) as client:
        port_id = Resolver(client).find(("port",), from_port, "from_port")[1]
        topology = load_topology(client)
    result, assumed = run_trace(topology, port_id, dst_ip, proto, sport, dport)
    if opts.json:
        body: dict[str, Any] = result_to_json(result)
        body["assumed"] = assumed
        output.print_json(body)
        return
    for line in assumed:
        typer.echo(f"(assumed: {line})")
    typer.echo(render_result(result))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("trace")(guarded(_trace_cmd))
