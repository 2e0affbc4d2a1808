"""The lab's status as a JSON-able view (``netloom lab status``): what exists, what runs, and
what the cluster says about the hosts."""

from __future__ import annotations

from typing import Any

from netloom.lab import cluster, netns, supervisor
from netloom.lab.state import StateFile


def status(sf: StateFile, vm_mtu: int) -> dict[str, Any]:
    """What exists, what runs, and what the cluster says about hosts."""
    s = sf.state
    alive_hosts = cluster.hosts_alive(s.cluster)
    procs = [{**p.model_dump(), "alive": supervisor.alive(p)} for p in s.processes]
    return {
        "name": s.name,
        "phase": s.phase,
        "error": s.error,
        "mtu": s.mtu,
        "vm_mtu": vm_mtu,
        "store": s.store,
        "tx_off": s.tx_off,
        "state_file": str(sf.path),
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
        "outside": None if s.outside is None else s.outside.model_dump(),
        "uplinks": [u.model_dump() for u in s.uplinks],
        "processes": procs,
        "topology": dict(s.topology),
    }


__all__ = ["status"]
