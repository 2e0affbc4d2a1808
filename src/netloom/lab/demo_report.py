"""What the demo measured (:class:`Summary` and its parts), the agents' metrics it reads, and
what to tell a person about a lab the demo left running."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.lab import probes
from netloom.lab.demo_plan import SSH_PORT

if TYPE_CHECKING:
    from netloom.lab.lab import Lab


@dataclass
class VmResult:
    name: str  # the lab's VM name (h1-a1), what `netloom lab exec` takes
    key: str
    tenant: str
    host: str  # h1, h2 ... (the host's netns is <lab>-h1)
    network: str
    mac: str
    netns: str
    expected_ip: str
    port_id: str = ""
    dhcp_ip: str | None = None
    dhcp_ms: float | None = None
    dhcp: dict[str, str] = field(default_factory=dict)
    mtu: int | None = None


@dataclass
class PingResult:
    src: str
    dst: str
    dst_ip: str
    path: str
    first_ms: float | None
    sent: int
    received: int
    min_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None


@dataclass
class Summary:
    lab: str
    hosts: list[dict[str, Any]] = field(default_factory=list)
    vms: list[VmResult] = field(default_factory=list)
    pings: list[PingResult] = field(default_factory=list)
    iperf3: dict[str, Any] = field(default_factory=dict)
    security_group: dict[str, str] = field(default_factory=dict)
    isolation: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)
    northsouth: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False
    failed_step: str | None = None
    error: str | None = None
    kept: bool = False
    logs: str | None = None  # where a failed run's logs were copied
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


AGENT_METRICS = {
    "upcalls": "netloom_agent_upcalls",
    "simulations": "netloom_agent_simulations",
    "flows_installed": "netloom_agent_flows_installed",
    "flows_invalidated": "netloom_agent_flows_invalidated",
    "flows": "netloom_agent_flows",
    "state_pushed": "netloom_agent_flow_state_pushed",
}


def scrape_agent(ns: str, port: int = METRICS_PORT) -> dict[str, float]:
    """The agent's metrics from inside its host namespace, summed over labels."""
    return parse_metrics(probes.fetch_metrics(ns, port))


def parse_metrics(text: str) -> dict[str, float]:
    return probes.metric_totals(text, AGENT_METRICS)


def keep_instructions(lab: Lab, summary: Summary) -> list[str]:
    """What a person can do with a lab the demo left running."""
    name = lab.name
    vm = {v.key: v for v in summary.vms}
    a1, a4 = vm.get("a1"), vm.get("a4")
    lines = [f"lab {name} is still running:", f"  netloom lab status --name {name}"]
    if a1 is not None:
        lines.append(f"  netloom lab exec --name {name} {a1.name} -- ip addr show eth0")
        if a4 is not None:
            lines.append(
                f"  netloom lab exec --name {name} {a4.name} -- iperf3 -s -D   "
                f"# then: netloom lab exec --name {name} {a1.name} -- iperf3 -c "
                f"{a4.expected_ip}"
            )
    if lab.state.cluster is not None:
        c = lab.state.cluster
        lines.append(f"  nsenter --net=/run/netns/{c.netns} netloom port list --api {c.api_url}")
        if a1 is not None and a4 is not None:
            lines.append(
                f"  nsenter --net=/run/netns/{c.netns} netloom trace --api {c.api_url} "
                f"--from-port {a1.name} --dst-ip {a4.expected_ip} --proto tcp "
                f"--dport {SSH_PORT}"
            )
    if lab.state.outside is not None:
        o = lab.state.outside
        lines.append(f"  birdc -s {o.bird_socket} show protocols   # the upstream's sessions")
        lines.append(f"  nsenter --net=/run/netns/{o.upstream_netns} ip route")
    lines.append(f"take it down: netloom lab down --name {name}")
    return lines


__all__ = [
    "AGENT_METRICS",
    "PingResult",
    "Summary",
    "VmResult",
    "keep_instructions",
    "parse_metrics",
    "scrape_agent",
]
