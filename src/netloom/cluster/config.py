"""What a cluster runs with: its options, the NSDB it opens and the API socket it listens on.

This module stays light (no server stack), so the ``netloom`` command starts fast; the server
is :mod:`netloom.cluster.run`.

Why the API socket is bound by the caller instead of by uvicorn: a busy port must be a one-line
error and a non-zero exit *before* anything starts (uvicorn would log and ``sys.exit``), and
``--api HOST:0`` then reports the port the kernel chose.
"""

from __future__ import annotations

import configparser
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from netloom.errors import InvalidInput, NetloomError, StoreError
from netloom.insights.queries import DEFAULT_MAX_AGE_S, DEFAULT_MAX_FLOWS
from netloom.store import Store, open_store

DEFAULT_STATE_DIR = Path(os.environ.get("NETLOOM_STATE_DIR", "/var/lib/netloom"))
STORE_FILE = "nsdb.sqlite"
FLOWS_FILE = "flows.duckdb"
DEFAULT_API_ADDR = "127.0.0.1:8181"
DEFAULT_TOPOLOGY_ADDR = "127.0.0.1:8182"
NEUTRON_PORT = 9696  # Neutron's own port
AUTH_MODES = ("noauth", "keystone")


@dataclass(frozen=True)
class ClusterOptions:
    """How the cluster serves, besides its store and API socket."""

    topology: tuple[str, int]  # where the topology service listens; port 0: any free port
    host_timeout: float = 5.0  # seconds without heartbeat before a host is down
    access_log: bool = False  # log every HTTP request
    auth: str = "noauth"  # noauth | keystone (tokens validated by keystonemiddleware)
    # keystonemiddleware's options (--auth keystone): the [keystone_authtoken] section
    keystone: dict[str, str] | None = None
    # the simulation log's SQLite file lives here; None: in memory (the flow history: below)
    state_dir: Path | None = None
    # the flow history's DuckDB file (FLOWS_FILE in the state dir); ":memory:" keeps it in memory
    flow_history: str = ":memory:"
    flow_max_age: float = DEFAULT_MAX_AGE_S
    flow_max_count: int = DEFAULT_MAX_FLOWS
    ipfix: tuple[str, int] | None = None  # the IPFIX collector flow records are exported to


# ---------------------------------------------------------------------------------------------
# Inputs.


def parse_addr(value: str, field: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 lets the kernel choose."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInput(f"{value!r} is not HOST:PORT", field=field)
    return host, int(port)


def keystone_authtoken(path: Path) -> dict[str, str]:
    """The ``[keystone_authtoken]`` section of an INI file (Neutron's neutron.conf has one):
    keystonemiddleware's options."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        read = parser.read(path)
    except configparser.Error as exc:
        raise InvalidInput(f"{path}: {exc}", field="keystone_config") from None
    if not read:
        raise InvalidInput(f"cannot read {path}", field="keystone_config")
    if not parser.has_section("keystone_authtoken"):
        raise InvalidInput(f"{path} has no [keystone_authtoken] section", field="keystone_config")
    return dict(parser.items("keystone_authtoken"))


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


def flow_history_path(store_url: str | None, state_dir: Path) -> str:
    """Where the flow history lives: beside the NSDB. In the state dir for the default store
    and ZooKeeper, next to the file of a ``sqlite:PATH`` store, in memory with ``memory:``."""
    if store_url is None or store_url.startswith("zookeeper:"):
        default_store(state_dir)  # creates the state dir
        return str(state_dir / FLOWS_FILE)
    if store_url.startswith("sqlite:"):
        return str(Path(store_url.removeprefix("sqlite:")).parent / FLOWS_FILE)
    return ":memory:"


def open_store_checked(url: str) -> Store:
    """Open the NSDB or raise a NetloomError that names the store. An import error is a broken
    installation, not a store failure: it propagates with its traceback."""
    # kazoo logs every failed connection attempt while it retries; the one error line below
    # says it all. Once open, its warnings (session lost...) matter and are kept.
    kazoo_log = logging.getLogger("kazoo")
    kazoo_log.setLevel(logging.ERROR)
    try:
        return open_store(url)
    except (NetloomError, ImportError):
        raise
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


__all__ = [
    "AUTH_MODES",
    "DEFAULT_API_ADDR",
    "DEFAULT_STATE_DIR",
    "DEFAULT_TOPOLOGY_ADDR",
    "FLOWS_FILE",
    "NEUTRON_PORT",
    "STORE_FILE",
    "ClusterOptions",
    "default_store",
    "flow_history_path",
    "keystone_authtoken",
    "listen",
    "open_store_checked",
    "parse_addr",
]
