"""``netloom bench sim --rules/--members``: simulation cost against security-group size.

The scenario is the routed ``l3_sg`` path (VM a -> router -> VM c) with a Neutron-shaped
stateful group on c: accept return flows, accept ARP, then N rules "tcp to port P from
prefix X" where every tenth rule, and the last, is "tcp to port P from remote group G" (a port
group whose address group holds M addresses, a's among them), then drop. Two packets, each
simulation a new connection: one matching the last rule (forwarded) and one matching no rule
(dropped at the end of the chain). A rate is their mix: as many of one as of the other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from netloom.bench.sim_paths import Scenario, a_to_c, measure, routed
from netloom.errors import InvalidInput
from netloom.model.addressing import group_addresses_id
from netloom.model.records import Chain, IPAddrGroup, PortGroup, PortRange, Record, Rule
from netloom.packet import ip_to_int, mac_to_int
from netloom.sim import SimState, Verdict

BASE_PORT = 10000  # rule i accepts tcp to BASE_PORT + i
MISS_PORT = 9999  # no rule names it
MAX_RULES = 50000
MAX_MEMBERS = 4096  # an address group's bound (model.records.IPAddrGroup)
_A_IP = "10.0.1.10"


def _group(records: list[Record], members: int) -> str:
    """A port group and its address group: a's address and ``members - 1`` others."""
    pg = PortGroup(name="remote", stateful=True)
    first = int(ipaddress.IPv4Address("10.8.0.0"))
    others = [str(ipaddress.IPv4Address(first + i)) for i in range(members - 1)]
    records += [
        pg,
        IPAddrGroup(id=group_addresses_id(pg.id), port_group_id=pg.id, addresses=[_A_IP, *others]),
    ]
    return pg.id


def _rule(chain: str, i: int, group: str, *, last: bool) -> Rule:
    port = PortRange(start=BASE_PORT + i, end=BASE_PORT + i)
    if last or i % 10 == 9:
        src: dict[str, str] = {"remote_group_src_id": group}
    else:
        src = {"nw_src": f"172.{16 + (i >> 16) % 16}.{(i >> 8) & 255}.{i & 255}/32"}
    return Rule(chain_id=chain, position=2 + i, action="accept", nw_proto=6, tp_dst=port, **src)


def _chains(records: list[Record], rules: int, members: int) -> tuple[str, str, str, str]:
    """(a's from-VM, a's to-VM, c's from-VM, c's to-VM) chain ids."""
    egress, ingress, a_in = Chain(name="sg-from-vm"), Chain(name="sg-to-vm"), Chain(name="a-to-vm")
    group = _group(records, members)
    records += [
        egress,
        ingress,
        a_in,
        Rule(chain_id=egress.id, position=0, action="accept", match_return_flow=True),
        Rule(chain_id=egress.id, position=1, action="accept"),
        Rule(chain_id=a_in.id, position=0, action="accept", match_return_flow=True),
        Rule(chain_id=a_in.id, position=1, action="drop"),
        Rule(chain_id=ingress.id, position=0, action="accept", match_return_flow=True),
        Rule(chain_id=ingress.id, position=1, action="accept", ethertype=0x0806),
    ]
    records += [_rule(ingress.id, i, group, last=i == rules - 1) for i in range(rules)]
    records.append(Rule(chain_id=ingress.id, position=2 + rules, action="drop"))
    return egress.id, a_in.id, egress.id, ingress.id


def sg_scenario(rules: int, members: int, *, hit: bool) -> Scenario:
    """The scenario above; ``hit``: the packet matches the last rule, else none."""
    records: list[Record] = []
    a_out, a_in, c_out, c_in = _chains(records, rules, members)
    a, r1, _up = routed(records, (a_out, a_in), (c_out, c_in))
    records.append(r1)
    state = SimState()
    state.arp[("arp", r1.id, ip_to_int("203.0.113.1"))] = (mac_to_int("02:00:00:00:ee:01"), 1e12)
    sc = Scenario(records, a.id, a_to_c(BASE_PORT + rules - 1 if hit else MISS_PORT), state)
    sc.vary_dport = False
    return sc


def _rate(rules: int, members: int, seconds: float) -> float:
    """The mixed rate: as many forwarded (last rule) as dropped (no rule) simulations."""
    hit = measure(lambda: sg_scenario(rules, members, hit=True), seconds / 2, Verdict.FORWARD)
    miss = measure(lambda: sg_scenario(rules, members, hit=False), seconds / 2, Verdict.DROP)
    return 2 / (1 / hit + 1 / miss)


def _counts(values: Sequence[int], name: str, most: int) -> list[int]:
    if not values or any(not 1 <= v <= most for v in values):
        raise InvalidInput(f"--{name} takes counts from 1 to {most}", field=name)
    return sorted(set(values))


def run_scaling(
    rules: Sequence[int], members: Sequence[int], seconds: float
) -> dict[str, dict[str, float] | float]:
    """Rates by rule count (with ``min(members)`` members) and by member count (with
    ``min(rules)`` rules), and each ratio: the rate at the largest count over the smallest."""
    rules = _counts(rules, "rules", MAX_RULES)
    members = _counts(members, "members", MAX_MEMBERS)
    by_rules = {n: _rate(n, members[0], seconds) for n in rules}
    by_members = {m: _rate(rules[0], m, seconds) for m in members}
    return {
        "rate_by_rules": {str(n): round(v, 1) for n, v in by_rules.items()},
        "rate_by_members": {str(m): round(v, 1) for m, v in by_members.items()},
        "rules_ratio": round(by_rules[rules[-1]] / by_rules[rules[0]], 3),
        "members_ratio": round(by_members[members[-1]] / by_members[members[0]], 3),
    }


def parse_counts(text: str, name: str) -> list[int]:
    """``"10,100,1000"`` -> [10, 100, 1000]."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidInput(f"--{name}: a comma-separated list of counts", field=name) from exc


__all__ = [
    "BASE_PORT",
    "MISS_PORT",
    "parse_counts",
    "run_scaling",
    "sg_scenario",
]
