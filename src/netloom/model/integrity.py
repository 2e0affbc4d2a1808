"""Cross-object rules of the topology model, as pure functions over JSON documents.

:class:`netloom.api.service.ObjectService` applies them inside one optimistic store transaction;
keeping them here, free of I/O, lets them be read (and tested) as the rules themselves:

* what a record references (:func:`references`) and which unique values it claims
  (:func:`unique_keys`) -- the service turns these into reverse-reference and unique-index
  documents guarded by compare-and-set;
* what may never change after creation (:data:`IMMUTABLE`);
* which ports may be linked (:func:`check_link`, MidoNet's interior-port rules);
* whether a jump rule closes a loop in the chain graph (:func:`jump_cycle`);
* how a pydantic error becomes one readable :class:`~netloom.errors.InvalidInput`
  (:func:`validate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, get_args, get_origin
from urllib.parse import quote, unquote

from pydantic import TypeAdapter, ValidationError

from netloom.errors import Conflict, InvalidInput
from netloom.model.kinds import KINDS, Kind

Doc = dict[str, Any]
# (target kind, target id, field of the referrer that holds the id)
RefKey = tuple[str, str, str]

# Fields fixed at creation: a port does not move to another device (its flows, tunnel key and
# the device's MAC table are all keyed on it); a route/subnet/rule belongs to one parent.
# A tenant's object stays the tenant's: every reference check made when it was written would
# otherwise have to be made again.
IMMUTABLE: dict[str, frozenset[str]] = {
    **{k: frozenset({"tenant_id"}) for k in ("bridge", "router", "chain", "port_group")},
    "ip_addr_group": frozenset({"tenant_id"}),
    "port": frozenset({"device_id", "type"}),
    "route": frozenset({"router_id"}),
    "dhcp_subnet": frozenset({"bridge_id"}),
    "rule": frozenset({"chain_id"}),
    "bgp_peer": frozenset({"router_id"}),
    "bgp_network": frozenset({"router_id"}),
}

# Fields a PUT that omits them keeps: fixed at creation, or chosen by the system at creation.
KEPT: dict[str, frozenset[str]] = {
    **IMMUTABLE,
    "port": IMMUTABLE["port"] | {"mac"},
    "rule": IMMUTABLE["rule"] | {"position"},
}

TUNNEL_KEY_MAX = (1 << 20) - 1  # 20-bit keys: they travel in the 24-bit VXLAN VNI (RFC 7348)


def kind(name: str) -> Kind:
    """The kind called ``name``; an unknown kind is a caller error, not a crash."""
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidInput(f"unknown kind {name!r}", field="kind") from None


def target_kind(
    kind_name: str, field: str, targets: tuple[str, ...], data: Mapping[str, Any]
) -> str:
    """Which kind a reference points at. Only a port's ``device_id`` has two candidates; the
    port's ``type`` says which, so the id is looked up in exactly one kind."""
    if len(targets) == 1:
        return targets[0]
    if kind_name == "port" and field == "device_id":
        return str(data["type"])
    raise AssertionError(f"ambiguous reference {kind_name}.{field} -> {targets}")


def references(kind_name: str, data: Mapping[str, Any] | None) -> set[RefKey]:
    """Every (target kind, target id, field) the record ``data`` references."""
    if data is None:
        return set()
    out: set[RefKey] = set()
    for ref in KINDS[kind_name].refs:
        tk = target_kind(kind_name, ref.field, ref.target, data)
        for tid in ref.ids(dict(data)):
            out.add((tk, tid, ref.field))
    return out


def name_key(kind_name: str, data: Mapping[str, Any]) -> str | None:
    """The unique-index key of a record's name: names are unique per kind within the record's
    scope (its tenant, or the parent it belongs to; see Kind.scope). "" is no name."""
    name = data.get("name")
    if not name:
        return None
    scope = KINDS[kind_name].scope
    where = (data.get(scope) if scope else None) or "-"
    return f"name:{kind_name}:{where}:{quote(str(name), safe='')}"


def unique_keys(kind_name: str, data: Mapping[str, Any] | None) -> dict[str, str]:
    """The unique values a record claims, as ``{index key: field}``.

    Every record claims its name in its scope. A port claims its MAC (two ports with one MAC
    would make L2 lookups ambiguous), its tunnel key (the VNI that identifies it on the wire),
    its binding (one host interface plugs into one port) and its fixed IPs on its bridge."""
    if data is None:
        return {}
    out: dict[str, str] = {}
    name = name_key(kind_name, data)
    # a learned route is named after its peer ("bgp 198.19.1.1"), like all the peer's routes
    if name is not None and not (kind_name == "route" and data.get("learned_from")):
        out[name] = "name"
    if kind_name == "bgp_peer":  # one session per peer address and router
        out[f"bgp_peer:{data['router_id']}:{data['address']}"] = "address"
    elif kind_name == "bgp_network":
        out[f"bgp_network:{data['router_id']}:{data['prefix']}"] = "prefix"
    if kind_name != "port":
        return out
    for ip in data.get("fixed_ips") or ():
        out[f"ip:{data['device_id']}:{ip}"] = "fixed_ips"
    if data.get("mac"):
        out[f"mac:{data['mac']}"] = "mac"
    if data.get("tunnel_key") is not None:
        out[f"tunnel_key:{data['tunnel_key']}"] = "tunnel_key"
    if data.get("host_id") is not None:
        out[f"binding:{data['host_id']}:{data['interface_name']}"] = "interface_name"
    return out


def taken(key: str, owner: str) -> str:
    """What an already claimed unique-index ``key`` means, for an error message."""
    index, _, value = key.partition(":")
    if index == "binding":
        host, _, iface = value.partition(":")
        return f"interface {iface} of host {host} is already bound to {owner}"
    if index == "name":
        kind_name, _, rest = value.partition(":")
        where, _, name = rest.partition(":")
        scope = KINDS[kind_name].scope
        inside = f" in {scope.removesuffix('_id')} {where}" if scope and where != "-" else ""
        return f"a {kind_name} named {unquote(name)!r} already exists{inside}: {owner}"
    if index == "ip":
        bridge, _, ip = value.partition(":")
        return f"fixed IP {ip} is already used on bridge {bridge} by {owner}"
    if index in ("bgp_peer", "bgp_network"):
        router, _, what = value.partition(":")
        noun = "a peer at" if index == "bgp_peer" else "the network"
        return f"router {router} already has {noun} {what}: {owner}"
    return f"{index} {value} is already used by {owner}"


def check_link(port: Mapping[str, Any], peer: Mapping[str, Any]) -> None:
    """Refuse an interior link MidoNet would refuse.

    A link joins two devices: bridge<->router or router<->router. Bridge<->bridge would make one
    L2 domain out of two MAC tables with no owner; two ports of one device would be a loop; a
    bound (exterior) port already leads to a VM; a linked port already has its peer."""
    if port["id"] == peer["id"]:
        raise InvalidInput("a port cannot be linked to itself", field="peer_id")
    if port["type"] == "bridge" and peer["type"] == "bridge":
        raise InvalidInput(
            "cannot link two bridge ports: a link joins bridge<->router or router<->router",
            field="peer_id",
        )
    if port["device_id"] == peer["device_id"]:
        raise InvalidInput("cannot link two ports of the same device", field="peer_id")
    if peer.get("host_id") is not None:
        raise InvalidInput(
            f"port {peer['id']} is bound to host {peer['host_id']}; a port is either bound or"
            " linked, not both",
            field="peer_id",
        )
    if peer.get("peer_id") not in (None, port["id"]):
        raise Conflict(
            f"port {peer['id']} is already linked to {peer['peer_id']}; unlink it first",
            field="peer_id",
        )


def jump_cycle(edges: Mapping[str, Iterable[str]], src: str, dst: str) -> list[str] | None:
    """The path ``dst -> ... -> src`` if one exists in the jump graph, else None.

    Adding the edge ``src -> dst`` (a rule of chain ``src`` jumping to ``dst``) closes a cycle
    exactly when ``src`` is already reachable from ``dst``; a cycle would make rule evaluation
    loop forever (MidoNet refuses it for the same reason)."""
    parent: dict[str, str | None] = {dst: None}
    stack = [dst]
    while stack:
        node = stack.pop()
        if node == src:
            path = [node]
            while (up := parent[path[-1]]) is not None:
                path.append(up)
            return path[::-1]
        for nxt in edges.get(node, ()):
            if nxt not in parent:
                parent[nxt] = node
                stack.append(nxt)
    return None


def _clean_message(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def invalid_from(exc: ValidationError) -> InvalidInput:
    """The first pydantic error as one InvalidInput naming the offending field (dotted path)."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = _clean_message(str(err["msg"]))
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    text = f"{field}: {msg}" if field else msg
    extra = exc.error_count() - 1
    if extra > 0:
        text += f" (and {extra} more error{'s' if extra > 1 else ''})"
    return InvalidInput(text, field=field)


def validate(kind_name: str, data: Mapping[str, Any]) -> Doc:
    """Validate ``data`` as a whole record of ``kind_name``; return its normalised JSON form."""
    record = KINDS[kind_name].record
    try:
        return record.model_validate(dict(data)).model_dump(mode="json")
    except ValidationError as exc:
        raise invalid_from(exc) from None


def filter_value(kind_name: str, field: str, raw: str) -> Any:
    """Normalise a list-filter value the way the field itself is normalised (``AA-BB..`` and
    ``aa:bb..`` find the same port), so filters compare JSON values; ``null`` matches unset."""
    k = KINDS[kind_name]
    if field not in k.filters:
        allowed = ", ".join(k.filters) or "none"
        raise InvalidInput(
            f"cannot filter {k.collection} on {field!r} (filters: {allowed})", field=field
        )
    info = k.record.model_fields[field]
    tp: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    if get_origin(info.annotation) is list:
        # a list field filters by membership (?port_group_ids=G: the ports in group G): the
        # value is one element, validated as the element type
        if raw == "null":
            raise InvalidInput(
                f"filter {field}: a list field matches one element, not null", field=field
            )
        (tp,) = get_args(info.annotation)
    elif raw == "null":
        return None
    adapter: TypeAdapter[Any] = TypeAdapter(tp)
    try:
        return adapter.dump_python(adapter.validate_strings(raw), mode="json")
    except ValidationError as exc:
        msg = _clean_message(str(exc.errors(include_url=False)[0]["msg"]))
        raise InvalidInput(f"filter {field}={raw!r}: {msg}", field=field) from None


def filter_matches(have: Any, want: Any) -> bool:
    """Whether a stored field value ``have`` satisfies a list filter value ``want`` (from
    :func:`filter_value`): membership for a list field, equality otherwise."""
    if isinstance(have, list):
        return want in have
    return bool(have == want)


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> Doc:
    """RFC 7396 JSON Merge Patch: objects merge recursively, ``null`` removes a member (the
    field then falls back to its default, or is reported missing if it is required)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = value
    return out


__all__ = [
    "IMMUTABLE",
    "KEPT",
    "TUNNEL_KEY_MAX",
    "RefKey",
    "check_link",
    "filter_matches",
    "filter_value",
    "invalid_from",
    "jump_cycle",
    "kind",
    "merge_patch",
    "name_key",
    "references",
    "taken",
    "target_kind",
    "unique_keys",
    "validate",
]
