"""``netloom bench fanout``: change-to-agent latency of the topology service at scale.

One :class:`~netloom.topology.server.TopologyServer` runs in this process on 127.0.0.1; the
agents are REAL :class:`~netloom.topology.client.TopologyClient` TCP connections, all in a
second process (``multiprocessing``, spawn) so that ``cluster_rss_mb`` is the server alone.
Every agent subscribes to the same object; then N changes are committed to it through the
store, each stamped with the wall-clock time just before its commit, and every agent's
listener records ``now - stamp``. Wall clock because the stamp crosses a process boundary
(both processes read the same system clock).

``store_watches`` is counted for real by wrapping the store's ``watch`` method: it must be 1
whatever the number of agents (the point of the fan-out design).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import multiprocessing
import resource
import statistics
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import psutil
import typer

from netloom.bench.report import print_figures
from netloom.bench.stats import percentile, rounded
from netloom.errors import InvalidInput, NetloomError
from netloom.store import open_store
from netloom.store.base import Change, ChangeCallback, Item, Op, Put, Store, Watch
from netloom.topology.client import TopologyClient
from netloom.topology.server import TopologyServer

KIND = "router"
OBJECT_ID = "bench-fanout"
READY_TIMEOUT_S = 120.0


class CountingStore:
    """Delegates to a real store and counts the watches opened on it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.watches = 0

    def get(self, kind: str, id: str) -> Item | None:
        return self.inner.get(kind, id)

    def list(self, kind: str) -> builtins.list[Item]:
        return self.inner.list(kind)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        return self.inner.get_many(keys)

    def commit(self, ops: Sequence[Op]) -> int:
        return self.inner.commit(ops)

    def revision(self) -> int:
        return self.inner.revision()

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        return self.inner.changes(since, limit)

    def watch(self, since: int, callback: ChangeCallback) -> Watch:
        self.watches += 1
        return self.inner.watch(since, callback)

    def close(self) -> None:
        self.inner.close()


def raise_fd_limit(needed: int) -> None:
    """Each agent costs a socket on both ends: lift the soft fd limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        raise InvalidInput(
            f"{needed} agents need {want} file descriptors; the hard limit is "
            f"{hard} (raise it with ulimit -Hn)",
            field="agents",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _rss_mb() -> float:
    return round(float(psutil.Process().memory_info().rss) / 2**20, 1)


# -- agent process -----------------------------------------------------------------------------


def _agents_main(port: int, agents: int, changes: int, pipe: Connection) -> None:
    """Entry point of the agent process: connect, report ready, record latencies."""
    raise_fd_limit(agents)
    asyncio.run(_agents(port, agents, changes, pipe))


async def _agents(port: int, agents: int, changes: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done = asyncio.Event()
    expected = agents * changes

    def on_change(kind: str, id: str, data: dict[str, Any] | None, rev: int) -> None:
        if data is None or data.get("seq", -1) < 0:
            return
        latencies.append((time.time_ns() - data["t_ns"]) / 1e6)
        if len(latencies) >= expected:
            done.set()

    started = time.monotonic()
    clients = [TopologyClient(f"bench-host-{i}", ("127.0.0.1", port)) for i in range(agents)]
    for c in clients:
        await c.start()
    await asyncio.gather(*(c.get(KIND, OBJECT_ID) for c in clients))
    for c in clients:
        c.add_listener(on_change)
    connect_s = time.monotonic() - started
    pipe.send({"ready": True, "connect_s": connect_s, "rss_mb": _rss_mb()})
    # the parent commits now; wait for every delivery or its word that it gave up
    wait_pipe: asyncio.Future[Any] = loop.run_in_executor(None, pipe.poll, READY_TIMEOUT_S)
    waiter: asyncio.Future[Any] = asyncio.ensure_future(done.wait())
    await asyncio.wait([waiter, wait_pipe], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    pipe.send(
        {
            "latencies_ms": latencies,
            "rss_mb": _rss_mb(),
            "reconnects": sum(c.connects - 1 for c in clients),
        }
    )
    for c in clients:
        await c.stop()


# -- cluster side ------------------------------------------------------------------------------


async def _drive(
    store: CountingStore, agents: int, changes: int, interval_s: float, timeout_s: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = TopologyServer(store)
    port = await server.start("127.0.0.1", 0)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_agents_main, args=(port, agents, changes, child), daemon=True)
    proc.start()
    try:
        ready = await _recv(loop, parent, READY_TIMEOUT_S, proc)
        cluster_rss = _rss_mb()
        first_commit = time.monotonic()
        for seq in range(changes):
            doc = {"id": OBJECT_ID, "seq": seq, "t_ns": time.time_ns()}
            await loop.run_in_executor(None, store.commit, [Put(KIND, OBJECT_ID, doc)])
            await asyncio.sleep(interval_s)
        # not waiting = telling the agents to report what they have after timeout_s
        deadline = max(0.0, timeout_s - (time.monotonic() - first_commit))
        done = await loop.run_in_executor(None, parent.poll, deadline)
        if not done:
            parent.send("stop")
        result = await _recv(loop, parent, 30.0, proc)
        parent.send("bye")  # ends the child's wait on the pipe in either case
        cluster_rss = max(cluster_rss, _rss_mb())
    finally:
        await server.stop()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()  # our own child
    lat = sorted(result["latencies_ms"])
    return {
        "agents": agents,
        "changes": changes,
        "store_watches": store.watches,
        "delivered": len(lat),
        "expected": agents * changes,
        "p50_ms": rounded(percentile(lat, 0.50), 2),
        "p90_ms": rounded(percentile(lat, 0.90), 2),
        "p99_ms": rounded(percentile(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
        "connect_s": round(ready["connect_s"], 2),
        "cluster_rss_mb": cluster_rss,
        "agents_rss_mb": result["rss_mb"],
        "agents_process": "separate (cluster_rss_mb is the topology server alone)",
        "reconnects": result["reconnects"],
        "frames_sent": server.stats.frames_sent,
        "interval_ms": round(interval_s * 1000, 1),
    }


async def _recv(
    loop: asyncio.AbstractEventLoop,
    pipe: Connection,
    timeout: float,
    proc: multiprocessing.process.BaseProcess,
) -> dict[str, Any]:
    ok = await loop.run_in_executor(None, pipe.poll, timeout)
    if not ok:
        raise NetloomError(
            f"agent process silent for {timeout:.0f}s "
            f"(alive: {proc.is_alive()}, exit: {proc.exitcode})"
        )
    msg: dict[str, Any] = pipe.recv()
    return msg


def run_fanout(
    agents: int = 1000,
    changes: int = 50,
    store_url: str = "memory:",
    interval_ms: float = 20.0,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring)."""
    if agents < 1 or changes < 1:
        raise InvalidInput("agents and changes must be >= 1", field="agents")
    if interval_ms < 0:
        raise InvalidInput("interval must be >= 0", field="interval_ms")
    raise_fd_limit(agents)
    store = CountingStore(open_store(store_url))
    try:
        store.commit([Put(KIND, OBJECT_ID, {"id": OBJECT_ID, "seq": -1, "t_ns": 0})])
        out = asyncio.run(_drive(store, agents, changes, interval_ms / 1000, timeout_s))
    finally:
        with contextlib.suppress(Exception):
            store.close()
    out["store"] = store_url
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("fanout")
    def fanout(
        agents: int = typer.Option(1000, help="TopologyClient connections (real TCP)"),
        changes: int = typer.Option(50, help="commits to the watched object"),
        store: str = typer.Option("memory", help="memory | sqlite:PATH"),
        interval_ms: float = typer.Option(20.0, help="pause between commits"),
        timeout_s: float = typer.Option(60.0, help="give up waiting for deliveries after"),
        as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    ) -> None:
        """Latency from a store commit to 1000 agents' listeners, through ONE store watch."""
        url = "memory:" if store == "memory" else store
        try:
            result = run_fanout(agents, changes, url, interval_ms, timeout_s)
        except NetloomError as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(result))
        else:
            print_figures(
                "topology fan-out: commit -> agent listener", list(result.items()), header=True
            )
        if result["delivered"] < result["expected"] or result["store_watches"] != 1:
            raise typer.Exit(1)


__all__ = ["CountingStore", "raise_fd_limit", "register", "run_fanout"]
