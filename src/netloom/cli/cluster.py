"""``netloom cluster``: parse the options, then run the control plane
(:func:`netloom.cluster.run.run_cluster`) on the store they name.

Logs are logfmt lines on stderr (``ts=... level=info event=api.listening addr=...``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from netloom.cluster.config import (
    AUTH_MODES,
    DEFAULT_API_ADDR,
    DEFAULT_STATE_DIR,
    DEFAULT_TOPOLOGY_ADDR,
    ClusterOptions,
    default_store,
    flow_history_path,
    keystone_authtoken,
    listen,
    open_store_checked,
    parse_addr,
)
from netloom.cluster.logs import LOG_LEVELS, setup_logging
from netloom.deploy.config import ConfigTable, load_table, signature_options
from netloom.errors import ConfigError, InvalidInput, NetloomError, print_error
from netloom.insights.queries import DEFAULT_MAX_AGE_S, DEFAULT_MAX_FLOWS

log = logging.getLogger("netloom.cluster")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="a TOML file whose [cluster] table gives options (keys: the flags without --);"
        " a flag on the command line wins",
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="sqlite:PATH | zookeeper:HOST:PORT[,...]\\[/chroot] | memory:"
        " (default: sqlite in --state-dir)",
    ),
]
ApiOpt = Annotated[
    str, typer.Option("--api", help="REST API listen address HOST:PORT (0: any free port)")
]
TopologyOpt = Annotated[
    str, typer.Option("--topology", help="topology service listen address HOST:PORT")
]
HostTimeoutOpt = Annotated[
    float, typer.Option("--host-timeout", help="seconds without heartbeat before a host is down")
]
StateDirOpt = Annotated[
    Path,
    typer.Option(
        "--state-dir", help="where the default SQLite store lives (env NETLOOM_STATE_DIR)"
    ),
]
NeutronOpt = Annotated[
    str | None,
    typer.Option(
        "--neutron",
        help="also serve the Neutron v2.0 API on HOST:PORT (Neutron's port is 9696)",
    ),
]
AuthOpt = Annotated[
    str,
    typer.Option(
        "--auth",
        help="noauth (every caller is an admin) | keystone (tokens checked by Keystone)",
    ),
]
KeystoneOpt = Annotated[
    Path | None,
    typer.Option(
        "--keystone-config",
        help="an INI file whose [keystone_authtoken] section configures keystonemiddleware"
        " (as in neutron.conf), with --auth keystone",
    ),
]
FlowHistoryOpt = Annotated[
    str | None,
    typer.Option(
        "--flow-history",
        help="the flow history's DuckDB file, or memory: (default: beside the NSDB:"
        " flows.duckdb in --state-dir or next to a sqlite store's file)",
    ),
]
FlowMaxAgeOpt = Annotated[
    float,
    typer.Option("--flow-max-age", help="seconds a flow is kept after it was last seen"),
]
FlowMaxCountOpt = Annotated[
    int, typer.Option("--flow-max-count", help="flows kept at most (the oldest go first)")
]
IpfixOpt = Annotated[
    str | None,
    typer.Option("--ipfix", help="export flow records as IPFIX (UDP) to this collector HOST:PORT"),
]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug|info|warning|error")]
AccessLogOpt = Annotated[bool, typer.Option("--access-log", help="log every HTTP request")]


def _run(
    store_url: str,
    api_addr: tuple[str, int],
    options: ClusterOptions,
    neutron_addr: tuple[str, int] | None,
) -> None:
    """Bind the APIs first (a busy port fails before the store is touched), open the store,
    run; close them all whatever happens."""
    from netloom.cluster.run import run_cluster  # the server stack loads only to run a cluster

    with contextlib.ExitStack() as stack:
        api_sock = stack.enter_context(listen(*api_addr, "api"))
        neutron_sock = None
        if neutron_addr is not None:
            neutron_sock = stack.enter_context(listen(*neutron_addr, "neutron"))
        nsdb = open_store_checked(store_url)
        try:
            run_cluster(nsdb, store_url, api_sock, options, neutron_sock)
        finally:
            nsdb.close()


def _flow_history(option: str | None, store: str | None, state_dir: Path) -> str:
    if option is None:
        return flow_history_path(store, state_dir)
    return ":memory:" if option == "memory:" else option


def cluster(
    ctx: typer.Context,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    api: ApiOpt = DEFAULT_API_ADDR,
    topology: TopologyOpt = DEFAULT_TOPOLOGY_ADDR,
    host_timeout: HostTimeoutOpt = 5.0,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    log_level: LogLevelOpt = "info",
    access_log: AccessLogOpt = False,
    neutron: NeutronOpt = None,
    auth: AuthOpt = "noauth",
    keystone_config: KeystoneOpt = None,
    flow_history: FlowHistoryOpt = None,
    ipfix: IpfixOpt = None,
    flow_max_age: FlowMaxAgeOpt = DEFAULT_MAX_AGE_S,
    flow_max_count: FlowMaxCountOpt = DEFAULT_MAX_FLOWS,
) -> None:
    """Run the control plane: REST API + topology service on one NSDB, in one process."""
    args = {k: v for k, v in ctx.params.items() if k != "config"}
    table: ConfigTable | None = None
    try:
        if config is not None:
            table = load_table(config, "cluster", signature_options(cluster, ("ctx", "config")))
            args |= {k: v for k, v in table.values.items() if not _on_command_line(ctx, k)}
        start = _checked(**args)
    except InvalidInput as exc:
        located = table.locate(exc, args) if table is not None else exc
        print_error(located)
        raise typer.Exit(2 if isinstance(located, ConfigError) else 1) from None
    try:
        _run(*start)
    except NetloomError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    except SystemExit as exc:  # uvicorn's lifespan startup failure
        sys.stderr.write("error: startup_failed: the API application failed to start\n")
        raise typer.Exit(1) from exc
    log.info("cluster stopped", extra={"event": "cluster.stopped"})


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _checked(
    store: str | None,
    api: str,
    topology: str,
    host_timeout: float,
    state_dir: Path,
    log_level: str,
    access_log: bool,
    neutron: str | None,
    auth: str,
    keystone_config: Path | None,
    flow_history: str | None,
    ipfix: str | None,
    flow_max_age: float,
    flow_max_count: int,
) -> tuple[str, tuple[str, int], ClusterOptions, tuple[str, int] | None]:
    """The options checked (InvalidInput naming the field otherwise), logging set up:
    what :func:`_run` takes."""
    if log_level.lower() not in LOG_LEVELS:
        raise InvalidInput(f"unknown log level {log_level!r}", field="log_level")
    if host_timeout <= 0:
        raise InvalidInput("--host-timeout must be > 0", field="host_timeout")
    if flow_max_age <= 0 or flow_max_count < 1:
        raise InvalidInput("--flow-max-age and --flow-max-count must be > 0", field="flows")
    api_addr = parse_addr(api, "api")
    neutron_addr = parse_addr(neutron, "neutron") if neutron is not None else None
    if auth not in AUTH_MODES:
        raise InvalidInput(f"--auth must be noauth or keystone, not {auth!r}", field="auth")
    if (auth == "keystone") != (keystone_config is not None):
        raise InvalidInput(
            "--auth keystone and --keystone-config go together", field="keystone_config"
        )
    options = ClusterOptions(
        parse_addr(topology, "topology"),
        host_timeout,
        access_log,
        auth=auth,
        keystone=keystone_authtoken(keystone_config) if keystone_config else None,
        state_dir=state_dir,
        flow_history=_flow_history(flow_history, store, state_dir),
        ipfix=parse_addr(ipfix, "ipfix") if ipfix is not None else None,
        flow_max_age=flow_max_age,
        flow_max_count=flow_max_count,
    )
    store_url = store or default_store(state_dir)
    setup_logging(log_level)
    return store_url, api_addr, options, neutron_addr


def register(app: typer.Typer, bench: typer.Typer) -> None:
    del bench
    app.command("cluster")(cluster)


__all__ = ["cluster", "register"]
