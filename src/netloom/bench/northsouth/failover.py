"""A gateway dies under load: ``per_gateway`` echo streams through every gateway (source ports
chosen with the upstream's own route lookup, so the upstream sends each stream by a known
gateway) and a loop of new connections; after ``before`` seconds the first gateway's agent is
SIGKILLed and its uplink taken down; ``after`` seconds later everything stops.

* ``gap_ms``: the longest time any stream went without an echo from the kill on (a stream
  whose echoes never came back counts until the end);
* ``survived_other`` / ``survived_dead``: the fraction of the streams through the other
  gateways / through the dead one that still got echoes in the last ``SURVIVAL_WINDOW_S``;
* ``new_conn_ms``: from the kill until the start of the first handshake after the last one
  that failed (0 when none failed).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from netloom.bench.northsouth.echo import ConnectLoop, EchoServer, Stream, Streams
from netloom.bench.northsouth.world import Gateway, World
from netloom.errors import DatapathError
from netloom.lab import probes
from netloom.lab.addressing import EXTERNAL_HOST_IP, EXTERNAL_IF

FAILOVER_PORT = 5320
SPORT_BASE = 41000
CONNECT_TIMEOUT_S = 0.3
SURVIVAL_WINDOW_S = 1.0


def stream_plan(world: World, fip: str, per_gateway: int) -> list[tuple[int, int]]:
    """(gateway index, source port) pairs: ``per_gateway`` source ports that the upstream's
    multipath hash sends by each gateway."""
    by_ip = {g.port_ip: g.index for g in world.gateways}
    want = dict.fromkeys(by_ip.values(), per_gateway)
    plan: list[tuple[int, int]] = []
    for sport in range(SPORT_BASE, SPORT_BASE + 64 * per_gateway * len(by_ip)):
        via = probes.route_via(
            world.upstream, EXTERNAL_IF, EXTERNAL_HOST_IP, fip, (sport, FAILOVER_PORT)
        )
        gw = by_ip.get(via)
        if gw is not None and want[gw] > 0:
            want[gw] -= 1
            plan.append((gw, sport))
        if not any(want.values()):
            return plan
    raise DatapathError(f"the upstream sends no flow to {fip} by some gateway: left {want}")


def _gap(st: Stream, since: float, end: float) -> float:
    """The longest stretch without an echo between ``since`` and ``end``."""
    times = [since] + [t for t in st.arrivals if t > since] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def _alive(st: Stream, end: float) -> bool:
    return st.closed_at is None and any(t > end - SURVIVAL_WINDOW_S for t in st.arrivals)


def _fraction(streams: Sequence[Stream], end: float) -> float | None:
    return sum(_alive(s, end) for s in streams) / len(streams) if streams else None


def _new_conn_ms(loop: ConnectLoop, killed: float) -> dict[str, Any]:
    after = [a for a in loop.attempts if a.end > killed]
    failed = [a for a in after if a.outcome != "connected"]
    if not failed:
        ms = 0.0
    else:
        last = max(a.end for a in failed)
        nxt = [a.start for a in after if a.start >= last and a.outcome == "connected"]
        ms = (min(nxt) - killed) * 1000 if nxt else None  # type: ignore[assignment]
    return {"ms": ms, "attempts": len(after), "failed": len(failed)}


def measure(world: World, per_gateway: int, before: float, after: float) -> dict[str, Any]:
    """Run the failover scenario on the first gateway (see the module docstring)."""
    target = world.targets[0]
    victim: Gateway = world.gateways[0]
    plan = stream_plan(world, target.floating_ip, per_gateway)
    server = EchoServer([t.netns for t in world.targets], FAILOVER_PORT)
    try:
        streams = Streams(world.external, target.floating_ip, FAILOVER_PORT, plan)
        loop = ConnectLoop(world.external, target.floating_ip, FAILOVER_PORT, CONNECT_TIMEOUT_S)
        try:
            time.sleep(before)
            killed = time.monotonic()
            world.kill_gateway(victim)
            time.sleep(after)
            end = time.monotonic()
        finally:
            loop.close()
            streams.close()
    finally:
        server.close()
    dead = [s for s in streams.streams if s.gateway == victim.index]
    other = [s for s in streams.streams if s.gateway != victim.index]
    gaps = {f"gw{s.gateway}:{s.sport}": round(_gap(s, killed, end) * 1000, 1) for s in dead + other}
    conn = _new_conn_ms(loop, killed)
    return {
        "killed": f"gw{victim.index}",
        "streams": len(plan),
        "gap_ms": max(gaps.values()),
        "gap_ms_dead": max(gaps[f"gw{s.gateway}:{s.sport}"] for s in dead),
        "gap_ms_other": max((gaps[f"gw{s.gateway}:{s.sport}"] for s in other), default=None),
        "gaps_ms": gaps,
        "survived_other": _fraction(other, end),
        "survived_dead": _fraction(dead, end),
        "new_conn_ms": None if conn["ms"] is None else round(conn["ms"], 1),
        "connect_attempts": conn["attempts"],
        "connect_failed": conn["failed"],
    }


__all__ = ["FAILOVER_PORT", "measure", "stream_plan"]
