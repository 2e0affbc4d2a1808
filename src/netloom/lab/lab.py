"""The namespace lab: hosts, VMs, an underlay switch and the cluster, on one machine.

Layout of a lab named ``L`` (ARCHITECTURE.md decision 9)::

    netns L-sw     bridge br0 192.0.2.1/24  ── the underlay switch; the cluster runs here
      ├─ h1 ═══ eth0 192.0.2.11/24   netns L-h1     (agent; VM veths Lh1v1, Lh1v2 ...)
      │                                  └─ Lh1v1 ═══ eth0 10.0.0.10/24  netns L-h1-vm1
      └─ h2 ═══ eth0 192.0.2.12/24   netns L-h2  ...

Where the cluster runs, and why: inside the switch namespace, listening on the bridge's
underlay address (API ``http://192.0.2.1:8181``, topology ``192.0.2.1:8182``). Agents in host
namespaces then reach it over the underlay like real hypervisors reach a controller, no lab
traffic touches the root namespace (no veth into it, no routes, no port forward), fixed ports
cannot collide between labs (each has its own namespace), and a ZooKeeper ensemble for
``--store zookeeper`` lives on the switch namespace's loopback next to it. The CLI in the root
namespace talks to the API by opening its sockets inside the switch namespace (setns on the
calling thread, :class:`NetnsApiClient`); a person does the same with
``nsenter --net=/run/netns/L-sw netloom host list --api http://192.0.2.1:8181``.

Everything is recorded in the state file before it is created (:mod:`netloom.lab.state`), so
:func:`down` removes a lab completely also after a crash halfway, and is a no-op when nothing is
left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from netloom.api.client import ApiClient
from netloom.datapath.pins import PIN_ROOT
from netloom.errors import (
    ApiUnreachable,
    DatapathError,
    InvalidInput,
    NetloomError,
    NotFound,
    StoreError,
)
from netloom.lab import netns
from netloom.lab.addressing import (
    API_PORT,
    HOST_IP_BASE,
    MAX_HOSTS,
    MAX_VMS_PER_HOST,
    SWITCH_IP,
    TENANT_GW,
    TENANT_NET,
    TOPOLOGY_PORT,
    TUNNEL_IF,
    TUNNEL_NET,
    UNDERLAY,
    VM_IP_BASE,
    VXLAN_OVERHEAD,
)
from netloom.lab.state import (
    ClusterRecord,
    HostRecord,
    LabState,
    ProcessRecord,
    StateFile,
    VmRecord,
    check_name,
    list_labs,
    random_name,
    state_path,
)

Store = Literal["sqlite", "zookeeper"]


class NetnsApiClient(ApiClient):
    """An :class:`ApiClient` whose connections are opened inside network namespace ``ns``.

    A socket belongs to the namespace its creating thread was in at ``socket()`` time and stays
    there, so entering the namespace around each request (only the calling thread moves) is all
    it takes; pooled connections keep working after the thread has come back."""

    def __init__(self, ns: str, base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self.netns = ns

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with netns.entered(self.netns):
            return super().request(method, path, **kwargs)


@dataclass(frozen=True)
class VM:
    """What a test or the CLI needs to use a VM: where it is and how it is plugged."""

    name: str
    netns: str
    host: str
    host_if: str
    mac: str
    ip: str | None


# -- naming ------------------------------------------------------------------------------------


def host_name(lab: str, index: int) -> str:
    return f"{lab}-h{index}"


def host_ip(index: int) -> str:
    return str(UNDERLAY.network_address + HOST_IP_BASE + index)


def vm_mac(lab: str, host_index: int, seq: int) -> str:
    """A locally administered unicast MAC (first octet 0x02, IEEE 802 "U/L" bit set), stable for
    a lab, host and slot, and distinct between labs (two bytes of a hash of the lab name)."""
    digest = hashlib.sha256(lab.encode()).digest()
    return f"02:{digest[0]:02x}:{digest[1]:02x}:00:{host_index:02x}:{seq:02x}"


def netloom_argv() -> list[str]:
    """How to run the ``netloom`` CLI of *this* installation (the venv's script when present)."""
    script = Path(sys.executable).parent / "netloom"
    if script.exists():
        return [str(script)]
    found = shutil.which("netloom")
    if found:
        return [found]
    return [sys.executable, "-c", "from netloom.cli.main import main; main()"]


# -- processes ---------------------------------------------------------------------------------


def _record_process(
    proc: psutil.Process | int, role: str, match: str, ns: str | None, log: Path | None
) -> ProcessRecord:
    p = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
    return ProcessRecord(
        role=role,
        pid=p.pid,
        create_time=p.create_time(),
        match=match,
        netns=ns,
        log=str(log) if log else None,
    )


def _still_ours(rec: ProcessRecord) -> psutil.Process | None:
    """The recorded process if it is still the one we started (same start time, command line
    still containing our marker), else None: a recycled PID is never signalled."""
    try:
        p = psutil.Process(rec.pid)
        if abs(p.create_time() - rec.create_time) > 0.05:
            return None
        if p.status() == psutil.STATUS_ZOMBIE:
            return p  # ours, dead, maybe still to be reaped
        if rec.match not in " ".join(p.cmdline()):
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _alive(rec: ProcessRecord) -> bool:
    p = _still_ours(rec)
    try:
        return p is not None and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _terminate(procs: Sequence[psutil.Process], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    left = _wait_gone(procs, grace)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _wait_gone(left, grace)


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; returns those still running at the deadline.

    A zombie counts as gone (it holds no socket or namespace), and our own children are reaped
    on the way. psutil.wait_procs is not used: for processes that are not our children it can
    block well past their exit."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        still = []
        for p in left:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p.pid, os.WNOHANG)
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    still.append(p)
            except psutil.NoSuchProcess:
                pass
        left = still
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return left


# -- the lab -----------------------------------------------------------------------------------


class Lab:
    """One lab, backed by its state file. Build it step by step (``build_underlay``,
    ``add_host``, ``start_cluster``, ``register_hosts``, ``add_vm``, ...) or all at once with
    :meth:`up`; remove it with :meth:`down` (or the module's :func:`down` by name)."""

    def __init__(self, sf: StateFile) -> None:
        self._sf = sf
        self._api: NetnsApiClient | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        mtu: int = 1500,
        store: Store = "sqlite",
        tx_off: bool = False,
        root: Path | None = None,
    ) -> Lab:
        """Claim a new lab name (its state file) without creating anything yet."""
        lab = check_name(name) if name else random_name()
        if mtu not in (1500, 9000):
            raise InvalidInput(f"--mtu must be 1500 or 9000, not {mtu}", field="mtu")
        if store not in ("sqlite", "zookeeper"):
            raise InvalidInput(f"--store must be sqlite or zookeeper, not {store}", field="store")
        leftovers = netns.list_netns(f"{lab}-")
        if leftovers and not state_path(lab, root).exists():
            raise InvalidInput(
                f"namespaces {', '.join(leftovers)} exist but lab {lab} has no state file; "
                "they are not ours to reuse: pick another --name",
                field="name",
            )
        base = root or state_path(lab, root).parent
        state = LabState(
            name=lab,
            mtu=mtu,
            store=store,
            tx_off=tx_off,
            dir=str(base / f"{lab}.d"),
            switch_netns=f"{lab}-sw",
            switch_ip=SWITCH_IP,
        )
        return cls(StateFile.claim(state, root))

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> Lab:
        return cls(StateFile.load(name, root))

    @property
    def state(self) -> LabState:
        return self._sf.state

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def dir(self) -> Path:
        return Path(self.state.dir)

    @property
    def vm_mtu(self) -> int:
        return self.state.mtu - VXLAN_OVERHEAD

    def save(self) -> None:
        """Persist the state: called after recording an intention and before acting on it
        (write-ahead), so a crash right after leaves the intention on disk. Public so that
        scenarios built on a lab (demo, benchmarks) record what they add the same way."""
        self._sf.save()

    def _make_dir(self, path: Path) -> Path:
        if str(path) not in self.state.dirs:
            self.state.dirs.append(str(path))
            self.save()
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
        return path

    def _netns(self, name: str) -> None:
        if name not in self.state.netns:
            self.state.netns.append(name)
            self.save()
        netns.create(name)

    # -- underlay ----------------------------------------------------------------------------

    def build_underlay(self) -> None:
        """The switch namespace with its bridge, which also carries the control address. The
        switch stands for a physical one: its bridge skips the netfilter hooks."""
        s = self.state
        self._make_dir(self.dir)
        self._netns(s.switch_netns)
        netns.disable_bridge_netfilter(s.switch_netns)
        netns.create_bridge(s.switch_netns, s.switch_bridge, mtu=s.mtu)
        netns.add_address(s.switch_netns, s.switch_bridge, f"{s.switch_ip}/{UNDERLAY.prefixlen}")

    def add_host(self, index: int) -> HostRecord:
        """Host namespace ``<lab>-hN`` with ``eth0`` (192.0.2.(10+N)/24) cabled to the switch."""
        if not 1 <= index <= MAX_HOSTS:
            raise InvalidInput(f"host index {index} is outside 1..{MAX_HOSTS}", field="hosts")
        name = host_name(self.name, index)
        existing = self._find_host(name)
        rec = existing or HostRecord(
            index=index,
            name=name,
            netns=name,
            underlay_if="eth0",
            underlay_ip=host_ip(index),
            switch_port=f"h{index}",
        )
        if existing is None:
            self.state.hosts.append(rec)
            self.save()
        self._netns(rec.netns)
        s = self.state
        netns.create_veth(s.switch_netns, rec.switch_port, rec.netns, rec.underlay_if, mtu=s.mtu)
        netns.set_master(s.switch_netns, rec.switch_port, s.switch_bridge)
        netns.add_address(rec.netns, rec.underlay_if, f"{rec.underlay_ip}/{UNDERLAY.prefixlen}")
        return rec

    def cable_tunnel_link(self, a: int, b: int) -> None:
        """Give hosts ``a`` and ``b`` a second NIC, ``data0`` (198.51.100.(10+N)/24), cabled
        back to back, and make it their tunnel endpoint: the management traffic (API, topology,
        heartbeats) stays on the switch, the VXLAN traffic between the two takes the direct
        cable, like hypervisors with a separate data network. Call before
        :meth:`register_hosts` and :meth:`start_agents` (both use the tunnel IP)."""
        ha, hb = self._host(f"h{a}"), self._host(f"h{b}")
        if ha is hb:
            raise InvalidInput("a tunnel link needs two different hosts", field="hosts")
        for h in (ha, hb):
            if h.tunnel_ip is None:
                h.tunnel_ip = str(TUNNEL_NET.network_address + HOST_IP_BASE + h.index)
        self.save()
        netns.create_veth(ha.netns, TUNNEL_IF, hb.netns, TUNNEL_IF, mtu=self.state.mtu)
        for h in (ha, hb):
            netns.add_address(h.netns, TUNNEL_IF, f"{h.tunnel_ip}/{TUNNEL_NET.prefixlen}")

    # -- VMs ---------------------------------------------------------------------------------

    def add_vm(self, host: str, name: str, *, ip: str | None = None) -> VM:
        """VM namespace ``<lab>-<host>-<name>`` with ``eth0`` (MTU = underlay - 50, the lab's
        MAC) and its peer ``<lab>hNvK`` in the host's namespace. ``ip`` (address/prefix) is
        written into the VM when given."""
        h = self._host(host)
        short = f"h{h.index}-{name}"
        existing = next((v for v in self.state.vms if v.name == short), None)
        if existing is None:
            seq = 1 + sum(1 for v in self.state.vms if v.host == h.name)
            if seq > MAX_VMS_PER_HOST:
                raise InvalidInput(
                    f"host {h.name} already has {MAX_VMS_PER_HOST} VMs", field="vms_per_host"
                )
            rec = VmRecord(
                name=short,
                netns=f"{self.name}-{short}",
                host=h.name,
                host_if=netns.check_ifname(f"{self.name}h{h.index}v{seq}"),
                vm_if="eth0",
                mac=vm_mac(self.name, h.index, seq),
                ip=ip,
            )
            self.state.vms.append(rec)
            self.save()
        else:
            rec = existing
        self._plug_vm(rec)
        return self.vm(rec.name)

    def _plug_vm(self, rec: VmRecord) -> None:
        netns.check_ns_name(rec.netns)
        self._netns(rec.netns)
        netns.create_veth(rec.host, rec.host_if, rec.netns, rec.vm_if, mtu=self.vm_mtu)
        netns.set_link(rec.netns, rec.vm_if, mac=rec.mac)
        if self.state.tx_off:
            netns.set_offload(rec.netns, rec.vm_if, "tx", on=False)

    def set_vm_address(self, vm: str, cidr: str, gateway: str | None = TENANT_GW) -> None:
        """Write a static address (and default route) inside the VM: the VM works before any
        DHCP server exists, and a test can pin addresses."""
        rec = self._vm(vm)
        netns.add_address(rec.netns, rec.vm_if, cidr)
        if gateway is not None:
            netns.add_default_route(rec.netns, gateway)
        if rec.ip != cidr:
            rec.ip = cidr
            self.save()

    def vm(self, name: str) -> VM:
        rec = self._vm(name)
        return VM(
            rec.name,
            rec.netns,
            rec.host,
            rec.host_if,
            rec.mac,
            rec.ip.split("/")[0] if rec.ip else None,
        )

    def vms(self) -> list[VM]:
        return [self.vm(v.name) for v in self.state.vms]

    def _find_host(self, name: str) -> HostRecord | None:
        return next((h for h in self.state.hosts if name in (h.name, f"h{h.index}")), None)

    def _host(self, name: str) -> HostRecord:
        found = self._find_host(name)
        if found is None:
            raise NotFound(f"lab {self.name} has no host {name}", field="host")
        return found

    def _vm(self, name: str) -> VmRecord:
        for v in self.state.vms:
            if name in (v.name, v.netns) or (v.ip and name == v.ip.split("/")[0]):
                return v
        raise NotFound(f"lab {self.name} has no VM {name}", field="vm")

    # -- cluster -----------------------------------------------------------------------------

    def start_cluster(self, *, timeout: float = 30.0) -> ClusterRecord:
        """``netloom cluster`` inside the switch namespace on the underlay address, with a
        per-lab SQLite file or a 3-node ZooKeeper ensemble; returns once the API answers."""
        s = self.state
        store_url = self._store_url()
        rec = ClusterRecord(
            netns=s.switch_netns,
            api_url=f"http://{s.switch_ip}:{API_PORT}",
            topology=f"{s.switch_ip}:{TOPOLOGY_PORT}",
            store_url=store_url,
        )
        self.state.cluster = rec
        self.save()
        log = self.dir / "cluster.log"
        argv = [
            *netloom_argv(),
            "cluster",
            "--store",
            store_url,
            "--api",
            f"{s.switch_ip}:{API_PORT}",
            "--topology",
            rec.topology,
            "--state-dir",
            str(self.dir),
            "--host-timeout",
            "3",
        ]
        with log.open("ab") as out:
            proc = netns.popen(s.switch_netns, argv, stdout=out, stderr=subprocess.STDOUT)
        s.processes.append(_record_process(proc.pid, "cluster", str(self.dir), s.switch_netns, log))
        self.save()
        self._wait_api(proc, log, timeout)
        return rec

    def _store_url(self) -> str:
        if self.state.store == "sqlite":
            return f"sqlite:{self.dir / 'nsdb.sqlite'}"
        return f"zookeeper:{self._start_zookeeper()}/netloom"

    def _start_zookeeper(self) -> str:
        """A 3-member ensemble on the switch namespace's loopback. The JVMs are forked while
        this thread is inside the namespace, so they (and the readiness probes) live there."""
        from netloom.lab.zookeeper import ZooKeeperEnsemble

        zk_dir = self.dir / "zk"
        self.state.zookeeper_dir = str(zk_dir)
        self.save()
        self._make_dir(zk_dir)
        with netns.entered(self.state.switch_netns):
            # the JVMs must outlive `lab up` (the CLI exits at once): no parent-death signal;
            # `lab down` stops them from their recorded PIDs
            ens = ZooKeeperEnsemble(size=3, base_dir=zk_dir, die_with_parent=False)
            ens.start(wait=False)
            for m in ens.members:
                assert m.process is not None
                self.state.processes.append(
                    _record_process(
                        m.process.pid,
                        "zookeeper",
                        str(m.directory),
                        self.state.switch_netns,
                        m.directory / "zookeeper.log",
                    )
                )
                self.save()
            ens.wait_serving()
            # the Popen objects die with this call; teardown works from the recorded PIDs
            return ens.connect_string

    def _wait_api(self, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        api = self.api()
        while True:
            if proc.poll() is not None:
                raise StoreError(f"the lab cluster exited ({proc.returncode}): {_tail(log)}")
            try:
                api.request("GET", "")
                return
            except ApiUnreachable:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the lab cluster did not answer within {timeout:.0f} s: {_tail(log)}"
                    ) from None
                time.sleep(0.1)

    def api(self) -> NetnsApiClient:
        """A client of the lab's API (connections opened inside the switch namespace)."""
        if self.state.cluster is None:
            raise NotFound(f"lab {self.name} has no cluster", field="cluster")
        if self._api is None:
            self._api = NetnsApiClient(self.state.cluster.netns, self.state.cluster.api_url)
        return self._api

    def register_hosts(self) -> None:
        """One NSDB host per lab host and one VXLAN tunnel zone holding every underlay IP."""
        api = self.api()
        for h in self.state.hosts:
            if h.host_id is None:
                doc = api.create("hosts", {"name": h.name})
                h.host_id = doc["id"]
                h.bpf_pin_dir = str(PIN_ROOT / doc["id"])
                self.save()
        members = [
            {"host_id": h.host_id, "ip": h.tunnel_ip or h.underlay_ip} for h in self.state.hosts
        ]
        zone = self.state.topology.get("tunnel_zone")
        if zone is None:
            doc = api.create(
                "tunnel_zones", {"name": self.name, "type": "vxlan", "members": members}
            )
            self.state.topology["tunnel_zone"] = doc["id"]
            self.save()
        else:
            api.update("tunnel_zones", zone, {"members": members})

    def default_topology(self, *, static_ip: bool = True) -> None:
        """Tenant ``<lab>``, router with 10.0.0.1/24 linked to a bridge with DHCP subnet
        10.0.0.0/24 (MTU option = VM MTU, RFC 2132 §5.1), and for each VM a bridge port with its
        MAC and fixed IP, bound to (host id, host-side interface)."""
        api = self.api()
        ids = self.state.topology
        for i, v in enumerate(self.state.vms):
            if v.ip is None:
                ip = f"{TENANT_NET.network_address + VM_IP_BASE + i}/{TENANT_NET.prefixlen}"
                v.ip = ip
        self.save()
        tenant = ids.get("tenant") or api.create("tenants", {"name": self.name})["id"]
        router = (
            ids.get("router")
            or api.create("routers", {"tenant_id": tenant, "name": f"{self.name}-router"})["id"]
        )
        bridge = (
            ids.get("bridge")
            or api.create("bridges", {"tenant_id": tenant, "name": f"{self.name}-net"})["id"]
        )
        ids.update(tenant=tenant, router=router, bridge=bridge)
        self.save()
        if "router_port" not in ids:
            rp = api.create(
                "ports",
                {
                    "device_id": router,
                    "type": "router",
                    "mac": vm_mac(self.name, 0, 1),
                    "address": f"{TENANT_GW}/{TENANT_NET.prefixlen}",
                },
            )
            bp = api.create("ports", {"device_id": bridge, "type": "bridge"})
            api.link_ports(rp["id"], bp["id"])
            ids.update(router_port=rp["id"], uplink=bp["id"])
            self.save()
        if "subnet" not in ids:
            hosts = [
                {"mac": v.mac, "ip": (v.ip or "").split("/")[0], "name": v.name}
                for v in self.state.vms
            ]
            sub = api.create(
                "dhcp_subnets",
                {
                    "bridge_id": bridge,
                    "cidr": str(TENANT_NET),
                    "gateway": TENANT_GW,
                    "mtu": self.vm_mtu,
                    "hosts": hosts,
                },
            )
            ids["subnet"] = sub["id"]
            self.save()
        for v in self.state.vms:
            self._plug_port(api, bridge, v)
            if static_ip and v.ip:
                self.set_vm_address(v.name, v.ip)

    def _plug_port(self, api: ApiClient, bridge: str, v: VmRecord) -> None:
        if v.port_id is None:
            port = api.create(
                "ports",
                {
                    "device_id": bridge,
                    "type": "bridge",
                    "name": v.name,
                    "mac": v.mac,
                    "fixed_ips": [(v.ip or "").split("/")[0]],
                },
            )
            v.port_id = port["id"]
            self.save()
        host = self._host(v.host)
        assert v.port_id is not None and host.host_id is not None
        api.bind_port(v.port_id, host.host_id, v.host_if)

    # -- agents ------------------------------------------------------------------------------

    def start_agents(self, command: Sequence[str] | None = None) -> bool:
        """``netloom agent`` (or ``command``) in every host namespace, if this installation has
        that command (``<command> --help`` exits 0); False when it does not. Only the options
        the agent's help declares are passed, so the lab keeps working while the agent's
        command line grows."""
        # `python -m netloom.agent` is `netloom agent` without importing every other command
        # module first: a restarted agent serves flows again well within 1 s (issue 5)
        base = list(command) if command else [sys.executable, "-m", "netloom.agent"]
        help_text = _agent_help(base)
        if help_text is None:
            self.state.agents = "unavailable"
            self.save()
            return False
        for h in self.state.hosts:
            if any(
                p.role == "agent" and p.netns == h.netns and _alive(p) for p in self.state.processes
            ):
                continue
            self._start_agent(h, base, help_text)
        self.state.agents = "running"
        self.save()
        return True

    def _start_agent(self, h: HostRecord, base: list[str], help_text: str) -> None:
        assert self.state.cluster is not None and h.host_id is not None
        if h.bpf_pin_dir:
            pin = h.bpf_pin_dir
            if pin not in self.state.bpf_pins:
                self.state.bpf_pins.append(pin)
                self.save()
        options = {
            "--host-id": h.host_id,
            "--api": self.state.cluster.api_url,
            "--topology": self.state.cluster.topology,
            "--cluster": self.state.cluster.topology,
            "--underlay-ip": h.tunnel_ip or h.underlay_ip,
            "--underlay-if": TUNNEL_IF if h.tunnel_ip else h.underlay_if,
            "--datapath": self.state.datapath,
            "--bpf-pin-dir": h.bpf_pin_dir,
            "--pin-dir": h.bpf_pin_dir,
            "--mtu": str(self.state.mtu),
        }
        argv = list(base)
        for opt, value in options.items():
            if value is not None and _declares(help_text, opt):
                argv += [opt, value]
        log = self.dir / f"agent-{h.name}.log"
        with log.open("ab") as out:
            proc = netns.popen(h.netns, argv, stdout=out, stderr=subprocess.STDOUT)
        self.state.processes.append(
            _record_process(
                proc.pid, "agent", h.host_id if h.host_id in argv else base[-1], h.netns, log
            )
        )
        self.save()

    # -- all at once -------------------------------------------------------------------------

    def up(
        self,
        hosts: int,
        vms_per_host: int,
        *,
        static_ip: bool = True,
        agents: bool = True,
        agent_command: Sequence[str] | None = None,
        datapath: str | None = None,
    ) -> None:
        """Build the whole lab; on any failure the state says ``failed`` and the error (the
        caller decides whether to tear down, see the CLI's ``--keep-on-error``)."""
        _check_size(hosts, vms_per_host)
        if datapath is not None:
            if datapath not in ("memory", "bpf"):
                raise InvalidInput(
                    f"--datapath must be memory or bpf, not {datapath}", field="datapath"
                )
            self.state.datapath = datapath
            self.save()
        try:
            self.build_underlay()
            for n in range(1, hosts + 1):
                self.add_host(n)
            self.start_cluster()
            self.register_hosts()
            for n in range(1, hosts + 1):
                for k in range(1, vms_per_host + 1):
                    self.add_vm(host_name(self.name, n), f"vm{k}")
            self.default_topology(static_ip=static_ip)
            if agents:
                self.start_agents(agent_command)
        except BaseException as exc:
            self.state.phase = "failed"
            self.state.error = str(exc) or type(exc).__name__
            self.save()
            raise
        self.state.phase = "up"
        self.save()

    # -- use ---------------------------------------------------------------------------------

    def exec(
        self, vm: str, argv: Sequence[str], *, check: bool = False, timeout: float | None = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return netns.run(self._vm(vm).netns, argv, check=check, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """A JSON-able view: what exists, what runs, and what the cluster says about hosts."""
        s = self.state
        alive_hosts = self._hosts_alive()
        procs = [{**p.model_dump(), "alive": _alive(p)} for p in s.processes]
        return {
            "name": s.name,
            "phase": s.phase,
            "error": s.error,
            "mtu": s.mtu,
            "vm_mtu": self.vm_mtu,
            "store": s.store,
            "tx_off": s.tx_off,
            "state_file": str(self._sf.path),
            "dir": s.dir,
            "switch": {
                "netns": s.switch_netns,
                "bridge": s.switch_bridge,
                "ip": s.switch_ip,
                "exists": netns.exists(s.switch_netns),
            },
            "cluster": None
            if s.cluster is None
            else {
                **s.cluster.model_dump(),
                "alive": any(p["alive"] for p in procs if p["role"] == "cluster"),
                "reach": f"nsenter --net=/run/netns/{s.cluster.netns} netloom host list "
                f"--api {s.cluster.api_url}",
            },
            "agents": s.agents,
            "hosts": [
                {
                    **h.model_dump(),
                    "exists": netns.exists(h.netns),
                    "alive": alive_hosts.get(h.host_id or ""),
                    "agent_pids": [
                        p["pid"]
                        for p in procs
                        if p["role"] == "agent" and p["netns"] == h.netns and p["alive"]
                    ],
                }
                for h in s.hosts
            ],
            "vms": [{**v.model_dump(), "exists": netns.exists(v.netns)} for v in s.vms],
            "processes": procs,
            "topology": dict(s.topology),
        }

    def _hosts_alive(self) -> dict[str, bool]:
        """host id -> ``alive`` as the cluster reports it ({} when the cluster is down)."""
        if self.state.cluster is None or not netns.exists(self.state.cluster.netns):
            return {}
        try:
            api = NetnsApiClient(self.state.cluster.netns, self.state.cluster.api_url, timeout=2.0)
            with api:
                return {h["id"]: bool(h.get("alive")) for h in api.list("hosts")}
        except NetloomError:
            return {}

    # -- teardown ----------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything recorded, in reverse dependency order; returns what was removed.
        Safe to repeat and safe after a crash: missing things are skipped."""
        if self._api is not None:
            self._api.close()
            self._api = None
        self.state.phase = "tearing-down"
        self.save()
        removed = self._stop_processes()
        for ns in reversed(self.state.netns):
            if netns.delete(ns):
                removed.append(f"netns {ns}")
        for pin in self.state.bpf_pins:
            if _remove_tree(Path(pin)):
                removed.append(f"bpf {pin}")
        for d in sorted(self.state.dirs, key=len, reverse=True):
            if _remove_tree(Path(d)):
                removed.append(f"dir {d}")
        self._sf.remove()
        return removed

    def _stop_processes(self) -> list[str]:
        """Recorded processes (checked to still be ours), then any process still living in one
        of the lab's namespaces: it can only have been started there by the lab (or by
        ``lab exec``) and would keep the lab's sockets alive."""
        removed: list[str] = []
        roles = ["agent", "cluster", "zookeeper"]  # users before what they use
        roles += sorted({r.role for r in self.state.processes} - set(roles))
        for role in roles:
            group = [
                (r, p)
                for r in self.state.processes
                if r.role == role and (p := _still_ours(r)) is not None
            ]
            _terminate([p for _, p in group])
            removed += [f"{r.role} pid {r.pid}" for r, _ in group]
        me = os.getpid()
        strays: list[psutil.Process] = []
        for ns in self.state.netns:
            for pid in netns.pids_in(ns):
                if pid not in (me, 1):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        strays.append(psutil.Process(pid))
        _terminate(strays)
        removed += [f"process pid {p.pid} (in a lab netns)" for p in strays]
        return removed


# -- module-level helpers ----------------------------------------------------------------------


def _check_size(hosts: int, vms_per_host: int) -> None:
    if not 1 <= hosts <= MAX_HOSTS:
        raise InvalidInput(f"--hosts must be 1..{MAX_HOSTS}, not {hosts}", field="hosts")
    if not 0 <= vms_per_host <= MAX_VMS_PER_HOST:
        raise InvalidInput(
            f"--vms-per-host must be 0..{MAX_VMS_PER_HOST}, not {vms_per_host}",
            field="vms_per_host",
        )
    room = TENANT_NET.num_addresses - VM_IP_BASE - 1
    if hosts * vms_per_host > room:
        raise InvalidInput(
            f"{hosts * vms_per_host} VMs do not fit {TENANT_NET} (at most {room})",
            field="vms_per_host",
        )


def _agent_help(command: list[str]) -> str | None:
    """``<command> --help`` output when the command exists, else None."""
    try:
        done = subprocess.run(
            [*command, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "200"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _declares(help_text: str, option: str) -> bool:
    return any(tok.strip("│ ,[]") == option for tok in help_text.split())


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _remove_tree(path: Path) -> bool:
    """Remove a directory tree (bpffs pins are unlinked like files); False if it was gone."""
    if not path.exists():
        return False
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    if path.exists():
        raise DatapathError(f"cannot remove {path}")
    return True


def down(name: str, root: Path | None = None) -> list[str]:
    """Tear down lab ``name``; a lab with no state file is already down (returns [])."""
    try:
        lab = Lab.load(name, root)
    except NotFound:
        return []
    return lab.down()


@contextlib.contextmanager
def running_lab(hosts: int, vms_per_host: int, **kwargs: Any) -> Iterator[Lab]:
    """``with running_lab(2, 2) as lab:`` a lab that is torn down however the block ends."""
    static_ip = kwargs.pop("static_ip", True)
    lab = Lab.create(**kwargs)
    try:
        lab.up(hosts, vms_per_host, static_ip=static_ip)
        yield lab
    finally:
        lab.down()


def labs(root: Path | None = None) -> list[str]:
    return list_labs(root)


__all__ = [
    "API_PORT",
    "SWITCH_IP",
    "TOPOLOGY_PORT",
    "VM",
    "Lab",
    "NetnsApiClient",
    "down",
    "host_ip",
    "host_name",
    "labs",
    "running_lab",
    "vm_mac",
]
