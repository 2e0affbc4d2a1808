"""The agent as a process: from :class:`AgentOptions` to a running :class:`AgentDriver`
(host lookup by name, datapath, logging), until SIGTERM. Heavy imports happen inside
:func:`run`, after the command line has been parsed."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netloom.agent.options import AgentOptions, DatapathKind, LogFormat, VxlanEncap, parse_argv
from netloom.errors import InvalidInput, NetloomError

if TYPE_CHECKING:
    from netloom.agent.core import Agent
    from netloom.agent.gateway import GatewayLink
    from netloom.datapath.base import Datapath
    from netloom.topology.client import TopologyClient


async def _resolve_host(address: list[tuple[str, int]], name: str) -> str:
    """The id of the host named ``name``, asked of the topology service (agents never read
    the store). The lookup connection carries a name-derived identity with no host record,
    which the service's liveness writer leaves alone."""
    from netloom.topology.client import TopologyClient

    async with TopologyClient(f"lookup:{name}", address) as probe:
        await probe.wait_connected(10.0)
        found = await probe.watch_field("host", "name", name)
    if not found:
        raise InvalidInput(f"no host named {name!r}: create it first", field="host_name")
    if len(found) > 1:
        raise InvalidInput(f"several hosts are named {name!r}: use --host-id", field="host_name")
    return next(iter(found))


def _datapath(options: AgentOptions, host_id: str) -> Datapath:
    """The datapath the options ask for, its tables sized by ``--flow-table-size`` and
    ``--conntrack-size``."""
    if options.datapath is DatapathKind.memory:
        from netloom.datapath.memory import MemoryDatapath

        return MemoryDatapath(max_flows=options.flow_table_size)
    try:
        from netloom.datapath.bpf import BpfDatapath
        from netloom.datapath.bpf.loader import CONNTRACK, FLOWS
    except ImportError as exc:  # the kernel datapath is optional at import time
        raise NetloomError(f"the bpf datapath is not available: {exc}") from None
    # the sizes hold from the object's first load (its pins keep them)
    sizes = {FLOWS: options.flow_table_size, CONNTRACK: options.conntrack_size}
    return BpfDatapath(host_id, max_entries=sizes)


async def serve(options: AgentOptions) -> None:
    """Run the agent described by ``options`` until SIGTERM or SIGINT."""
    from netloom.agent.core import Agent, AgentConfig
    from netloom.agent.driver import AgentDriver
    from netloom.sim import SimConfig
    from netloom.topology.client import TopologyClient

    address = options.addresses()
    host_id = options.host_id
    if host_id is None:
        assert options.host_name is not None
        host_id = await _resolve_host(address, options.host_name)
    agent = Agent(
        AgentConfig(
            host_id,
            underlay_ip=options.underlay_ip,
            idle_timeout_s=options.idle_timeout,
            sim=SimConfig(underlay_mtu=options.mtu, kernel_conntrack=options.kernel_conntrack),
            vxlan_in_datapath=options.vxlan_encap is VxlanEncap.bpf,
            conntrack=options.conntrack(),
        ),
        _datapath(options, host_id),
    )
    client = TopologyClient(host_id, address)
    # the sidecars plug a veth into the kernel datapath; the memory one runs without them
    gateway = _gateway(agent, client, options) if options.datapath is DatapathKind.bpf else None
    driver = AgentDriver(
        agent,
        client,
        metrics_port=options.metrics_port,
        gateway=gateway,
        simlog_dir=Path(options.state_dir) if options.state_dir else None,
    )
    await driver.run_until_signalled()


def _gateway(agent: Agent, client: TopologyClient, options: AgentOptions) -> GatewayLink:
    """The routing sidecars of this host's uplinks, reporting through ``client``."""
    from netloom.agent.gateway import GatewayLink, LogReporter, ReportingClient, TopologyReporter
    from netloom.gateway.manager import Gateway
    from netloom.gateway.metrics import GatewayMetrics
    from netloom.gateway.report import BgpReporter
    from netloom.gateway.sidecar import SidecarSettings

    reporter: BgpReporter = (
        TopologyReporter(client) if isinstance(client, ReportingClient) else LogReporter()
    )
    settings = SidecarSettings(mtu=agent.cfg.sim.overlay_mtu, ns_prefix=options.sidecar_ns_prefix)
    metrics = GatewayMetrics(agent.metrics.registry)
    return GatewayLink(agent, Gateway(reporter, agent.set_sidecar, metrics, settings))


def _setup_logging(options: AgentOptions) -> None:
    from netloom.agent.driver import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    if options.log_format is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = logging.DEBUG if options.verbose else logging.INFO
    logging.basicConfig(level=level, handlers=[handler])


def run(options: AgentOptions) -> int:
    """Log setup, then :func:`serve`; returns the exit status (1 on a netloom error)."""
    _setup_logging(options)
    try:
        asyncio.run(serve(options))
    except NetloomError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "netloom agent") -> int:
    """Parse ``argv`` (default: the process's arguments) and run the agent."""
    return run(parse_argv(sys.argv[1:] if argv is None else argv, prog))


__all__ = ["main", "run", "serve"]
