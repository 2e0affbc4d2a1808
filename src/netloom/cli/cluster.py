"""``netloom cluster``: the control plane in ONE process.

One asyncio loop runs both the REST API (uvicorn serving the FastAPI app of
:mod:`netloom.api.app`) and the topology service (:class:`netloom.topology.server.TopologyServer`)
on one NSDB. One process because both need the same store and the topology server already holds
the single store watch; a second process would only add a second watch and a second failure.

Why we bind the API socket ourselves instead of letting uvicorn do it: a busy port must be a
one-line error and a non-zero exit *before* anything starts (uvicorn would log and
``sys.exit``), and ``--api HOST:0`` then reports the port the kernel chose.

Why we handle SIGTERM/SIGINT ourselves: uvicorn's own handlers re-raise the signal after its
shutdown, which would kill the process before the topology server and the store are closed.

Logs are logfmt lines on stderr (``ts=... level=info event=api.listening addr=...``): one event
per line, machine-parsable, still readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from netloom.errors import InvalidInput, NetloomError, NotFound, StoreError

log = logging.getLogger("netloom.cluster")

DEFAULT_STATE_DIR = Path(os.environ.get("NETLOOM_STATE_DIR", "/var/lib/netloom"))
STORE_FILE = "nsdb.sqlite"


# ---------------------------------------------------------------------------------------------
# Structured logging.

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=<RFC 3339 UTC> level=<lvl> logger=<name> msg=<text> key=value...``; the keys are the
    ``extra=`` fields of the call."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in record.__dict__.items() if k not in _RESERVED]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


# ---------------------------------------------------------------------------------------------
# Inputs.


def parse_addr(value: str, field: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 lets the kernel choose."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInput(f"{value!r} is not HOST:PORT", field=field)
    return host, int(port)


def default_store(state_dir: Path) -> str:
    """``sqlite:<state-dir>/nsdb.sqlite``, creating the state directory (private: it holds the
    whole topology)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create state dir {state_dir}: {exc.strerror}", field="state_dir"
        ) from None
    return f"sqlite:{state_dir / STORE_FILE}"


def open_store_checked(url: str) -> Any:
    """Open the NSDB or raise a NetloomError that names the store."""
    from netloom.store import open_store

    # kazoo logs every failed connection attempt while it retries; the one error line below
    # says it all. Once open, its warnings (session lost...) matter and are kept.
    kazoo_log = logging.getLogger("kazoo")
    kazoo_log.setLevel(logging.ERROR)
    try:
        return open_store(url)
    except NetloomError:
        raise
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"store backend for {url!r} is not available ({exc.name})", field="store"
        ) from None
    except Exception as exc:  # a backend failing to open: sqlite3.Error, kazoo timeouts, OSError
        raise StoreError(f"cannot open store {url!r}: {exc}", field="store") from None
    finally:
        kazoo_log.setLevel(logging.WARNING)


def listen(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket, or a one-line reason why not (busy port, bad address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InvalidInput(
            f"cannot listen on {what} {host}:{port}: {exc.strerror or exc}", field=what
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {what} {host}:{port}: {exc.strerror or exc}", field=what
        ) from None
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------------------------------------
# The process.


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: the cluster owns SIGTERM/SIGINT (see module doc)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_cluster(
    store: Any,
    store_url: str,
    api_sock: socket.socket,
    topology_addr: tuple[str, int],
    host_timeout: float,
    access_log: bool,
) -> None:
    """Serve until SIGTERM/SIGINT, then stop the API, the topology server and the store."""
    from netloom.api.app import create_app
    from netloom.api.service import ObjectService
    from netloom.topology.server import TopologyServer

    service = ObjectService(store)

    def set_host_alive(host_id: str, alive: bool) -> None:
        """Liveness goes through the service (its one writer of ``host.alive``); a heartbeat
        from a host nobody created is logged, not an error."""
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

    topo = TopologyServer(store, host_timeout_s=host_timeout, set_host_alive=set_host_alive)
    try:
        topo_port = await topo.start(*topology_addr)
    except OSError as exc:
        await topo.stop()
        host, port = topology_addr
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise InvalidInput(
            f"cannot listen on topology {host}:{port}: {reason}", field="topology"
        ) from None
    config = uvicorn.Config(
        create_app(service),
        log_config=None,
        access_log=access_log,
        lifespan="on",
        proxy_headers=False,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("shutting down", extra={"event": "cluster.signal", "signal": sig.name})
        if server.should_exit:
            server.force_exit = True  # second signal: do not wait for open connections
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    api_host, api_port = api_sock.getsockname()[:2]
    log.info("api listening", extra={"event": "api.listening", "addr": f"{api_host}:{api_port}"})
    log.info(
        "topology listening",
        extra={"event": "topology.listening", "addr": f"{topology_addr[0]}:{topo_port}"},
    )
    serving = asyncio.create_task(server.serve(sockets=[api_sock]))
    try:
        # "ready" only once the application's startup has run: clients may rely on it
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            log.info(
                "cluster ready",
                extra={
                    "event": "cluster.ready",
                    "store": store_url,
                    "api_port": api_port,
                    "topology_port": topo_port,
                    "pid": os.getpid(),
                },
            )
        await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await topo.stop()
        log.info("topology stopped", extra={"event": "topology.stopped"})


def cluster(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="sqlite:PATH | zookeeper:HOST:PORT[,...][/chroot] | memory:"
            " (default: sqlite in --state-dir)",
        ),
    ] = None,
    api: Annotated[
        str, typer.Option("--api", help="REST API listen address HOST:PORT (0: any free port)")
    ] = "127.0.0.1:8181",
    topology: Annotated[
        str, typer.Option("--topology", help="topology service listen address HOST:PORT")
    ] = "127.0.0.1:8182",
    host_timeout: Annotated[
        float,
        typer.Option("--host-timeout", help="seconds without heartbeat before a host is down"),
    ] = 5.0,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir", help="where the default SQLite store lives (env NETLOOM_STATE_DIR)"
        ),
    ] = DEFAULT_STATE_DIR,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug|info|warning|error")
    ] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log", help="log every HTTP request")
    ] = False,
) -> None:
    """Run the control plane: REST API + topology service on one NSDB, in one process."""
    try:
        if log_level.lower() not in ("debug", "info", "warning", "error"):
            raise InvalidInput(f"unknown log level {log_level!r}", field="log_level")
        if host_timeout <= 0:
            raise InvalidInput("--host-timeout must be > 0", field="host_timeout")
        setup_logging(log_level)
        api_addr = parse_addr(api, "api")
        topo_addr = parse_addr(topology, "topology")
        store_url = store or default_store(state_dir)
        api_sock = listen(*api_addr, "api")
        try:
            nsdb = open_store_checked(store_url)
            try:
                asyncio.run(
                    run_cluster(nsdb, store_url, api_sock, topo_addr, host_timeout, access_log)
                )
            finally:
                nsdb.close()
        finally:
            api_sock.close()
    except NetloomError as exc:
        from netloom.errors import print_error

        print_error(exc)
        raise typer.Exit(1) from None
    except SystemExit as exc:  # uvicorn's lifespan startup failure
        sys.stderr.write("error: startup_failed: the API application failed to start\n")
        raise typer.Exit(1) from exc
    log.info("cluster stopped", extra={"event": "cluster.stopped"})


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.command("cluster")(cluster)


__all__ = ["LogfmtFormatter", "cluster", "parse_addr", "register", "run_cluster"]
