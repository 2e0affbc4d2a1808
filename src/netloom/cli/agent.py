"""``netloom agent``: run the host agent (one per host, inside the host's network namespace)."""

from __future__ import annotations

import asyncio
import logging
import sys
from enum import StrEnum

import typer

from netloom.errors import InvalidInput, NetloomError

# An overlay MTU of at least 576 (the IPv4 minimum datagram every host accepts, RFC 791)
# plus the 50 bytes of VXLAN encapsulation (RFC 7348 section 5).
MIN_UNDERLAY_MTU = 626


class DatapathKind(StrEnum):
    memory = "memory"
    bpf = "bpf"


class VxlanEncap(StrEnum):
    bpf = "bpf"
    device = "device"


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--topology must be HOST:PORT, got {value!r}", field="topology")
    return host, int(port)


async def _resolve_host(address: tuple[str, int], name: str) -> str:
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


def _datapath(kind: DatapathKind, host_id: str) -> object:
    if kind is DatapathKind.memory:
        from netloom.datapath.memory import MemoryDatapath

        return MemoryDatapath()
    try:
        from netloom.datapath.bpf import BpfDatapath
    except ImportError as exc:  # the kernel datapath is optional at import time
        raise NetloomError(f"the bpf datapath is not available: {exc}") from None
    return BpfDatapath(host_id)


async def _main(
    host_id: str | None,
    host_name: str | None,
    topology: str,
    datapath: DatapathKind,
    underlay_ip: str | None,
    metrics_port: int | None,
    idle_timeout: float = 60.0,
    underlay_mtu: int = 1500,
    vxlan_encap: VxlanEncap = VxlanEncap.bpf,
) -> None:
    from netloom.agent.core import Agent, AgentConfig
    from netloom.agent.driver import AgentDriver
    from netloom.datapath.base import Datapath
    from netloom.sim import SimConfig
    from netloom.topology.client import TopologyClient

    address = _address(topology)
    if host_id is None:
        assert host_name is not None
        host_id = await _resolve_host(address, host_name)
    dp = _datapath(datapath, host_id)
    assert isinstance(dp, Datapath)
    agent = Agent(
        AgentConfig(
            host_id,
            underlay_ip=underlay_ip,
            idle_timeout_s=idle_timeout,
            sim=SimConfig(underlay_mtu=underlay_mtu),
            vxlan_in_datapath=vxlan_encap is VxlanEncap.bpf,
        ),
        dp,
    )
    driver = AgentDriver(agent, TopologyClient(host_id, address), metrics_port=metrics_port)
    await driver.run_until_signalled()


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("agent")
    def agent_cmd(
        host_id: str = typer.Option(None, "--host-id", help="This host's id."),
        host_name: str = typer.Option(None, "--host-name", help="Or its name (looked up)."),
        topology: str = typer.Option(..., "--topology", help="Topology service HOST:PORT."),
        datapath: DatapathKind = typer.Option(DatapathKind.memory, "--datapath"),
        underlay_ip: str = typer.Option(
            None, "--underlay-ip", help="VXLAN source address (default: tunnel zone)."
        ),
        metrics_port: int = typer.Option(
            None, "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:N."
        ),
        idle_timeout: float = typer.Option(
            60.0, "--idle-timeout", help="Seconds an unused flow stays installed."
        ),
        mtu: int = typer.Option(
            1500,
            "--mtu",
            help="Underlay MTU; the tunnel and VM ports get MTU - 50 (VXLAN over IPv4, RFC 7348).",
        ),
        vxlan_encap: VxlanEncap = typer.Option(
            VxlanEncap.bpf,
            "--vxlan-encap",
            help="bpf: the datapath adds/removes VXLAN headers itself for unicast IPv4 (the "
            "VXLAN device carries the rest); device: the kernel's VXLAN device for all.",
        ),
        log_format: str = typer.Option("text", "--log-format", help="text or json."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run the host agent until SIGTERM: bindings, upcalls, flows, tunnels, metrics."""
        from netloom.agent.driver import JsonFormatter

        if (host_id is None) == (host_name is None):
            typer.echo("error: give exactly one of --host-id and --host-name", err=True)
            raise typer.Exit(2)
        if not 0 < idle_timeout <= 86400:
            typer.echo("error: --idle-timeout must be in (0, 86400] seconds", err=True)
            raise typer.Exit(2)
        if not MIN_UNDERLAY_MTU <= mtu <= 65535:
            typer.echo(f"error: --mtu must be in [{MIN_UNDERLAY_MTU}, 65535]", err=True)
            raise typer.Exit(2)
        handler = logging.StreamHandler(sys.stderr)
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
        try:
            asyncio.run(
                _main(
                    host_id,
                    host_name,
                    topology,
                    datapath,
                    underlay_ip,
                    metrics_port,
                    idle_timeout,
                    mtu,
                    vxlan_encap,
                )
            )
        except NetloomError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(1) from None


__all__ = ["register"]
