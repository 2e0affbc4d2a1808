"""Running the control plane in ONE process.

One asyncio loop runs both the REST API (uvicorn serving the FastAPI app of
:mod:`netloom.api.app`) and the topology service (:class:`netloom.topology.server.TopologyServer`)
on one NSDB. One process because both need the same store and the topology server already holds
the single store watch; a second process would only add a second watch and a second failure.

:func:`run_cluster` takes an open store and a bound API socket (see :mod:`netloom.cluster.config`
for why the caller binds it); the caller owns both, so ``netloom cluster`` and a benchmark
wrapping the store run the same code.

Why SIGTERM/SIGINT are handled here: uvicorn's own handlers re-raise the signal after its
shutdown, which would kill the process before the topology server and the store are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from netloom.api.app import create_app
from netloom.api.keystone import KeystoneAuth
from netloom.api.neutron import app as neutron_app
from netloom.api.reports import ClusterReports
from netloom.api.service import ObjectService
from netloom.cluster import flows
from netloom.cluster.config import ClusterOptions
from netloom.cluster.metrics import ClusterMetrics, TimedStore
from netloom.deploy import sdnotify
from netloom.errors import InvalidInput, NotFound
from netloom.insights.simlog import FILE_NAME as SIMLOG_FILE
from netloom.insights.simlog import SimLogStore
from netloom.store import Store
from netloom.topology.server import TopologyServer

log = logging.getLogger("netloom.cluster")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# ---------------------------------------------------------------------------------------------
# The process.


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: the cluster owns SIGTERM/SIGINT (see module doc)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _liveness(service: ObjectService) -> Callable[[str, bool], None]:
    """Liveness goes through the service (its one writer of ``host.alive``); a heartbeat from a
    host nobody created is logged, not an error."""

    def set_host_alive(host_id: str, alive: bool) -> None:
        try:
            service.set_host_alive(host_id, alive)
        except NotFound:
            log.warning(
                "heartbeat from unknown host", extra={"event": "host.unknown", "host_id": host_id}
            )
            return
        log.info(
            "host liveness",
            extra={"event": "host.alive" if alive else "host.down", "host_id": host_id},
        )

    return set_host_alive


def _member_id(store_url: str) -> str | None:
    """On a ZooKeeper store several cluster processes serve together: each is a member (its
    hosts in ``_members/<id>``, see :mod:`netloom.topology.members`); on SQLite or memory one
    process serves, as before."""
    if not store_url.startswith("zookeeper:"):
        return None
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def _start_topology(topo: TopologyServer, addr: tuple[str, int]) -> int:
    """Start the topology service; a busy or bad address is a one-line error."""
    try:
        return await topo.start(*addr)
    except OSError as exc:
        await topo.stop()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise InvalidInput(
            f"cannot listen on topology {addr[0]}:{addr[1]}: {reason}", field="topology"
        ) from None


def _handle_signals(server: uvicorn.Server, neutron: uvicorn.Server | None) -> None:
    """The first SIGTERM/SIGINT stops gracefully; a second one stops without waiting for open
    connections."""

    def on_signal(sig: signal.Signals) -> None:
        log.info("shutting down", extra={"event": "cluster.signal", "signal": sig.name})
        for each in (server, neutron):
            if each is None:
                continue
            if each.should_exit:
                each.force_exit = True
            each.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)


async def _serve_api(
    server: uvicorn.Server, api_sock: socket.socket, ready: dict[str, object]
) -> None:
    """Serve until told to stop; log ``cluster.ready`` once the application's startup has run
    (clients may rely on it)."""
    serving = asyncio.create_task(server.serve(sockets=[api_sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    watchdog = None
    if server.started:
        log.info("cluster ready", extra={"event": "cluster.ready", **ready, "pid": os.getpid()})
        sdnotify.notify(sdnotify.READY)  # systemd (Type=notify): the APIs and topology serve
        watchdog = sdnotify.start_watchdog()
    try:
        await serving
    finally:
        await sdnotify.stop_watchdog(watchdog)


def _keystone(options: ClusterOptions) -> KeystoneAuth | None:
    if options.auth != "keystone" or options.keystone is None:
        return None
    return KeystoneAuth(options.keystone)


def _neutron_server(
    service: ObjectService,
    sock: socket.socket | None,
    options: ClusterOptions,
    auth: KeystoneAuth | None,
) -> uvicorn.Server | None:
    if sock is None:
        return None
    who = neutron_app.keystone(auth) if auth is not None else neutron_app.noauth
    config = uvicorn.Config(
        neutron_app.create_app(service, who),
        log_config=None,
        access_log=options.access_log,
        lifespan="off",
        proxy_headers=False,
    )
    host, port = sock.getsockname()[:2]
    log.info("neutron listening", extra={"event": "neutron.listening", "addr": f"{host}:{port}"})
    return _Server(config)


def _api_server(app: FastAPI, options: ClusterOptions, metrics: ClusterMetrics) -> uvicorn.Server:
    metrics.instrument(app)
    config = uvicorn.Config(
        app, log_config=None, access_log=options.access_log, lifespan="on", proxy_headers=False
    )
    return _Server(config)


async def serve(
    store: Store,
    store_url: str,
    api_sock: socket.socket,
    options: ClusterOptions,
    neutron_sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then stop the APIs and the topology server."""
    metrics = ClusterMetrics()
    service = ObjectService(TimedStore(store, metrics))
    sink = flows.FlowSink.open(options)
    simlog = SimLogStore(options.state_dir / SIMLOG_FILE if options.state_dir else None)
    topo = TopologyServer(
        store,
        host_timeout_s=options.host_timeout,
        set_host_alive=_liveness(service),
        reports=ClusterReports(service),
        insights=simlog,
        member_id=_member_id(store_url),
    )
    topo_port = await _start_topology(topo, options.topology)
    auth = _keystone(options)
    metrics.watch(topo, sink)
    guard = auth.require_admin if auth is not None else None
    app = create_app(service, guard=guard, history=sink.history, simlog=simlog)
    server = _api_server(app, options, metrics)
    neutron = _neutron_server(service, neutron_sock, options, auth)
    _handle_signals(server, neutron)
    api_host, api_port = api_sock.getsockname()[:2]
    log.info("api listening", extra={"event": "api.listening", "addr": f"{api_host}:{api_port}"})
    log.info(
        "topology listening",
        extra={"event": "topology.listening", "addr": f"{options.topology[0]}:{topo_port}"},
    )
    ready: dict[str, object] = {
        "store": store_url,
        "api_port": api_port,
        "topology_port": topo_port,
    }
    serving = None
    keeper = asyncio.create_task(flows.keep(sink))
    if neutron is not None and neutron_sock is not None:
        ready["neutron_port"] = neutron_sock.getsockname()[1]
        serving = asyncio.create_task(neutron.serve(sockets=[neutron_sock]))
        while not neutron.started and not serving.done():
            await asyncio.sleep(0.01)
    try:
        await _serve_api(server, api_sock, ready)
    finally:
        if neutron is not None and serving is not None:
            neutron.should_exit = True
            await serving
        loop = asyncio.get_running_loop()
        for sig in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(sig)
        await topo.stop()
        simlog.close()
        log.info("topology stopped", extra={"event": "topology.stopped"})
        keeper.cancel()
        await loop.run_in_executor(None, sink.close)


def run_cluster(
    store: Store,
    store_url: str,
    api_sock: socket.socket,
    options: ClusterOptions,
    neutron_sock: socket.socket | None = None,
) -> None:
    """Run the cluster on an open ``store`` (``store_url`` only names it in the logs) and a
    listening ``api_sock`` (:func:`listen`) until SIGTERM/SIGINT. The caller closes both.

    Raises :class:`~netloom.errors.InvalidInput` when the topology address cannot be bound;
    a failing application startup ends in uvicorn's ``SystemExit``. ``neutron_sock``: also
    serve the Neutron v2.0 API on it."""
    asyncio.run(serve(store, store_url, api_sock, options, neutron_sock))


__all__ = [
    "run_cluster",
    "serve",
]
