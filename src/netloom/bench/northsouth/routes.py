"""Learned routes at scale: the upstream announces ``count`` more prefixes to every gateway
(static routes added to its bird.conf, ``birdc configure``), then withdraws them; how long
until they are in the NSDB and in every gateway agent's simulation, and gone again.

Signals, both read, never inferred:

* the NSDB: the API's list of routes ``learned_from`` each uplink's peer (their count);
* an agent's simulation: ``netloom_agent_learned_routes``, the learned routes held in the
  agent's topology view, which is what its simulation routes by (every gateway loads its
  provider router's routes, so each holds the routes learned on every uplink).

A figure is the time from ``birdc configure`` returning until the last of those counts is
right, observed by polling: one peer's list per round, round robin over the peers not done
yet, and every agent's gauge once the NSDB is complete (a round is ``POLL_S`` plus the time
its reads take, reported as ``poll_ms``); None when not reached within the timeout.
"""

from __future__ import annotations

import dataclasses
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from netloom.bench.northsouth.world import World
from netloom.errors import InvalidInput, LabError
from netloom.lab import outside, probes
from netloom.lab.addressing import BENCH_ANNOUNCED
from netloom.lab.plan import upstream_config
from netloom.lab.upstream import render_bird_conf

LEARNED_METRIC = "netloom_agent_learned_routes"
POLL_S = 0.02


def prefixes(count: int) -> tuple[str, ...]:
    """The first ``count`` host routes of :data:`BENCH_ANNOUNCED`."""
    if not 0 < count <= BENCH_ANNOUNCED.num_addresses:
        raise InvalidInput(
            f"--routes must be 1..{BENCH_ANNOUNCED.num_addresses}, not {count}", field="routes"
        )
    base = BENCH_ANNOUNCED.network_address
    return tuple(f"{base + i}/32" for i in range(count))


class Counts:
    """The two signals of the module docstring, read now."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.api = world.lab.api()

    def nsdb(self, peer_id: str) -> tuple[int, int]:
        """Routes learned from ``peer_id`` in the NSDB: (in the announced block, all)."""
        got = self.api.list("routes", {"learned_from": peer_id})
        block = sum(1 for r in got if IPv4Network(r["dst"]).subnet_of(BENCH_ANNOUNCED))
        return block, len(got)

    def agent(self, netns: str) -> int:
        text = self.world.metrics(netns)
        return int(probes.metric_totals(text, {"n": LEARNED_METRIC})["n"])


def _announce(world: World, extra: tuple[str, ...]) -> None:
    """The upstream's bird.conf with ``extra`` announced too; ``birdc configure``."""
    s = world.lab.state
    rec = outside.require(s.outside, s.name)
    cfg = upstream_config(rec, s.uplinks)
    Path(rec.bird_conf).write_text(
        render_bird_conf(dataclasses.replace(cfg, announce=cfg.announce + extra))
    )
    out = outside.birdc(rec, "configure")
    if "Reconfigured" not in out:
        raise LabError(f"the upstream's bird did not take the new config: {out.strip()}")


class _Watch:
    """One wait (see :func:`_wait`): what is done, and when."""

    def __init__(self, counts: Counts, peers: list[str], ns: list[str], block: int) -> None:
        self.counts, self.peers, self.ns, self.block = counts, peers, ns, block
        self.since = time.monotonic()
        self.nsdb_done: dict[str, float] = {}
        self.agent_done: dict[str, float] = {}
        self.totals = dict.fromkeys(peers, -1)  # each peer's learned routes, last read
        self.in_block = dict.fromkeys(peers, -1)  # and those of the announced block
        self.polls = 0

    @property
    def done(self) -> bool:
        return len(self.nsdb_done) == len(self.peers) and len(self.agent_done) == len(self.ns)

    def poll(self) -> None:
        """One peer's list (round robin over those not done: a list of a thousand routes is
        a load on the cluster being measured), then, once the NSDB is complete, the agents."""
        todo = [p for p in self.peers if p not in self.nsdb_done]
        if todo:
            p = todo[self.polls % len(todo)]
            in_block, self.totals[p] = self.counts.nsdb(p)
            self.in_block[p] = in_block
            if in_block == self.block:
                self.nsdb_done[p] = time.monotonic() - self.since
        elif self.polls:
            want = sum(self.totals.values())
            for n in self.ns:
                if n not in self.agent_done and self.counts.agent(n) == want:
                    self.agent_done[n] = time.monotonic() - self.since
        self.polls += 1


def _wait(counts: Counts, peers: list[str], ns: list[str], block: int, timeout: float) -> Any:
    """Poll from now until every peer's NSDB count in the announced block is ``block`` and
    every agent in ``ns`` holds as many learned routes as the NSDB (all peers, all prefixes)."""
    w = _Watch(counts, peers, ns, block)
    while not w.done and time.monotonic() - w.since < timeout:
        w.poll()
        time.sleep(POLL_S)
    elapsed = time.monotonic() - w.since
    nsdb = _last(w.nsdb_done, len(peers))
    agent = _last(w.agent_done, len(ns))
    return {
        "ms": None if nsdb is None or agent is None else max(nsdb, agent),
        "nsdb_ms": nsdb,
        "agents_ms": agent,
        "per_agent_ms": {n: round(t * 1000, 1) for n, t in w.agent_done.items()},
        "per_peer_ms": {p: round(t * 1000, 1) for p, t in w.nsdb_done.items()},
        "last_read": w.in_block,  # per peer: routes of the block in the NSDB when last read
        "poll_ms": round(elapsed * 1000 / max(w.polls, 1), 1),
    }


def _last(done: dict[str, float], n: int) -> float | None:
    return round(max(done.values()) * 1000, 1) if len(done) == n and done else None


def measure(world: World, count: int, timeout: float) -> dict[str, Any]:
    """Announce ``count`` prefixes, wait; withdraw them, wait (see the module docstring)."""
    extra = prefixes(count)
    counts = Counts(world)
    peers = [g.peer_id for g in world.alive]
    gw_ns = [g.netns for g in world.alive]
    before = {p: counts.nsdb(p)[1] for p in peers}
    try:
        _announce(world, extra)
        announce = _wait(counts, peers, gw_ns, count, timeout)
        _announce(world, ())
        withdraw = _wait(counts, peers, gw_ns, 0, timeout)
    finally:
        _announce(world, ())
    return {
        "prefixes": count,
        "gateways": [f"gw{g.index}" for g in world.alive],
        "routes_before": before,
        "announce": announce,
        "withdraw": withdraw,
        "announce_ms": announce["ms"],
        "withdraw_ms": withdraw["ms"],
    }


__all__ = ["LEARNED_METRIC", "measure", "prefixes"]
