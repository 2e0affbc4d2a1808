"""Rule conditions compiled to closures, and connection tracking (a condition's test).

A rule matches when all its set conditions hold (each optionally inverted), the whole
conjunction inverted by ``inv_all``. Each condition is compiled once per rule version into a
closure over the packet's :class:`~netloom.sim.context.Ctx` that records the fields it read
(the megaflow mask) and the objects it looked at (the flow tags). A compiled rule keeps the
name of the field each closure tests, so a trace can say which one a packet failed
(:func:`explain`).

Connection tracking: the first conntrack condition a packet meets at a device (its *zone*)
decides whether it is a forward flow (no tracked connection in the reverse direction) or a
return flow. Forward flows record their key as a state change, so their replies are return
flows; an ICMP error quoting a tracked packet counts as return (related) traffic.

With ``SimConfig.kernel_conntrack`` the datapath's conntrack decides instead, from the
packet's ``ct_state`` (a field of the megaflow, not the 5-tuple): CT_RPL is return traffic,
and a new forward connection makes the flow commit it (``Result.ct_commit``). ICMP errors and
untracked packets (ct_state 0) keep the agent's table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from netloom.errors import NotYet
from netloom.flows.model import CT_NEW, CT_REL, CT_RPL
from netloom.model import addressing
from netloom.model.records import Rule, RuleAction
from netloom.packet.util import int_to_ip, int_to_mac, ip_to_int, mac_to_int, prefix
from netloom.sim.result import (
    F_5TUPLE,
    F_CT_STATE,
    F_ETH_DST,
    F_ETH_SRC,
    F_ETH_TYPE,
    F_IP_DST,
    F_IP_FRAG,
    F_IP_PROTO,
    F_IP_SRC,
    F_TP_DST,
    F_TP_SRC,
)
from netloom.sim.state import ConntrackAdded

if TYPE_CHECKING:
    from netloom.sim.context import Ctx

ACCEPT = 0
DROP = 1
REJECT = 2
FALLTHROUGH = 3  # return / end of a jumped-to chain

Cond = Callable[["Ctx"], bool]

_ACTIONS = {
    RuleAction.ACCEPT: 0,
    RuleAction.DROP: 1,
    RuleAction.REJECT: 2,
    RuleAction.JUMP: 3,
    RuleAction.RETURN: 4,
    RuleAction.CONTINUE: 5,
    RuleAction.SNAT: 6,
    RuleAction.DNAT: 7,
    RuleAction.REV_SNAT: 8,
    RuleAction.REV_DNAT: 9,
}
A_JUMP, A_RETURN, A_CONTINUE, A_SNAT, A_DNAT, A_REV_SNAT, A_REV_DNAT = 3, 4, 5, 6, 7, 8, 9
_VERDICT_NAMES = {ACCEPT: "accept", DROP: "drop", REJECT: "reject"}


class CRule:
    __slots__ = (
        "action",
        "action_name",
        "conds",
        "fields",
        "id",
        "inv_all",
        "jump",
        "name",
        "position",
        "static",
        "targets",
        "title",
    )

    def __init__(self, r: Rule, conds: tuple[Cond, ...], fields: tuple[str, ...]) -> None:
        self.id = r.id
        self.name = r.name
        self.position = r.position
        self.action = _ACTIONS[r.action]
        self.action_name = r.action.value
        self.jump = r.jump_chain_id
        self.inv_all = r.inv_all
        self.conds = conds
        self.fields = fields  # the rule field each condition tests
        self.static = r.static
        self.title = self.label("")  # set by the chain that holds it
        # (ip_from, ip_to, port_from, port_to)
        self.targets = tuple(
            (ip_to_int(t.address_from), ip_to_int(t.address_to), t.port_from, t.port_to)
            for t in r.nat_targets
        )

    def matches(self, ctx: Ctx) -> bool:
        for c in self.conds:
            if not c(ctx):
                return self.inv_all
        return not self.inv_all

    def label(self, chain: str) -> str:
        """``chain #position name``: how a trace names the rule."""
        head = f"{chain} #{self.position}".lstrip()
        return f"{head} {self.name}" if self.name else head


def explain(rule: CRule, c: Ctx) -> str:
    """Evaluate ``rule`` like :meth:`CRule.matches`; "" when it matches, else why not: the
    first condition the packet failed, with the packet's value of that field."""
    for cond, field in zip(rule.conds, rule.fields, strict=True):
        if not cond(c):
            return "" if rule.inv_all else f"{field} differs (packet: {_value(c, field)})"
    return "inv_all: every condition matched" if rule.inv_all else ""


def _value(c: Ctx, field: str) -> str:
    """The packet's value of what rule ``field`` tests, readable."""
    if field.startswith(("in_port", "out_port")):
        port = c.in_port if field.startswith("in_") else c.out_port
        return port.label() if port is not None else "none"
    if field.endswith("_src") or field.endswith("group_src_id"):
        if field == "tp_src":
            return str(c.tp_src)
        if field == "dl_src":
            return int_to_mac(c.eth_src)
        return int_to_ip(c.ip_src) if c.is_ip else "not IP"
    if field.endswith("_dst") or field.endswith("group_dst_id"):
        if field == "tp_dst":
            return str(c.tp_dst)
        if field == "dl_dst":
            return int_to_mac(c.eth_dst)
        return int_to_ip(c.ip_dst) if c.is_ip else "not IP"
    if field == "nw_proto":
        return str(c.proto) if c.is_ip else "not IP"
    if field == "ethertype":
        return f"0x{c.eth_type:04x}"
    return "return flow" if field == "match_forward_flow" else "forward flow"


# ---- condition compilation -------------------------------------------------------------------


def compile_rule(r: Rule) -> CRule:
    """Turn a rule record into closures, one per set condition, in a fixed order."""
    conds: list[tuple[str, Cond]] = []
    if r.in_port_ids:
        conds.append(("in_port_ids", _in_ports(frozenset(r.in_port_ids), r.inv_in_ports)))
    if r.out_port_ids:
        conds.append(("out_port_ids", _out_ports(frozenset(r.out_port_ids), r.inv_out_ports)))
    if r.in_port_group_id:
        conds.append(("in_port_group_id", _in_group(r.in_port_group_id, r.inv_in_port_group)))
    if r.out_port_group_id:
        conds.append(("out_port_group_id", _out_group(r.out_port_group_id, r.inv_out_port_group)))
    if r.ethertype is not None:
        conds.append(("ethertype", _ethertype(r.ethertype, r.inv_ethertype)))
    if r.dl_src is not None:
        conds.append(("dl_src", _dl(mac_to_int(r.dl_src), r.inv_dl_src, src=True)))
    if r.dl_dst is not None:
        conds.append(("dl_dst", _dl(mac_to_int(r.dl_dst), r.inv_dl_dst, src=False)))
    if r.nw_proto is not None:
        conds.append(("nw_proto", _nw_proto(r.nw_proto, r.inv_nw_proto)))
    if r.nw_src is not None:
        conds.append(("nw_src", _nw(r.nw_src, r.inv_nw_src, src=True)))
    if r.nw_dst is not None:
        conds.append(("nw_dst", _nw(r.nw_dst, r.inv_nw_dst, src=False)))
    if r.ip_addr_group_src_id:
        group = _addr_group(r.ip_addr_group_src_id, r.inv_ip_addr_group_src, src=True)
        conds.append(("ip_addr_group_src_id", group))
    if r.ip_addr_group_dst_id:
        group = _addr_group(r.ip_addr_group_dst_id, r.inv_ip_addr_group_dst, src=False)
        conds.append(("ip_addr_group_dst_id", group))
    if r.remote_group_src_id:  # a port group's addresses: its address group (derived id)
        gid = addressing.group_addresses_id(r.remote_group_src_id)
        group = _addr_group(gid, r.inv_remote_group_src, src=True)
        conds.append(("remote_group_src_id", group))
    if r.remote_group_dst_id:
        gid = addressing.group_addresses_id(r.remote_group_dst_id)
        group = _addr_group(gid, r.inv_remote_group_dst, src=False)
        conds.append(("remote_group_dst_id", group))
    if r.tp_src is not None:
        conds.append(("tp_src", _tp(r.tp_src.start, r.tp_src.end, r.inv_tp_src, src=True)))
    if r.tp_dst is not None:
        conds.append(("tp_dst", _tp(r.tp_dst.start, r.tp_dst.end, r.inv_tp_dst, src=False)))
    if r.match_forward_flow or r.match_return_flow:
        ct = "match_forward_flow" if r.match_forward_flow else "match_return_flow"
        conds.append((ct, _conntrack(forward=r.match_forward_flow)))
    return CRule(r, tuple(c for _, c in conds), tuple(f for f, _ in conds))


def _in_ports(ids: frozenset[str], inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        return (c.in_port is not None and c.in_port.id in ids) != inv

    return cond


def _out_ports(ids: frozenset[str], inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        return (c.out_port is not None and c.out_port.id in ids) != inv

    return cond


def _in_group(gid: str, inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        c.tags.add(gid)
        return (c.in_port is not None and gid in c.in_port.groups) != inv

    return cond


def _out_group(gid: str, inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        c.tags.add(gid)
        return (c.out_port is not None and gid in c.out_port.groups) != inv

    return cond


def _ethertype(v: int, inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        c.read |= F_ETH_TYPE
        return (c.eth_type == v) != inv

    return cond


def _dl(mac: int, inv: bool, src: bool) -> Cond:
    if src:

        def cond_src(c: Ctx) -> bool:
            c.read |= F_ETH_SRC
            return (c.eth_src == mac) != inv

        return cond_src

    def cond_dst(c: Ctx) -> bool:
        c.read |= F_ETH_DST
        return (c.eth_dst == mac) != inv

    return cond_dst


def _nw_proto(v: int, inv: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        c.read |= F_ETH_TYPE | F_IP_PROTO
        return (c.is_ip and c.proto == v) != inv

    return cond


def _nw(cidr: str, inv: bool, src: bool) -> Cond:
    net, mask, _ = prefix(cidr)
    if src:

        def cond_src(c: Ctx) -> bool:
            c.read |= F_ETH_TYPE | F_IP_SRC
            return (c.is_ip and c.ip_src & mask == net) != inv

        return cond_src

    def cond_dst(c: Ctx) -> bool:
        c.read |= F_ETH_TYPE | F_IP_DST
        return (c.is_ip and c.ip_dst & mask == net) != inv

    return cond_dst


def _addr_group(gid: str, inv: bool, src: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        c.tags.add(gid)
        group = c.topo.addr_group(gid)
        if group is None:
            raise NotYet(("ip_addr_group", gid))
        c.read |= F_ETH_TYPE | (F_IP_SRC if src else F_IP_DST)
        return (c.is_ip and (c.ip_src if src else c.ip_dst) in group) != inv

    return cond


def _tp(lo: int, hi: int, inv: bool, src: bool) -> Cond:
    # only the port tested (and what says there is one): a rule on the destination port
    # leaves the client's port out of the megaflow, so every connection shares the flow
    read = F_ETH_TYPE | F_IP_PROTO | F_IP_FRAG | (F_TP_SRC if src else F_TP_DST)

    def cond(c: Ctx) -> bool:
        c.read |= read
        if not c.is_ip or c.frame.l4 is None:
            return inv
        v = c.tp_src if src else c.tp_dst
        return (lo <= v <= hi) != inv

    return cond


def _conntrack(forward: bool) -> Cond:
    def cond(c: Ctx) -> bool:
        return is_forward(c) == forward

    return cond


# ---- connection tracking ---------------------------------------------------------------------


def is_forward(c: Ctx) -> bool:
    """Forward or return flow at zone ``c.zone`` (see module docstring). Non-IP is forward."""
    c.read |= F_ETH_TYPE
    if not c.is_ip:
        return True
    if c.cfg.kernel_conntrack and c.ct_state and c.inner is None:
        return _kernel_forward(c)
    c.read |= F_5TUPLE
    zone = c.zone
    if c.inner is not None:  # ICMP error: related to the connection of the quoted packet
        c.cacheable = False
        if c.ct_state & CT_REL:  # the datapath tracks the quoted connection (see CT_REL)
            c.step("conntrack", zone, "", "return", "related: datapath")
            return False
        p, s, sp, d, dp = c.inner
        if p == 1:
            sp = dp = 0
        key = ("ct", zone, p, s, sp, d, dp)
        c.tags.add(key)
        return not _live(c, key)
    if c.proto == 1:
        sport = dport = 0  # ICMP: tracked per address pair (the echo id is not a flow field)
    elif c.frame.l4 is None:
        sport = dport = 0
    else:
        sport, dport = c.tp_src, c.tp_dst
    fwd = ("ct", zone, c.proto, c.ip_src, sport, c.ip_dst, dport)
    seen = c.ct_seen.get(fwd)
    if seen is not None:
        return seen
    rev = ("ct", zone, c.proto, c.ip_dst, dport, c.ip_src, sport)
    c.tags.add(rev)
    forward = not _live(c, rev)
    c.ct_seen[fwd] = forward
    if forward:
        c.changes.append(ConntrackAdded(fwd, c.now + c.cfg.conntrack_timeout_s))
        c.step("conntrack", zone, "", "forward", "new key")
    else:
        c.step("conntrack", zone, "", "return", "")
    return forward


def _kernel_forward(c: Ctx) -> bool:
    """The datapath's conntrack decides (its zone is the port the packet entered at): a
    reply entry means return traffic; anything else is forward, and a new connection is
    committed by the flow (the receiver commits the reply direction), not by the agent."""
    c.read |= F_CT_STATE
    forward = not c.ct_state & CT_RPL
    if forward and c.ct_state & CT_NEW:
        if not c.ct_commit:
            c.step("conntrack", c.zone, "", "forward", "new: committed in the datapath")
        c.ct_commit = True
    else:
        c.step("conntrack", c.zone, "", "forward" if forward else "return", "datapath")
    return forward


def _live(c: Ctx, key: tuple[str, str, int, int, int, int, int]) -> bool:
    exp = c.state.conntrack.get(key)
    return exp is not None and exp > c.now


def verdict_name(v: int) -> str:
    return _VERDICT_NAMES.get(v, "accept")


__all__ = [
    "ACCEPT",
    "A_CONTINUE",
    "A_DNAT",
    "A_JUMP",
    "A_RETURN",
    "A_REV_DNAT",
    "A_REV_SNAT",
    "A_SNAT",
    "DROP",
    "FALLTHROUGH",
    "REJECT",
    "CRule",
    "Cond",
    "compile_rule",
    "explain",
    "is_forward",
    "verdict_name",
]
