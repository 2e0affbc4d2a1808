"""A gateway dies under load: ``per_gateway`` times as many echo streams as gateways from the
external host to a floating IP, and a loop of new connections; after ``before`` seconds the
first gateway's agent is SIGKILLed and its uplink taken down; ``after`` seconds later
everything stops. Which gateway a stream takes is the upstream's hash (the sender's socket
hash, :mod:`.spread`), so it is observed: the upstream uplink interface its segments left by
just before the kill (a packet socket per interface).

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
from collections import Counter
from collections.abc import Sequence
from typing import Any

from netloom.bench.northsouth.echo import ConnectLoop, EchoServer, Stream, Streams
from netloom.bench.northsouth.spread import Tap
from netloom.bench.northsouth.world import Gateway, World
from netloom.lab.addressing import EXTERNAL_HOST_IP

FAILOVER_PORT = 5320
CONNECT_TIMEOUT_S = 0.3
SURVIVAL_WINDOW_S = 1.0


def _gap(st: Stream, since: float, end: float) -> float:
    """The longest stretch without an echo between ``since`` and ``end``."""
    times = [since] + [t for t in st.arrivals if t > since] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def _alive(st: Stream, end: float) -> bool:
    return st.closed_at is None and any(t > end - SURVIVAL_WINDOW_S for t in st.arrivals)


def _fraction(streams: Sequence[Stream], end: float) -> float | None:
    return sum(_alive(s, end) for s in streams) / len(streams) if streams else None


def _new_conn(loop: ConnectLoop, killed: float) -> dict[str, Any]:
    after = [a for a in loop.attempts if a.end > killed]
    failed = [a for a in after if a.outcome != "connected"]
    ms: float | None = 0.0
    if failed:
        last = max(a.end for a in failed)
        nxt = [a.start for a in after if a.start >= last and a.outcome == "connected"]
        ms = round((min(nxt) - killed) * 1000, 1) if nxt else None  # not within the window
    return {"new_conn_ms": ms, "connect_attempts": len(after), "connect_failed": len(failed)}


def measure(world: World, per_gateway: int, before: float, after: float) -> dict[str, Any]:
    """Run the failover scenario on the first gateway (see the module docstring)."""
    target = world.targets[0]
    victim: Gateway = world.gateways[0]
    ifs = {g.upstream_if: g.index for g in world.gateways}
    tap = Tap(world.upstream, list(ifs))
    server = EchoServer([t.netns for t in world.targets], FAILOVER_PORT)
    try:
        count = per_gateway * len(world.gateways)
        streams = Streams(world.external, target.floating_ip, FAILOVER_PORT, count)
        loop = ConnectLoop(world.external, target.floating_ip, FAILOVER_PORT, CONNECT_TIMEOUT_S)
        try:
            tap.drain(time.monotonic() + before)
            killed = time.monotonic()
            world.kill_gateway(victim)
            time.sleep(after)
            end = time.monotonic()
        finally:
            loop.close()
            streams.close()
    finally:
        server.close()
        tap.close()
    for st in streams.streams:
        via = tap.last_via.get((EXTERNAL_HOST_IP, st.sport, target.floating_ip, FAILOVER_PORT))
        st.gateway = ifs.get(via or "", 0)
    return _figures(streams.streams, victim.index, killed, end) | _new_conn(loop, killed)


def _figures(streams: list[Stream], victim: int, killed: float, end: float) -> dict[str, Any]:
    dead = [s for s in streams if s.gateway == victim]
    other = [s for s in streams if s.gateway != victim]
    gaps = {s.sport: round(_gap(s, killed, end) * 1000, 1) for s in streams}
    return {
        "killed": f"gw{victim}",
        "streams_per_gateway": dict(sorted(Counter(f"gw{s.gateway}" for s in streams).items())),
        "gap_ms": max(gaps.values()),
        "gap_ms_dead": max((gaps[s.sport] for s in dead), default=None),
        "gap_ms_other": max((gaps[s.sport] for s in other), default=None),
        "survived_other": _fraction(other, end),
        "survived_dead": _fraction(dead, end),
    }


__all__ = ["FAILOVER_PORT", "measure"]
