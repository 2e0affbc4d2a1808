"""The agent's command line as a typed object: :class:`AgentOptions` is what ``netloom agent``
and ``python -m netloom.agent`` parse into (one parser, :func:`parse_argv`) and what the lab
turns back into a command line (:meth:`AgentOptions.to_argv`). Imports only the standard
library and the error tree, so the agent's own entry point stays fast to start."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from netloom.datapath.conntrack import ConntrackSettings
from netloom.datapath.sizing import DEFAULT_CONNTRACK, DEFAULT_FLOWS, check_entries
from netloom.deploy.config import ConfigTable, argparse_options, load_table
from netloom.errors import ConfigError, InvalidInput
from netloom.gateway.config import SIDECAR_NS_PREFIX

DEFAULT_METRICS_PORT = 9464  # Prometheus text on 127.0.0.1:9464 in the agent's network namespace
# An overlay MTU of at least 576 (the IPv4 minimum datagram every host accepts, RFC 791)
# plus the 50 bytes of VXLAN encapsulation (RFC 7348 section 5).
MIN_UNDERLAY_MTU = 626
PROG = "netloom agent"


class DatapathKind(StrEnum):
    memory = "memory"
    bpf = "bpf"


class VxlanEncap(StrEnum):
    bpf = "bpf"
    device = "device"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass(frozen=True)
class AgentOptions:
    """Everything ``netloom agent`` accepts; exactly one of ``host_id`` and ``host_name``."""

    topology: str  # the topology service, HOST:PORT
    host_id: str | None = None
    host_name: str | None = None
    datapath: DatapathKind = DatapathKind.memory
    underlay_ip: str | None = None
    metrics_port: int | None = None
    idle_timeout: float = 60.0
    flow_table_size: int = DEFAULT_FLOWS
    mtu: int = 1500
    vxlan_encap: VxlanEncap = VxlanEncap.bpf
    log_format: LogFormat = LogFormat.text
    verbose: bool = False
    # stateful rules decided by the datapath's conntrack (no upcall per connection)
    kernel_conntrack: bool = True
    conntrack_size: int = DEFAULT_CONNTRACK
    conntrack_lifetimes: str = "21600:10:60"  # TCP established : TCP closing : other (s)
    sidecar_ns_prefix: str = SIDECAR_NS_PREFIX  # an uplink sidecar's namespace: this + the port id
    state_dir: str | None = None  # the simulation log's files (none: shipped to the cluster only)

    def conntrack(self) -> ConntrackSettings:
        """The datapath's conntrack settings; InvalidInput for bad values."""
        parts = self.conntrack_lifetimes.split(":")
        try:
            est, closing, other = (float(x) for x in parts)
        except ValueError:
            raise InvalidInput(
                "--conntrack-lifetimes must be ESTABLISHED:CLOSING:OTHER seconds",
                field="conntrack_lifetimes",
            ) from None
        return ConntrackSettings(est, closing, other, self.conntrack_size)

    def check(self) -> None:
        """Raise :class:`InvalidInput` for a combination the agent cannot run with."""
        if (self.host_id is None) == (self.host_name is None):
            raise InvalidInput("give exactly one of --host-id and --host-name", field="host_id")
        self.addresses()
        if not 0 < self.idle_timeout <= 86400:
            raise InvalidInput("--idle-timeout must be in (0, 86400] seconds", field="idle_timeout")
        check_entries("flow_table_size", self.flow_table_size)
        if not MIN_UNDERLAY_MTU <= self.mtu <= 65535:
            raise InvalidInput(f"--mtu must be in [{MIN_UNDERLAY_MTU}, 65535]", field="mtu")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise InvalidInput("--metrics-port must be in [1, 65535]", field="metrics_port")
        self.conntrack()
        if not self.sidecar_ns_prefix or "/" in self.sidecar_ns_prefix:
            raise InvalidInput(
                "--sidecar-ns-prefix must be a non-empty name without '/'",
                field="sidecar_ns_prefix",
            )

    def addresses(self) -> list[tuple[str, int]]:
        """``topology`` as (host, port) pairs: one, or a comma-separated list of cluster
        processes tried in turn."""
        out: list[tuple[str, int]] = []
        for one in self.topology.split(","):
            host, sep, port = one.strip().rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InvalidInput(
                    f"--topology must be HOST:PORT[,HOST:PORT...], got {self.topology!r}",
                    field="topology",
                )
            out.append((host, int(port)))
        return out

    def to_argv(self) -> list[str]:
        """The options as ``netloom agent`` arguments (defaults left out);
        ``parse_argv(o.to_argv()) == o``."""
        argv = ["--topology", self.topology]
        default = AgentOptions(topology=self.topology)
        for flag, value in (
            ("--host-id", self.host_id),
            ("--host-name", self.host_name),
            ("--datapath", self.datapath),
            ("--underlay-ip", self.underlay_ip),
            ("--metrics-port", self.metrics_port),
            ("--idle-timeout", self.idle_timeout),
            ("--flow-table-size", self.flow_table_size),
            ("--mtu", self.mtu),
            ("--vxlan-encap", self.vxlan_encap),
            ("--log-format", self.log_format),
            ("--conntrack-size", self.conntrack_size),
            ("--conntrack-lifetimes", self.conntrack_lifetimes),
            ("--sidecar-ns-prefix", self.sidecar_ns_prefix),
            ("--state-dir", self.state_dir),
        ):
            if value is not None and value != getattr(default, _dest(flag)):
                argv += [flag, str(value)]
        if self.verbose:
            argv.append("--verbose")
        if not self.kernel_conntrack:
            argv.append("--no-kernel-conntrack")
        return argv


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The one parser of the agent's options (``netloom agent`` hands its arguments here)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the host agent until SIGTERM: bindings, upcalls, flows, tunnels, metrics.",
    )
    p.add_argument("--host-id", help="This host's id.")
    p.add_argument("--host-name", help="Or its name (looked up).")
    p.add_argument(
        "--config",
        type=Path,
        help="A TOML file whose [agent] table gives options (keys: the flags without --); "
        "a flag on the command line wins.",
    )
    p.add_argument(
        "--topology",
        help="Topology service HOST:PORT, or a comma-separated list of them (required).",
    )
    p.add_argument("--datapath", type=DatapathKind, choices=list(DatapathKind), default="memory")
    p.add_argument("--underlay-ip", help="VXLAN source address (default: tunnel zone).")
    p.add_argument("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:N.")
    p.add_argument(
        "--idle-timeout", type=float, default=60.0, help="Seconds an unused flow stays installed."
    )
    p.add_argument(
        "--flow-table-size",
        type=int,
        default=DEFAULT_FLOWS,
        help="Flows the datapath holds; when full, the least recently used flow is evicted. "
        "A kernel table already pinned keeps its size until its pins are removed.",
    )
    p.add_argument(
        "--mtu",
        type=int,
        default=1500,
        help="Underlay MTU; the tunnel and VM ports get MTU - 50 (VXLAN over IPv4, RFC 7348).",
    )
    p.add_argument(
        "--vxlan-encap",
        type=VxlanEncap,
        choices=list(VxlanEncap),
        default="bpf",
        help="bpf: the datapath adds/removes VXLAN headers itself for unicast IPv4 (the VXLAN "
        "device carries the rest); device: the kernel's VXLAN device for all.",
    )
    p.add_argument("--log-format", type=LogFormat, choices=list(LogFormat), default="text")
    p.add_argument("--verbose", "-v", action="store_true")
    _conntrack_arguments(p)
    p.add_argument(
        "--sidecar-ns-prefix",
        default=SIDECAR_NS_PREFIX,
        help="Uplink sidecars' namespaces are this followed by the port id (a lab gives its "
        "host's name, so that it finds and removes exactly its own).",
    )
    p.add_argument(
        "--state-dir",
        help="Keep the simulation log here too (simlog.jsonl, rotated by size); it is shipped "
        "to the cluster either way.",
    )
    return p


def _conntrack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-kernel-conntrack",
        dest="kernel_conntrack",
        action="store_false",
        help="Stateful security groups tracked by the agent (an upcall and a flow-state push "
        "per connection) instead of the datapath's conntrack table.",
    )
    p.add_argument(
        "--conntrack-size",
        type=int,
        default=DEFAULT_CONNTRACK,
        help="Entries of the datapath's conntrack table (least recently used evicted when "
        "full); the kernel's table takes it when the datapath is first loaded.",
    )
    p.add_argument(
        "--conntrack-lifetimes",
        default="21600:10:60",
        help="Conntrack entry lifetimes in seconds, ESTABLISHED:CLOSING:OTHER (TCP established, "
        "TCP after FIN/RST, anything else).",
    )


def parse_argv(argv: Sequence[str], prog: str = PROG) -> AgentOptions:
    """Parse and check, the ``--config`` file's ``[agent]`` table giving the defaults; a bad
    command line exits 2 with argparse's usage message, a bad config file exits 2 with an
    error naming its file, line and key."""
    p = parser(prog)
    table = _config_table(p, argv)
    if table is not None:
        p.set_defaults(**table.values)
    ns = p.parse_args(list(argv))
    if ns.topology is None:
        p.error("the following arguments are required: --topology")
    options = AgentOptions(
        topology=ns.topology,
        host_id=ns.host_id,
        host_name=ns.host_name,
        datapath=DatapathKind(ns.datapath),
        underlay_ip=ns.underlay_ip,
        metrics_port=ns.metrics_port,
        idle_timeout=ns.idle_timeout,
        flow_table_size=ns.flow_table_size,
        mtu=ns.mtu,
        vxlan_encap=VxlanEncap(ns.vxlan_encap),
        log_format=LogFormat(ns.log_format),
        verbose=ns.verbose,
        kernel_conntrack=ns.kernel_conntrack,
        conntrack_size=ns.conntrack_size,
        conntrack_lifetimes=ns.conntrack_lifetimes,
        sidecar_ns_prefix=ns.sidecar_ns_prefix,
        state_dir=ns.state_dir,
    )
    try:
        options.check()
    except InvalidInput as exc:
        located = table.locate(exc, vars(ns)) if table is not None else exc
        if isinstance(located, ConfigError):
            p.exit(2, f"{p.prog}: error: {located.message}\n")
        p.error(exc.message)
    return options


def _config_table(p: argparse.ArgumentParser, argv: Sequence[str]) -> ConfigTable | None:
    """The ``[agent]`` table of the ``--config`` file, if one is given (exit 2 if unusable)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    path = pre.parse_known_args(list(argv))[0].config
    if path is None:
        return None
    try:
        return load_table(path, "agent", argparse_options(p, skip=("config",)))
    except ConfigError as exc:
        p.exit(2, f"{p.prog}: error: {exc.message}\n")


__all__ = [
    "DEFAULT_METRICS_PORT",
    "MIN_UNDERLAY_MTU",
    "AgentOptions",
    "DatapathKind",
    "LogFormat",
    "VxlanEncap",
    "parse_argv",
    "parser",
]
