"""Booting a VM on a port the way Nova and os-vif do: the port (a Neutron port is a native
port with the same id) gives the MAC, the host side of the VM's veth is named ``tap`` + the
first 11 characters of the port id (what Neutron binds it to, ``binding:host_id`` naming the
host), and the VM takes its address by DHCP from the agent, as a cloud image does. Deleting
the VM removes its namespace, and with it the tap: the agent then reports the port unplugged.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from netloom.api.neutron.ports import tap_name
from netloom.errors import InvalidInput, LabError, NotFound
from netloom.lab import netns, nsexec
from netloom.lab.demo_dhcp import UDHCPC_SCRIPT, stop
from netloom.lab.plumbing import Plumbing
from netloom.lab.state import HostRecord, StateFile, VmRecord

DHCP_TIMEOUT_S = 20.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")

__all__ = ["DHCP_TIMEOUT_S", "boot", "dhcp", "remove"]


def boot(
    sf: StateFile, plumbing: Plumbing, host: HostRecord, port: dict[str, object], name: str
) -> VmRecord:
    """Plug a VM for native ``port`` on ``host``: namespace ``<lab>-<host>-<name>``, ``eth0``
    with the port's MAC, its peer ``tap…`` in the host."""
    if not _NAME.match(name):
        raise InvalidInput(f"VM name {name!r}: lowercase letters, digits, '-'", field="name")
    port_id, mac = str(port["id"]), port.get("mac")
    if not isinstance(mac, str):
        raise InvalidInput(f"port {port_id} has no MAC: not a VM's port", field="port")
    s = sf.state
    short = f"{host.short}-{name}"
    for v in s.vms:
        if v.name == short or v.port_id == port_id:
            raise InvalidInput(f"lab {s.name} already has VM {v.name} ({v.port_id})", field="name")
    rec = VmRecord(
        name=short,
        netns=f"{s.name}-{short}",
        host=host.name,
        host_if=netns.check_ifname(tap_name(port_id)),
        vm_if="eth0",
        mac=mac,
        port_id=port_id,
    )
    s.vms.append(rec)
    sf.save()
    plumbing.vm(rec)
    return rec


def dhcp(sf: StateFile, rec: VmRecord, timeout: float = DHCP_TIMEOUT_S) -> str:
    """Run busybox ``udhcpc`` in the VM until it has a lease (the agent answers); the
    address/prefix it got, recorded in the lab's state."""
    lab_dir = Path(sf.state.dir)
    script, lease = lab_dir / "udhcpc.sh", lab_dir / f"lease-{rec.name}"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    lease.unlink(missing_ok=True)
    argv = ["udhcpc", "-f", "-q", "-n", "-i", rec.vm_if, "-t", str(int(timeout)), "-T", "1"]
    argv += ["-s", str(script), "-O", "mtu", "-O", "staticroutes"]
    env = {**os.environ, "NETLOOM_LEASE": str(lease)}
    proc = nsexec.popen(rec.netns, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        raise LabError(f"VM {rec.name} got no DHCP lease in {timeout:.0f} s") from None
    finally:
        stop(proc)
    if proc.returncode != 0 or not lease.exists():
        text = " | ".join(out.decode(errors="replace").strip().splitlines()[-3:])
        raise LabError(f"VM {rec.name}: no DHCP lease (udhcpc exited {proc.returncode}): {text}")
    got = dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)
    rec.ip = f"{got['ip']}/{got.get('mask') or 24}"
    sf.save()
    return rec.ip


def remove(sf: StateFile, name: str) -> VmRecord:
    """Delete VM ``name`` (its short name or namespace) and its tap."""
    s = sf.state
    rec = next((v for v in s.vms if name in (v.name, v.netns)), None)
    if rec is None:
        raise NotFound(f"lab {s.name} has no VM {name}", field="vm")
    netns.delete(rec.netns)
    s.vms.remove(rec)
    if rec.netns in s.netns:
        s.netns.remove(rec.netns)
    sf.save()
    return rec
