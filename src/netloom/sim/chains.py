"""Rule chains: evaluation, jump/return and NAT.

Semantics follow MidoNet's: rules run in position order; a rule matches when all its set
conditions hold (:mod:`netloom.sim.conditions`). ``accept``/``drop``/``reject`` end the
evaluation, ``jump`` runs another chain and comes back unless that chain decided, ``return``
goes back to the caller, ``continue`` goes on. NAT rules translate and accept; reverse-NAT
rules translate when a binding exists, else continue. Falling off the end of the top chain
accepts. Jumps are bounded by a depth and a cycle guard. The trace names each rule that acted
by chain, position and name; with ``SimConfig.explain`` it also says, for each rule that did
not match, the first condition the packet failed.

A chain is not walked rule by rule: its index (:mod:`netloom.sim.chainindex`) leaves only the
rules the packet can match, which run in the same order, so the cost stays about flat as a
chain grows. ``explain`` walks every rule (what-if traces name each rule's failed condition).

Static NAT (``Rule.static``, MidoNet's StaticDnatRule/StaticSnatRule: a floating IP) maps one
address 1:1: the rule rewrites the address and records nothing, reading only what its
conditions read plus the field it rewrites, so one megaflow covers every connection (the
stateful rules read the whole 5-tuple and record a binding per connection). Replies need no
binding: the opposite static rule (DNAT FIP -> private on the way in, SNAT private -> FIP on
the way out) translates them. A reverse-NAT rule at a device (zone) where no stateful NAT rule
of its kind can run has nothing to look up, so it reads nothing and continues.

Only a NAT binding made or found puts the packet's connection tracking in the agent's table
(``Ctx.nat_state``: simulated again without the datapath's conntrack). A reverse lookup that
finds nothing does not: a floating IP's connection out meets the router's reverse SNAT on its
way out but its reply meets only the static DNAT, and is judged by the datapath's conntrack,
which must then have committed the connection.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import TYPE_CHECKING

from netloom.errors import NotYet
from netloom.packet.util import int_to_ip
from netloom.sim.conditions import (
    A_CONTINUE,
    A_DNAT,
    A_JUMP,
    A_RETURN,
    A_REV_SNAT,
    A_SNAT,
    ACCEPT,
    DROP,
    FALLTHROUGH,
    REJECT,
    CRule,
    explain,
)
from netloom.sim.result import F_5TUPLE, F_ETH_TYPE, F_IP_DST, F_IP_SRC
from netloom.sim.state import DNAT_FWD, DNAT_REV, SNAT_FWD, SNAT_REV, NatAdded

if TYPE_CHECKING:
    from netloom.sim.compiled import CChain
    from netloom.sim.context import Ctx


# ---- evaluation ------------------------------------------------------------------------------


def run_chain(c: Ctx, chain_id: str, zone: str) -> int:
    """Evaluate chain ``chain_id`` at ``zone``; returns ACCEPT, DROP or REJECT."""
    c.zone = zone
    verdict = _run(c, chain_id, [])
    return ACCEPT if verdict == FALLTHROUGH else verdict


def _run(c: Ctx, chain_id: str, stack: list[str]) -> int:
    chain = c.topo.chain(chain_id)
    c.tags.add(chain_id)
    if chain is None:
        raise NotYet(("chain", chain_id))
    if chain_id in stack:
        c.step("chain", chain_id, chain.name, "drop", "jump loop")
        return DROP
    if len(stack) >= c.cfg.max_chain_depth:
        c.step("chain", chain_id, chain.name, "drop", "chain depth bound")
        return DROP
    stack.append(chain_id)
    try:
        if c.cfg.explain:
            return _walk_explained(c, chain, stack)
        if chain.index.useful:
            return _walk_indexed(c, chain, stack)
        for rule in chain.rules:
            if rule.matches(c):
                v = _apply(c, chain, rule, stack)
                if v is not None:
                    return v
        return FALLTHROUGH
    finally:
        stack.pop()


def _walk_indexed(c: Ctx, chain: CChain, stack: list[str]) -> int:
    """The rules the chain's index leaves as candidates, in evaluation order (the others
    cannot match: see :mod:`netloom.sim.chainindex`). Headers do not change while a chain
    goes on (a rewriting rule ends it), so a family's lookup holds until the end."""
    heap = chain.index.seed.copy()
    rules = chain.rules
    while heap:
        ordinal, family = heappop(heap)
        if family is not None:
            for item in family.expand(c):
                heappush(heap, item)
            continue
        rule = rules[ordinal]
        if rule.matches(c):
            v = _apply(c, chain, rule, stack)
            if v is not None:
                return v
    return FALLTHROUGH


def _walk_explained(c: Ctx, chain: CChain, stack: list[str]) -> int:
    """Every rule in turn, each rule that does not match with the first condition it failed
    (what-if traces: the flow of such a walk is never installed)."""
    for rule in chain.rules:
        why = explain(rule, c)
        if why:
            c.step("rule", rule.id, rule.title, "no-match", why)
            continue
        v = _apply(c, chain, rule, stack)
        if v is not None:
            return v
    return FALLTHROUGH


def _apply(c: Ctx, chain: CChain, rule: CRule, stack: list[str]) -> int | None:
    """Run a matched rule; None means "go on with the next rule"."""
    a = rule.action
    if a <= REJECT:
        c.step("rule", rule.id, rule.title, rule.action_name)
        return a
    if a == A_JUMP:
        assert rule.jump is not None
        c.step("rule", rule.id, rule.title, "jump", rule.jump)
        v = _run(c, rule.jump, stack)
        return None if v == FALLTHROUGH else v
    if a == A_RETURN:
        c.step("rule", rule.id, rule.title, "return")
        return FALLTHROUGH
    if a == A_CONTINUE:
        c.step("rule", rule.id, rule.title, "continue")
        return None
    done = _nat(c, rule, a)
    if not done:
        if c.cfg.explain:
            c.step("rule", rule.id, rule.title, "no-match", "no NAT binding to reverse")
        return None
    c.step("rule", rule.id, rule.title, rule.action_name, done)
    return ACCEPT


# ---- NAT -------------------------------------------------------------------------------------


def _nat(c: Ctx, rule: CRule, a: int) -> str:
    """Apply a NAT rule; returns a description of the rewrite, or "" when nothing applied."""
    c.read |= F_ETH_TYPE
    if not c.is_ip:
        return ""
    if a in (A_DNAT, A_SNAT):
        if rule.static:
            return _static(c, rule, a == A_SNAT)
    elif not c.topo.zone_nat(c.zone, A_SNAT if a == A_REV_SNAT else A_DNAT, c.tags):
        return ""  # no stateful rule of the kind can bind at this zone: no binding to look up
    c.read |= F_5TUPLE | F_ETH_TYPE
    if a in (A_DNAT, A_SNAT):
        c.nat_state = True  # the binding lives in the agent, so must the connection's tracking
        return _dnat(c, rule) if a == A_DNAT else _snat(c, rule)
    done = _reverse(c, SNAT_REV if a == A_REV_SNAT else DNAT_REV)
    # a reverse lookup that found nothing makes no NAT reply of the packet (the key it read
    # tags the flow: a binding made later re-simulates it)
    c.nat_state = c.nat_state or bool(done)
    return done


def _static(c: Ctx, rule: CRule, src: bool) -> str:
    """Static 1:1 NAT: set the source (SNAT) or destination (DNAT) address, no state.

    The rewritten field is read (the mask includes it) because the datapath action is the
    difference between the packet's and the final headers: a packet that already carries the
    target address gets no set action, so its flow must not cover other addresses. An ICMP
    error (RFC 792) crossing the mapping gets its quote translated the other way round: after
    SNAT private -> FIP of an error the private host sent, the quoted packet was addressed to
    the private address and must name the FIP; after DNAT FIP -> private of an error sent to
    the FIP, the quoted packet came from the FIP and must name the private address.
    """
    new = rule.targets[0][0]
    c.read |= F_ETH_TYPE | (F_IP_SRC if src else F_IP_DST)
    old = c.ip_src if src else c.ip_dst
    if c.inner is not None:
        c.cacheable = False
        p, s, sp, d, dp = c.inner
        if src and d == old:
            c.inner = (p, s, sp, new, dp)
        elif not src and s == old:
            c.inner = (p, new, sp, d, dp)
    if src:
        c.ip_src = new
        return f"static src -> {int_to_ip(new)}"
    c.ip_dst = new
    return f"static dst -> {int_to_ip(new)}"


def _binding(c: Ctx, key: tuple[str, str, int, int, int, int, int]) -> tuple[int, int] | None:
    c.tags.add(key)
    got = c.state.nat.get(key)
    if got is None or got[2] <= c.now:
        return None
    return got[0], got[1]


def _record(
    c: Ctx,
    fwd: tuple[str, str, int, int, int, int, int],
    rev: tuple[str, str, int, int, int, int, int],
    new: tuple[int, int],
    orig: tuple[int, int],
) -> None:
    exp = c.now + c.cfg.nat_timeout_s
    c.changes.append(NatAdded(fwd, new[0], new[1], exp))
    c.changes.append(NatAdded(rev, orig[0], orig[1], exp))


def _set_dst(c: Ctx, ip: int, port: int) -> None:
    c.ip_dst = ip
    _set_port(c, port, src=False)


def _set_src(c: Ctx, ip: int, port: int) -> None:
    c.ip_src = ip
    _set_port(c, port, src=True)


def _set_port(c: Ctx, port: int, src: bool) -> None:
    if c.proto == 1:
        # the echo id sits on the source side of a request, the destination side of a reply
        if ((src and c.tp_src == 8) or (not src and c.tp_src == 0)) and port != c.icmp_id:
            c.icmp_id = port
            c.cacheable = False
    elif c.frame.l4 is not None:
        if src:
            c.tp_src = port
        else:
            c.tp_dst = port


def _dnat(c: Ctx, rule: CRule) -> str:
    sport, dport = c.l4_ports()
    fwd = (DNAT_FWD, c.zone, c.proto, c.ip_src, sport, c.ip_dst, dport)
    got = _binding(c, fwd)
    if got is None:
        h = c.flow_hash()
        ip_from, ip_to, pf, pt = rule.targets[h % len(rule.targets)]
        ip = ip_from + (h >> 8) % (ip_to - ip_from + 1)
        port = dport if pt == 0 or c.frame.l4 is None else pf + (h >> 4) % (pt - pf + 1)
        got = (ip, port)
        rev = (DNAT_REV, c.zone, c.proto, ip, port, c.ip_src, sport)
        _record(c, fwd, rev, got, (c.ip_dst, dport))
    _set_dst(c, *got)
    return f"dst -> {int_to_ip(got[0])}:{got[1]}"


def _snat(c: Ctx, rule: CRule) -> str:
    sport, dport = c.l4_ports()
    fwd = (SNAT_FWD, c.zone, c.proto, c.ip_src, sport, c.ip_dst, dport)
    got = _binding(c, fwd)
    if got is None:
        got = _allocate(c, rule, sport, dport)
        rev = (SNAT_REV, c.zone, c.proto, c.ip_dst, dport, got[0], got[1])
        _record(c, fwd, rev, got, (c.ip_src, sport))
    _set_src(c, *got)
    return f"src -> {int_to_ip(got[0])}:{got[1]}"


def _allocate(c: Ctx, rule: CRule, sport: int, dport: int) -> tuple[int, int]:
    """Pick a source (address, port) whose reverse binding is free.

    Address-only targets (port range 0-0, e.g. floating IPs) keep the source port. Port
    ranges draw from the blocks this host leased for (device, address); no lease means
    "not yet: lease a block", which the agent does before simulating again.
    """
    h = c.flow_hash()
    missing: tuple[str, ...] | None = None
    for ip_from, ip_to, pf, pt in rule.targets:
        n = ip_to - ip_from + 1
        for i in range(n):
            ip = ip_from + (h + i) % n
            if pt == 0 or (c.frame.l4 is None and c.proto != 1):
                if _free(c, ip, sport, dport):
                    return ip, sport
                continue
            blocks = c.state.snat_blocks.get((c.zone, ip))
            c.tags.add(("snat-block", c.zone, ip))
            if not blocks:
                missing = missing or ("snat-block", c.zone, int_to_ip(ip))
                continue
            port = _free_port(c, ip, blocks, pf, pt, dport, h)
            if port is not None:
                return ip, port
            missing = ("snat-block", c.zone, int_to_ip(ip))
    raise NotYet(missing or ("snat-block", c.zone, "exhausted"))


def _free(c: Ctx, ip: int, port: int, dport: int) -> bool:
    rev = (SNAT_REV, c.zone, c.proto, c.ip_dst, dport, ip, port)
    got = c.state.nat.get(rev)
    return got is None or got[2] <= c.now


def _free_port(
    c: Ctx, ip: int, blocks: tuple[tuple[int, int], ...], pf: int, pt: int, dport: int, h: int
) -> int | None:
    for lo, hi in blocks:
        lo, hi = max(lo, pf), min(hi, pt)
        if lo > hi:
            continue
        span = hi - lo + 1
        start = h % span
        for i in range(span):
            port = lo + (start + i) % span
            if _free(c, ip, port, dport):
                return port
    return None


def _reverse(c: Ctx, kind: str) -> str:
    """Reverse NAT for return traffic (and ICMP errors quoting forward traffic)."""
    if c.inner is not None:
        return _reverse_inner(c, kind)
    sport, dport = c.l4_ports()
    got = _binding(c, (kind, c.zone, c.proto, c.ip_src, sport, c.ip_dst, dport))
    if got is None:
        return ""
    if kind == SNAT_REV:
        _set_dst(c, *got)
        return f"dst -> {int_to_ip(got[0])}:{got[1]}"
    _set_src(c, *got)
    return f"src -> {int_to_ip(got[0])}:{got[1]}"


def _reverse_inner(c: Ctx, kind: str) -> str:
    """An ICMP error quotes the translated forward packet; the binding of its reply tuple
    gives the original address, which goes back into the quote and the outer header."""
    assert c.inner is not None
    p, s, sp, d, dp = c.inner
    c.cacheable = False
    got = _binding(c, (kind, c.zone, p, d, dp, s, sp))
    if got is None:
        return ""
    ip, port = got
    if kind == SNAT_REV:  # the quote's source was translated: restore it, and the outer dst
        c.inner = (p, ip, port, d, dp)
        c.ip_dst = ip
    else:  # the quote's destination was translated
        if c.ip_src == d:
            c.ip_src = ip
        c.inner = (p, s, sp, ip, port)
    return f"icmp error inner -> {int_to_ip(ip)}:{port}"


__all__ = ["run_chain"]
