"""Where flow state goes: the hosts that must know a connection before its packet arrives.

Conntrack/NAT entries go to the hosts the packet is sent to, before the packet: the reply is
simulated there and must see the connection (flow state between hosts).
"""

from __future__ import annotations

from collections.abc import Iterable

from netloom.agent.view import AgentView, Interest
from netloom.model.records import Port, PortGroup
from netloom.sim import Result
from netloom.sim.state import ConntrackAdded, NatAdded, StateChange


def push_keys(r: Result) -> tuple[StateChange, ...]:
    """The state changes of ``r`` that peers must know: new connections and NAT mappings."""
    return tuple(c for c in r.changes if isinstance(c, (ConntrackAdded, NatAdded)))


def push_hosts(view: AgentView, host_id: str, r: Result) -> set[str]:
    """The other hosts ``r`` sends to, and those sharing a stateful port group with its ports."""
    sent = sent_to(r)
    hosts = {h for h in (_remote_host(view, host_id, pid) for pid in sent) if h}
    hosts |= stateful_group_hosts(view, host_id, (r.in_port_id, *sent))
    return hosts


def sent_to(r: Result) -> tuple[str, ...]:
    """The ports ``r`` sends to: its outputs, and the ports of the packets it generated (a
    packet the datapath cannot rewrite, an ICMP echo whose id NAT changed, is sent as one)."""
    return (*r.outputs, *(g.port_id for g in r.generated))


def _remote_host(view: AgentView, host_id: str, port_id: str) -> str | None:
    rec = view.peek("port", port_id)
    if isinstance(rec, Port) and rec.host_id and rec.host_id != host_id:
        return rec.host_id
    return None


def group_interests(view: AgentView, bound: Iterable[str]) -> set[Interest]:
    """What the agent follows for the port groups of its ``bound`` ports: each group's record
    and, for the stateful ones, their member ports."""
    groups: set[str] = set()
    for pid in bound:
        rec = view.peek("port", pid)
        if isinstance(rec, Port):
            groups.update(rec.port_group_ids)
    want = {Interest.obj("port_group", g) for g in groups}
    for g in groups:
        group = view.peek("port_group", g)
        if isinstance(group, PortGroup) and group.stateful:
            want.add(Interest.where("port", "port_group_ids", g))
    return want


def missing_groups(view: AgentView, r: Result) -> list[Interest]:
    """What the agent must load before it can send ``r``'s flow state to every host that needs
    it: the port groups of its ports not known yet and the members of the stateful ones (a
    compute host's reply to the internet leaves by an uplink whose group, the gateways, it has
    never loaded; the reply to the reply may come back through any of them)."""
    if not push_keys(r):
        return []
    need: list[Interest] = []
    for pid in dict.fromkeys((r.in_port_id, *sent_to(r))):
        rec = view.peek("port", pid)
        for gid in rec.port_group_ids if isinstance(rec, Port) else ():
            group, record = view.peek("port_group", gid), Interest.obj("port_group", gid)
            if not view.is_loaded(record):
                need.append(record)
            elif (
                isinstance(group, PortGroup) and group.stateful and view.group_members(gid) is None
            ):
                need.append(Interest.where("port", "port_group_ids", gid))
    return need


def stateful_group_hosts(view: AgentView, host_id: str, port_ids: Iterable[str]) -> set[str]:
    """The other hosts with a port in a stateful port group of one of ``port_ids``.

    A stateful group says its members share connection state: the reply (or a later
    packet of the connection) may arrive through any member's host, e.g. after a VM
    moved or behind an anycast/ECMP address, so each of those hosts gets the keys too
    (flow state between hosts). Members come from the view's ``port_group_ids`` filter, loaded by
    the agent for the groups of this host's bound ports; a group not loaded
    yet (only a remote port's) is skipped rather than guessed."""
    hosts: set[str] = set()
    for pid in dict.fromkeys(port_ids):
        rec = view.peek("port", pid)
        if not isinstance(rec, Port):
            continue
        for gid in rec.port_group_ids:
            group = view.peek("port_group", gid)
            if not isinstance(group, PortGroup) or not group.stateful:
                continue
            for member in view.group_members(gid) or ():
                if member.host_id and member.host_id != host_id:
                    hosts.add(member.host_id)
    return hosts


__all__ = [
    "group_interests",
    "missing_groups",
    "push_hosts",
    "push_keys",
    "sent_to",
    "stateful_group_hosts",
]
