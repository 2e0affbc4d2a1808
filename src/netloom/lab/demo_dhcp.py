"""The demo's DHCP step: busybox ``udhcpc`` in every VM, answered by the agents' simulation,
and the check that the kernel now has the address, MTU and route the subnet defines."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from netloom.errors import DemoStepFailed
from netloom.lab import nsexec
from netloom.lab.demo_plan import DHCP_TIMEOUT
from netloom.lab.demo_report import VmResult

if TYPE_CHECKING:
    from netloom.lab.demo import Demo

# udhcpc runs this instead of its default script, which would rewrite the host's resolv.conf:
# only the VM's own interface, routes and MTU are touched, and the lease's options are written
# to $NETLOOM_LEASE so the demo can show what the DHCP server (the agent) answered.
UDHCPC_SCRIPT = r"""#!/bin/sh
# netloom demo: udhcpc hook configuring only the VM's interface (no resolv.conf change)
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$mtu" ]; then ip link set "$interface" mtu "$mtu"; fi
    if [ -n "$staticroutes" ]; then
      # RFC 3442: with option 121 present the client ignores option 3 (router)
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        if [ "$2" = "0.0.0.0" ]; then ip route replace "$1" dev "$interface"
        else ip route replace "$1" via "$2" dev "$interface"; fi
        shift 2
      done
    elif [ -n "$router" ]; then
      for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    fi
    {
      echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "mtu=$mtu"
      echo "serverid=$serverid"; echo "lease=$lease"; echo "staticroutes=$staticroutes"
    } > "$NETLOOM_LEASE"
    ;;
esac
exit 0
"""


def step_dhcp(demo: Demo) -> str:
    """All clients at once (each retries DISCOVER every second), then check that the
    address, the MTU and the default route the kernel now has are the ones the subnet
    defines."""
    script = demo.lab.dir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    procs: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
    try:
        for key, v in demo.vms.items():
            lease = demo.lab.dir / f"lease-{v.name}"
            lease.unlink(missing_ok=True)
            argv = [
                "udhcpc",
                "-f",
                "-q",
                "-n",
                "-i",
                "eth0",
                "-t",
                str(int(DHCP_TIMEOUT)),
                "-T",
                "1",
                "-s",
                str(script),
                "-O",
                "mtu",
                "-O",
                "staticroutes",
            ]
            env = {**os.environ, "NETLOOM_LEASE": str(lease)}
            proc = nsexec.popen(
                v.netns, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            procs[key] = (proc, lease, time.monotonic())
        for key, (proc, lease, t0) in procs.items():
            await_lease(demo, demo.vms[key], proc, lease, t0)
    finally:
        for proc, _, _ in procs.values():
            stop(proc)
    return "\n".join(
        f"{v.name:7s} {v.dhcp_ip}/{v.dhcp.get('mask')} router {v.dhcp.get('router')} "
        f"mtu {v.mtu} from server {v.dhcp.get('serverid')} in {v.dhcp_ms:.0f} ms"
        for v in demo.vms.values()
    )


def await_lease(
    demo: Demo, v: VmResult, proc: subprocess.Popen[bytes], lease: Path, t0: float
) -> None:
    try:
        out, _ = proc.communicate(timeout=DHCP_TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        raise DemoStepFailed(f"udhcpc in {v.name} got no lease in {DHCP_TIMEOUT:.0f} s") from None
    if proc.returncode != 0 or not lease.exists():
        text = " | ".join(out.decode(errors="replace").strip().splitlines()[-4:])
        raise DemoStepFailed(f"udhcpc in {v.name} exited {proc.returncode} without a lease: {text}")
    v.dhcp_ms = (time.monotonic() - t0) * 1000
    v.dhcp = dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)
    v.dhcp_ip, v.mtu = _vm_address(v.netns)
    if v.dhcp_ip != v.expected_ip:
        raise DemoStepFailed(f"{v.name} got {v.dhcp_ip}, its port says {v.expected_ip}")
    if v.mtu != demo.lab.vm_mtu:
        raise DemoStepFailed(
            f"{v.name} has MTU {v.mtu} after DHCP, the subnet says {demo.lab.vm_mtu} (option 26)"
        )
    gw = demo.nets[v.network].gateway
    if f"default via {gw}" not in nsexec.run(v.netns, ["ip", "-4", "route"]).stdout:
        raise DemoStepFailed(f"{v.name} has no default route via {gw} after DHCP")
    record_vm(demo, v)


def record_vm(demo: Demo, v: VmResult) -> None:
    """Write the VM's leased address and port into the lab's state, so ``netloom lab
    status`` shows them and ``lab exec`` finds the VM by address after ``--keep``."""
    rec = next(r for r in demo.lab.state.vms if r.name == v.name)
    rec.ip = f"{v.dhcp_ip}/{v.dhcp.get('mask') or 24}"
    rec.port_id = v.port_id
    demo.lab.save()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def _vm_address(ns: str) -> tuple[str | None, int | None]:
    """(IPv4 address, MTU) of the VM's eth0 as the kernel has them."""
    out = nsexec.run(ns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    links = json.loads(out or "[]")
    if not links:
        return None, None
    addrs = [a["local"] for a in links[0].get("addr_info", []) if a.get("family") == "inet"]
    return (addrs[0] if addrs else None), links[0].get("mtu")


__all__ = ["UDHCPC_SCRIPT", "step_dhcp", "stop"]
