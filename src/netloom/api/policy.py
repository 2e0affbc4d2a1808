"""The rules of single kinds that need the store, applied by :class:`ObjectService` inside its
transactions: a port's device and addresses, a route's port, jump cycles, tunnel keys, rule
positions, tenancy of references and the address groups that follow port groups.

Each function reads through the plan's :class:`~netloom.api.tx.Tx`, so what it looked at
becomes a condition of the commit. Searches for a free value (MAC, fixed IP) look at the store
directly and then claim the value through its unique-index document in the transaction: a
racing claim fails the commit and the plan runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Network

from netloom.api.tx import (
    COUNTER,
    GROUP_MEMBERS,
    META,
    OWNER,
    REFS,
    UNIQUE,
    Doc,
    Tx,
    ref_id,
    referrers,
    split_ref,
)
from netloom.errors import Conflict, InUse, InvalidInput
from netloom.model import addressing, integrity
from netloom.model.kinds import KINDS
from netloom.store.base import Store

_NO_TENANT: tuple[str | None, bool] = (None, False)


def check_port_device(tx: Tx, port: Doc) -> None:
    """A port's ``type`` names its device's kind (a router port on a bridge would have an
    address nothing routes to)."""
    want = port["type"]
    if tx.get(want, port["device_id"]) is not None:
        return
    other = "bridge" if want == "router" else "router"
    if tx.get(other, port["device_id"]) is not None:
        raise InvalidInput(
            f"device_id: {port['device_id']} is a {other}, but the port's type is {want!r}",
            field="device_id",
        )
    raise InvalidInput(f"device_id: no {want} {port['device_id']}", field="device_id")


def check_route(tx: Tx, route: Doc) -> None:
    """A route leaves through one of its own router's ports."""
    port_id = route.get("next_hop_port_id")
    if port_id is None:
        return
    port = tx.peek("port", port_id)
    if port is None:
        raise InvalidInput(f"next_hop_port_id: no port {port_id}", field="next_hop_port_id")
    if port["device_id"] != route["router_id"]:
        raise InvalidInput(
            f"next_hop_port_id: port {port_id} belongs to {port['type']} "
            f"{port['device_id']}, not to router {route['router_id']}",
            field="next_hop_port_id",
        )


def check_jump(tx: Tx, store: Store, id: str, old: Doc | None, new: Doc) -> None:
    """Refuse a jump that closes a loop in the chain graph (see integrity.jump_cycle)."""
    edge = (new["chain_id"], new.get("jump_chain_id"))
    if edge[1] is None or (old is not None and (old["chain_id"], old.get("jump_chain_id")) == edge):
        return
    if not referrers(tx, "chain", edge[0], "rule", "jump_chain_id"):
        # nothing jumps to the source chain, so no path leads back to it: the edge closes no
        # loop. A concurrent jump into it rewrites that chain's reverse references, which
        # this plan has read, so one of the two commits fails and re-runs.
        return
    gen = tx.get(META, "jump_graph") or {"gen": 0}
    tx.put(META, "jump_graph", {"gen": int(gen["gen"]) + 1})
    edges: dict[str, set[str]] = {}
    for item in store.list("rule"):
        rule = item.data
        if item.id != id and rule.get("jump_chain_id"):
            edges.setdefault(rule["chain_id"], set()).add(rule["jump_chain_id"])
    path = integrity.jump_cycle(edges, edge[0], edge[1])
    if path is not None:
        loop = " -> ".join([edge[0], *path])
        raise InvalidInput(
            f"jump_chain_id: the jump would create a cycle: chains {loop}",
            field="jump_chain_id",
        )


def allocate_tunnel_key(tx: Tx) -> int:
    """The next free 20-bit tunnel key, searching from a shared CAS counter."""
    counter = tx.get(COUNTER, "tunnel_key") or {"next": 1}
    key = int(counter["next"])
    for _ in range(integrity.TUNNEL_KEY_MAX):
        if not 1 <= key <= integrity.TUNNEL_KEY_MAX:
            key = 1
        if tx.get(UNIQUE, f"tunnel_key:{key}") is None:
            tx.put(COUNTER, "tunnel_key", {"next": key % integrity.TUNNEL_KEY_MAX + 1})
            return key
        key += 1
    raise Conflict("all 2^20-1 tunnel keys are in use", field="tunnel_key")


# -- rule positions ------------------------------------------------------------------------------


def place_rule(tx: Tx, id: str, rule: Doc, want: int | None) -> dict[str, int]:
    """Set ``rule["position"]`` (``want`` None: append) and return the other rules of its chain
    that move down to keep positions unique: ``{rule id: new position}``."""
    others: dict[str, int] = {}
    for rid in referrers(tx, "chain", rule["chain_id"], "rule", "chain_id"):
        doc = tx.get("rule", rid)
        if rid != id and doc is not None:
            others[rid] = int(doc["position"])
    rule["position"], moves = addressing.place(others, want)
    return moves


# -- addresses -----------------------------------------------------------------------------------


def bridge_subnets(tx: Tx, bridge_id: str) -> list[Doc]:
    """The DHCP subnets of a bridge, by address."""
    ids = referrers(tx, "bridge", bridge_id, "dhcp_subnet", "bridge_id")
    subnets = [s for s in (tx.get("dhcp_subnet", i) for i in ids) if s is not None]
    return sorted(subnets, key=lambda s: (IPv4Network(s["cidr"]), s["id"]))


def fill_mac(tx: Tx, store: Store, draft: Doc) -> None:
    """Before validation of a new port: generate a MAC when none is given."""
    if not draft.get("mac"):
        draft["mac"] = _free_mac(tx, store)


def fill_ips(tx: Tx, store: Store, draft: Doc) -> None:
    """Before validation: replace ``"auto"`` fixed IPs with free addresses of the bridge's
    subnets."""
    ips = draft.get("fixed_ips")
    if not isinstance(ips, list) or addressing.AUTO_IP not in ips:
        return
    device = draft.get("device_id")
    if draft.get("type") != "bridge" or not isinstance(device, str) or not _is_id(device):
        raise InvalidInput(
            "fixed_ips: \"auto\" allocates from a bridge's subnets; give a bridge port's"
            " device_id and type",
            field="fixed_ips",
        )
    subnets = bridge_subnets(tx, device) if tx.get("bridge", device) else []
    if not subnets:
        raise InvalidInput(
            f'fixed_ips: "auto" needs a DHCP subnet on bridge {device}', field="fixed_ips"
        )
    taken = {ip for ip in ips if ip != addressing.AUTO_IP}
    out = []
    for ip in ips:
        if ip == addressing.AUTO_IP:
            ip = _free_ip(tx, store, device, subnets, taken)
            taken.add(ip)
        out.append(ip)
    draft["fixed_ips"] = out


def _is_id(value: str) -> bool:
    """A canonical UUID (anything else must not reach a backend whose keys are paths)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _free(tx: Tx, store: Store, key: str) -> bool:
    """Whether a unique value looks free: a quick look at the store first (not a condition of
    the commit), then a read in the transaction for the one chosen, so a value claimed in
    between fails the commit and the plan runs again."""
    return store.get(UNIQUE, key) is None and tx.get(UNIQUE, key) is None


def _free_mac(tx: Tx, store: Store) -> str:
    for _ in range(16):
        mac = addressing.new_mac()
        if _free(tx, store, f"mac:{mac}"):
            return mac
    raise Conflict("could not find a free MAC address", field="mac")


def _free_ip(tx: Tx, store: Store, bridge_id: str, subnets: list[Doc], taken: set[str]) -> str:
    for subnet in subnets:
        for ip in addressing.free_ips(subnet):
            if ip not in taken and _free(tx, store, f"ip:{bridge_id}:{ip}"):
                return ip
    cidrs = ", ".join(s["cidr"] for s in subnets)
    raise Conflict(f"fixed_ips: no free address left in {cidrs}", field="fixed_ips")


def check_fixed_ips(tx: Tx, port: Doc, old: Doc | None) -> None:
    """A bridge port's fixed IPs lie in its bridge's DHCP subnets. A bridge without a subnet
    manages no addresses: any fixed IP is allowed there."""
    ips = port.get("fixed_ips") or []
    if port["type"] != "bridge" or not ips:
        return
    if old is not None and set(old.get("fixed_ips") or []) >= set(ips):
        return
    subnets = bridge_subnets(tx, port["device_id"])
    if not subnets:
        return
    cidrs = [s["cidr"] for s in subnets]
    for ip in ips:
        if not addressing.inside(ip, cidrs):
            raise InvalidInput(
                f"fixed_ips: {ip} is outside the bridge's subnets ({', '.join(cidrs)})",
                field="fixed_ips",
            )


def check_subnet_change(tx: Tx, old: Doc, new: Doc | None) -> None:
    """A DHCP subnet cannot leave the fixed IPs of its bridge's ports outside every subnet
    (unless it was the bridge's last: then the bridge manages no addresses)."""
    if new is not None and new["cidr"] == old["cidr"]:
        return
    bridge = old["bridge_id"]
    cidrs = [s["cidr"] for s in bridge_subnets(tx, bridge) if s["id"] != old["id"]]
    if new is not None:
        cidrs.append(new["cidr"])
    if not cidrs:
        return
    for pid in referrers(tx, "bridge", bridge, "port", "device_id"):
        port = tx.get("port", pid) or {}
        for ip in port.get("fixed_ips") or ():
            if not addressing.inside(ip, cidrs):
                raise Conflict(
                    f"port {pid} has fixed IP {ip} in {old['cidr']}; change the port first",
                    field="cidr",
                )


# -- tenancy -------------------------------------------------------------------------------------


def tenant_of(tx: Tx, kind: str, doc: Doc | None) -> tuple[str | None, bool]:
    """The tenant an object belongs to (its own or its parent's, see Kind.scope) and whether
    it (or the parent) is shared with other tenants."""
    for _ in range(4):
        if doc is None:
            return _NO_TENANT
        scope = KINDS[kind].scope
        if scope is None:
            return _NO_TENANT
        if scope == "tenant_id":
            return doc.get("tenant_id"), bool(doc.get("shared"))
        kind = str(doc["type"]) if kind == "port" else _PARENT[kind]
        doc = tx.peek(kind, str(doc[scope]))
    return _NO_TENANT


_PARENT = {
    "route": "router",
    "rule": "chain",
    "dhcp_subnet": "bridge",
    "bgp_peer": "router",
    "bgp_network": "router",
}


def check_tenancy(tx: Tx, kind: str, doc: Doc, added: Iterable[integrity.RefKey]) -> None:
    """Refuse a new reference from one tenant's object to another tenant's, unless the target
    has no tenant or is shared (a link is allowed when either side is shared)."""
    mine: tuple[str | None, bool] | None = None
    for tk, tid, field in sorted(added):
        if tk in ("tenant", "host") or field in ("tenant_id", KINDS[kind].scope):
            continue
        if mine is None:
            mine = tenant_of(tx, kind, doc)
        if mine[0] is None:
            return
        theirs = tenant_of(tx, tk, tx.get(tk, tid))
        shared = theirs[1] or (field == "peer_id" and mine[1])
        if theirs[0] is not None and theirs[0] != mine[0] and not shared:
            raise InvalidInput(
                f"{field}: {tk} {tid} belongs to tenant {theirs[0]}, not to this {kind}'s"
                f" tenant {mine[0]} (and is not shared)",
                field=field,
            )


def check_unshare(tx: Tx, kind: str, id: str, old: Doc | None, new: Doc) -> None:
    """``shared`` cannot be turned off while another tenant's object references this one."""
    if old is None or not old.get("shared") or new.get("shared"):
        return
    mine = new.get("tenant_id")
    targets = [(kind, id)]
    if kind in ("bridge", "router"):
        targets += [("port", p) for p in referrers(tx, kind, id, "port", "device_id")]
    for tk, tid in targets:
        doc = tx.get(REFS, ref_id(tk, tid)) or {"referrers": {}}
        for ref in sorted(doc["referrers"]):
            rk, rid = split_ref(ref)
            other = tenant_of(tx, rk, tx.get(rk, rid))[0]
            if other is not None and mine is not None and other != mine:
                raise Conflict(
                    f"shared: {rk} {rid} of tenant {other} references {tk} {tid}",
                    field="shared",
                )


# -- what the system owns ------------------------------------------------------------------------


def check_hand_write(kind: str, id: str, old: Doc) -> None:
    """Refuse a hand-made change to a record the system keeps: a router port's routes, a port
    group's address group."""
    if old.get("system"):
        raise Conflict(
            f"{kind} {id} is made by the system from router port"
            f" {old.get('next_hop_port_id')}'s address; change the port instead",
            field="id",
        )
    if kind == "route" and old.get("learned_from"):
        raise Conflict(
            f"route {id} was learned from bgp_peer {old['learned_from']} by the gateway agent;"
            " it goes with the session",
            field="id",
        )
    if kind == "ip_addr_group" and old.get("port_group_id"):
        raise Conflict(
            f"ip_addr_group {id} holds the addresses of port group {old['port_group_id']}'s"
            " ports; change the ports instead",
            field="addresses",
        )


def check_owner(tx: Tx, kind: str, id: str) -> None:
    """Refuse a hand-made change to a record a translation owns (made for a Neutron object)."""
    owner = tx.get(OWNER, ref_id(kind, id))
    if owner is not None:
        api, _, what = str(owner.get("owner")).partition(":")
        raise Conflict(
            f"{kind} {id} is owned by {api} {what.replace(':', ' ')}; change it through the"
            f" {api.capitalize()} API",
            field="id",
        )


def sync_group_addresses(
    tx: Tx, port_id: str, old: Doc | None, new: Doc | None, dying: Iterable[str] = ()
) -> None:
    """Rewrite the address group of every port group the port joins, leaves or stays in with
    other fixed IPs (in the commit that changes the port)."""
    before = set(old.get("port_group_ids") or ()) if old else set()
    after = set(new.get("port_group_ids") or ()) if new else set()
    ips_before = list(old.get("fixed_ips") or ()) if old else []
    ips_after = list(new.get("fixed_ips") or ()) if new else []
    gone = set(dying)
    for pg in sorted(before | after):
        if pg in before and pg in after and ips_before == ips_after:
            continue
        group = tx.get("port_group", pg)
        gid = group.get("ip_addr_group_id") if group else None
        if not gid or ref_id("ip_addr_group", gid) in gone:
            continue
        members = tx.get(GROUP_MEMBERS, pg) or {"ports": {}}
        if pg in after and ips_after:
            members["ports"][port_id] = ips_after
        else:
            members["ports"].pop(port_id, None)
        if members["ports"]:
            tx.put(GROUP_MEMBERS, pg, members)
        elif tx.get(GROUP_MEMBERS, pg) is not None:
            tx.delete(GROUP_MEMBERS, pg)
        ipg = tx.get("ip_addr_group", gid)
        addresses = addressing.member_addresses(members["ports"])
        if ipg is not None and ipg["addresses"] != addresses:
            tx.put(
                "ip_addr_group",
                gid,
                integrity.validate("ip_addr_group", {**ipg, "addresses": addresses}),
            )


# -- deletes -------------------------------------------------------------------------------------


def add_group_addresses(tx: Tx, doomed: dict[str, Doc]) -> None:
    """Deleting a port group deletes its address group; deleting that alone is refused."""
    for ref, data in list(doomed.items()):
        gid = data.get("ip_addr_group_id") if ref.startswith("port_group:") else None
        ipg = tx.get("ip_addr_group", gid) if gid else None
        if gid and ipg is not None:
            doomed.setdefault(ref_id("ip_addr_group", gid), ipg)
        if ref.startswith("port_group:") and tx.get(GROUP_MEMBERS, data["id"]) is not None:
            tx.delete(GROUP_MEMBERS, data["id"])
    for ref, data in doomed.items():
        pg = data.get("port_group_id") if ref.startswith("ip_addr_group:") else None
        if pg and ref_id("port_group", pg) not in doomed:
            raise Conflict(
                f"ip_addr_group {data['id']} belongs to port group {pg}: it goes with the group",
                field="id",
            )


def add_system_routes(tx: Tx, doomed: dict[str, Doc]) -> None:
    """Deleting a router port deletes its system routes; deleting one of those alone is
    refused (it goes with the port's address)."""
    for ref, data in list(doomed.items()):
        if ref.startswith("port:") and data.get("type") == "router":
            for rid in addressing.system_route_ids(data["id"]):
                route = tx.get("route", rid)
                if route is not None:
                    doomed.setdefault(ref_id("route", rid), route)
    for ref, data in doomed.items():
        port = data.get("next_hop_port_id")
        alone = ref_id("port", str(port)) not in doomed
        if ref.startswith("route:") and data.get("system") and alone:
            raise Conflict(
                f"route {data['id']} ({data['dst']}) belongs to router port {port}'s"
                " address: it goes when the port or its address does",
                field="id",
            )


def blockers(tx: Tx, doomed: Mapping[str, Doc], cascade: bool) -> list[str]:
    """Raise InUse if something outside the deletion set references it; return the ports
    to unlink (with ``cascade``, a link to a deleted port is undone rather than blocking)."""
    blocking: list[str] = []
    unlink: list[str] = []
    for ref in doomed:
        referrers = (tx.get(REFS, ref) or {"referrers": {}})["referrers"]
        for referrer, fields in sorted(referrers.items()):
            if referrer in doomed:
                continue
            if cascade and fields == ["peer_id"] and referrer.startswith("port:"):
                unlink.append(split_ref(referrer)[1])
            else:
                blocking.append(f"{referrer} (its {', '.join(fields)} -> {ref})")
    if blocking:
        shown = "; ".join(blocking[:5])
        more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
        hint = "" if cascade else "; delete those first, or cascade to delete children"
        raise InUse(f"still referenced by {shown}{more}{hint}")
    return unlink


__all__ = [
    "add_group_addresses",
    "add_system_routes",
    "allocate_tunnel_key",
    "blockers",
    "bridge_subnets",
    "check_fixed_ips",
    "check_hand_write",
    "check_jump",
    "check_owner",
    "check_port_device",
    "check_route",
    "check_subnet_change",
    "check_tenancy",
    "check_unshare",
    "fill_ips",
    "fill_mac",
    "place_rule",
    "sync_group_addresses",
    "tenant_of",
]
