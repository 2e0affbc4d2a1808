"""The lab's state file: a write-ahead record of everything a lab creates.

``lab down`` must remove a lab completely even when ``lab up`` crashed halfway (an exception, a
Ctrl-C, a SIGKILL). So every resource is written to ``/run/netloom/labs/<name>.json`` *before*
it is created; teardown then deletes whatever is recorded and treats "already gone" as success.
A resource recorded but never created costs nothing; a resource created but not recorded would
leak, and this ordering rules that out (processes are the one exception, since a PID exists only
after the spawn: they are recorded right after it, and teardown also stops any process still
living in one of the lab's namespaces, which covers the window between the two).

The file lives under /run (tmpfs): a lab does not survive a reboot, and neither does its state.
Writes are atomic (temporary file + rename) so a crash never leaves half a JSON document.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netloom.errors import AlreadyExists, InvalidInput, NotFound

STATE_ROOT = Path(os.environ.get("NETLOOM_LAB_STATE", "/run/netloom/labs"))
# Short because the name prefixes interface names: "<name>h12v34" must fit 15 bytes.
LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")

Phase = Literal["creating", "up", "failed", "tearing-down"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessRecord(_Model):
    """A process the lab started. ``start_ticks`` (its start time in clock ticks since boot,
    /proc/PID/stat field 22) and ``match`` (a substring of its command line) make sure the lab
    never takes a recycled PID for its own. State files written before ``start_ticks`` carry
    the wall-clock ``create_time`` instead (read, never written).

    ``argv`` and ``restart`` let the supervisor start the same command again when it died;
    ``restarts`` holds the CLOCK_BOOTTIME seconds of each restart (the restart policy's window)
    and ``started`` the last start, ``gave_up`` says the policy stopped restarting it."""

    role: str  # cluster | agent | zookeeper | bird
    pid: int
    match: str
    start_ticks: int | None = None
    create_time: float | None = None
    netns: str | None = None
    log: str | None = None
    argv: list[str] = Field(default_factory=list)
    restart: bool = False
    started: float = 0.0
    restarts: list[float] = Field(default_factory=list)
    gave_up: bool = False


class HostRecord(_Model):
    index: int
    # a gateway host ("gwN") carries an uplink to the upstream router; a compute host ("hN")
    # carries VMs
    role: Literal["compute", "gateway"] = "compute"
    name: str  # also the host's netns name and its name in the NSDB
    netns: str
    underlay_if: str
    underlay_ip: str  # without prefix length
    switch_port: str  # the veth end on the lab switch's bridge
    # the tunnel endpoint when tunnels have their own cable (Lab.cable_tunnel_link), else
    # tunnels use underlay_ip on the switch
    tunnel_ip: str | None = None
    host_id: str | None = None
    bpf_pin_dir: str | None = None

    @property
    def short(self) -> str:
        """``h1``, ``gw1``: the host's name inside its lab."""
        return f"{'gw' if self.role == 'gateway' else 'h'}{self.index}"


class UplinkRecord(_Model):
    """Gateway ``index``'s cable to the upstream router and the router port bound to it."""

    index: int
    host: str  # HostRecord.name of the gateway host
    host_if: str  # the NIC in the gateway host (the uplink port's interface_name)
    upstream_if: str  # its peer in the upstream router's namespace
    port_address: str  # the uplink router port's address/prefix (198.19.G.2/24)
    upstream_address: str  # the upstream's address/prefix on the cable (198.19.G.1/24)


class OutsideRecord(_Model):
    """The world outside the cloud: the upstream router (bird2) and the external host."""

    upstream_netns: str
    external_netns: str
    upstream_as: int
    gateway_as: int
    bfd: bool
    bird_conf: str
    bird_socket: str
    bird_pid_file: str


class VmRecord(_Model):
    name: str  # short name inside the lab ("h1-vm1")
    netns: str
    host: str  # HostRecord.name
    host_if: str  # veth end inside the host's netns (the port binding's interface_name)
    vm_if: str
    mac: str
    ip: str | None = None  # address/prefix inside the VM
    port_id: str | None = None
    floating_ip: str | None = None  # its public address (a lab with gateways), else SNAT


class ClusterRecord(_Model):
    netns: str
    api_url: str
    topology: str
    store_url: str
    neutron_url: str | None = None  # the Neutron v2.0 API (noauth)


class LabState(_Model):
    name: str
    phase: Phase = "creating"
    created: float = Field(default_factory=time.time)
    mtu: int = 1500
    store: Literal["sqlite", "zookeeper"] = "sqlite"
    tx_off: bool = False
    dir: str
    switch_netns: str
    switch_bridge: str = "br0"
    switch_ip: str = "192.0.2.1"
    netns: list[str] = Field(default_factory=list)  # in creation order
    dirs: list[str] = Field(default_factory=list)
    bpf_pins: list[str] = Field(default_factory=list)
    processes: list[ProcessRecord] = Field(default_factory=list)
    hosts: list[HostRecord] = Field(default_factory=list)
    vms: list[VmRecord] = Field(default_factory=list)
    cluster: ClusterRecord | None = None
    uplinks: list[UplinkRecord] = Field(default_factory=list)
    outside: OutsideRecord | None = None
    zookeeper_dir: str | None = None
    # "unavailable" is only read (state files of labs whose agent could not be found)
    agents: Literal["unknown", "running", "unavailable"] = "unknown"
    datapath: str | None = None  # the agents' --datapath (None: the agent's default)
    topology: dict[str, str] = Field(default_factory=dict)  # role -> NSDB id
    error: str | None = None


def check_name(name: str) -> str:
    if not LAB_NAME.match(name):
        raise InvalidInput(
            f"bad lab name {name!r}: 1-8 characters of [a-z0-9], starting with a letter "
            "(it prefixes interface names, which the kernel limits to 15 bytes)",
            field="name",
        )
    return name


def random_name() -> str:
    """``nl`` + 4 hex digits: short, and unlikely to collide with another lab."""
    return "nl" + secrets.token_hex(2)


def state_path(name: str, root: Path | None = None) -> Path:
    return (root or STATE_ROOT) / f"{check_name(name)}.json"


def list_labs(root: Path | None = None) -> list[str]:
    base = root or STATE_ROOT
    try:
        files = sorted(base.glob("*.json"))
    except OSError:
        return []
    return [f.stem for f in files if LAB_NAME.match(f.stem)]


class StateFile:
    """One lab's state, loaded or claimed, and saved after every change."""

    def __init__(self, path: Path, state: LabState) -> None:
        self.path = path
        self.state = state

    @classmethod
    def claim(cls, state: LabState, root: Path | None = None) -> StateFile:
        """Create the state file exclusively (O_EXCL): two ``lab up --name X`` cannot both
        own lab X."""
        path = state_path(state.name, root)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise AlreadyExists(
                f"lab {state.name} exists ({path}); `netloom lab down --name {state.name}` "
                "removes it",
                field="name",
            ) from None
        os.close(fd)
        sf = cls(path, state)
        sf.save()
        return sf

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> StateFile:
        path = state_path(name, root)
        try:
            raw = path.read_text()
        except FileNotFoundError:
            raise NotFound(f"no lab {name} (no {path})", field="name") from None
        try:
            state = LabState.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidInput(
                f"corrupt lab state {path}: {exc.errors()[0]['msg']}", field="name"
            ) from None
        return cls(path, state)

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state.model_dump(mode="json"), indent=2) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


__all__ = [
    "LAB_NAME",
    "STATE_ROOT",
    "ClusterRecord",
    "HostRecord",
    "LabState",
    "OutsideRecord",
    "ProcessRecord",
    "StateFile",
    "UplinkRecord",
    "VmRecord",
    "check_name",
    "list_labs",
    "random_name",
    "state_path",
]
