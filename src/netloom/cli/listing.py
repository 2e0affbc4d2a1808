"""The ``list`` command of every kind: the API's filters as options, paging and sorting
(``--limit``, ``--marker``, ``--sort-key``, ``--sort-dir``), ``-f``/``-c``/``--long``,
names next to ids; ports also filter by address (``--ip``) and tenant (``--tenant``), here on
the client since a port has no tenant of its own."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient, items_of
from netloom.cli import output
from netloom.cli.common import guarded, kw_param, names_of, opts_of, with_signature
from netloom.cli.fields import parse_filters
from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS, Kind
from netloom.plan import Resolver

Doc = dict[str, Any]

# Shorter spellings of filter options, as openstack has them.
_ALIASES = {"device_id": "--device", "tenant_id": "--tenant"}


def _filter_params(kind: Kind) -> list[inspect.Parameter]:
    params: list[inspect.Parameter] = []
    for f in kind.filters:
        names = ["--" + f.replace("_", "-")]
        if f in _ALIASES:
            names.append(_ALIASES[f])
        option = typer.Option(*names, help=f"only objects whose {f} is this")
        params.append(kw_param(f"q_{f}", Annotated[str | None, option]))
    if kind.name == "port":
        ip = typer.Option("--ip", help="only ports with this address (or one in this CIDR)")
        tenant = typer.Option("--tenant", help="only ports of this tenant's bridges and routers")
        params.append(kw_param("q_ip", Annotated[str | None, ip]))
        params.append(kw_param("q_tenant", Annotated[str | None, tenant]))
    return params


def _ip_matcher(raw: str) -> Callable[[Doc], bool]:
    """Whether a port has an address equal to ``raw`` (or inside it, for a CIDR)."""
    try:
        net = IPv4Network(raw.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not an IPv4 address or CIDR", field="ip") from None

    def addresses(port: Doc) -> list[IPv4Address]:
        out: list[IPv4Address] = []
        for ip in port.get("fixed_ips") or ():
            try:
                out.append(IPv4Address(ip))
            except ValueError:
                continue
        if port.get("address"):
            out.append(IPv4Interface(port["address"]).ip)
        return out

    return lambda port: any(a in net for a in addresses(port))


def _tenant_devices(client: ApiClient, resolver: Resolver, tenant: str) -> set[str]:
    tid = resolver.find(("tenant",), tenant, "tenant")[1]
    return {
        str(d["id"])
        for kind in ("bridge", "router")
        for d in client.list(KINDS[kind].collection, {"tenant_id": tid})
    }


def _query(kind: Kind, kw: dict[str, Any], client: ApiClient) -> tuple[Any, list[Doc]]:
    """The list answer as sent, and its items after the client-side filters."""
    has_ip = _ip_matcher(kw["q_ip"]) if kw.get("q_ip") else None  # fails before any request
    resolver = Resolver(client)
    refs = {r.field: r for r in kind.refs}
    filters = parse_filters(kw["filter"])
    filters.update({f: kw[f"q_{f}"] for f in kind.filters if kw.get(f"q_{f}") is not None})
    for f, value in list(filters.items()):
        if f in refs and value and not refs[f].many:
            filters[f] = resolver.find(refs[f].target, value, f)[1]
    paging = {k: kw[k] for k in ("limit", "marker", "sort_key", "sort_dir") if kw.get(k)}
    body = client.list_raw(kind.collection, filters, **paging)
    docs = items_of(body)
    if has_ip is not None:
        docs = [d for d in docs if has_ip(d)]
    if kw.get("q_tenant"):
        devices = _tenant_devices(client, resolver, kw["q_tenant"])
        docs = [d for d in docs if d.get("device_id") in devices]
    if kw.get("q_ip") or kw.get("q_tenant"):
        body = {**body, "items": docs} if isinstance(body, dict) else docs
    return body, docs


def list_cmd(kind: Kind, common: list[inspect.Parameter]) -> Callable[..., None]:
    """``list`` of ``kind``; ``common`` are the options every object command has."""

    @guarded
    def list_(**kw: Any) -> None:
        opts = opts_of(kw)
        view = opts.view
        with ApiClient(opts.api) as client:
            body, docs = _query(kind, kw, client)
            names: dict[str, str] = {}
            if view.format not in ("json", "yaml") or view.columns:
                shown = list(view.columns) or output.list_columns(kind, docs, view.long)
                names = names_of(client, kind, docs, shown)
        output.render_list(kind, docs, view, names, raw=body)

    long = typer.Option("--long", help="show more columns")
    limit = typer.Option("--limit", min=1, help="at most this many objects (one page)")
    marker = typer.Option("--marker", help="the page after the object with this id")
    sort_key = typer.Option("--sort-key", help="order by this field (ties by id)")
    sort_dir = typer.Option("--sort-dir", help="asc or desc")
    filter_opt = typer.Option("--filter", help="field=value (repeatable)", metavar="FIELD=VALUE")
    params = [
        *_filter_params(kind),
        kw_param("filter", Annotated[list[str] | None, filter_opt]),
        kw_param("long", Annotated[bool, long], False),
        kw_param("limit", Annotated[int | None, limit]),
        kw_param("marker", Annotated[str | None, marker]),
        kw_param("sort_key", Annotated[str | None, sort_key]),
        kw_param("sort_dir", Annotated[str | None, sort_dir]),
        *common,
    ]
    list_.__doc__ = f"List {kind.collection.replace('_', ' ')}, optionally filtered."
    return with_signature(list_, params)


__all__ = ["list_cmd"]
