"""The five commands of every kind (``create``, ``list``, ``show``, ``update``, ``delete``),
generated from :data:`netloom.model.kinds.KINDS`: their ``--field`` options are derived from the
pydantic record, so a field added to the model appears in the CLI without a line here."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.bgp import show_peer
from netloom.cli.common import (
    IDENT,
    common_params,
    guarded,
    kw_param,
    opts_of,
    progress,
    show,
    with_signature,
)
from netloom.cli.fields import (
    FieldSpec,
    field_specs,
    load_data,
    parse_value,
)
from netloom.cli.listing import list_cmd
from netloom.errors import InvalidInput
from netloom.model.kinds import KINDS, Kind
from netloom.model.values import parse_int
from netloom.plan import Resolver, infer_port_type

Doc = dict[str, Any]


def _field_param(spec: FieldSpec) -> inspect.Parameter:
    """One ``--field`` option. Booleans are tri-state (``--x``/``--no-x``/absent) so that an
    update changes only what was given."""
    help_text = spec.help()
    if spec.shape == "bool":
        flag = f"{spec.option}/--no-{spec.option[2:]}"
        return kw_param(spec.param, Annotated[bool | None, typer.Option(flag, help=help_text)])
    if spec.shape in ("list", "json_list"):
        opt = typer.Option(spec.option, help=help_text, metavar="VALUE")
        return kw_param(spec.param, Annotated[list[str] | None, opt])
    metavar = "|".join(spec.choices) if 0 < len(spec.choices) <= 4 else spec.shape.upper()
    metavar = metavar.replace("STR", "TEXT")
    opt = typer.Option(spec.option, help=help_text, metavar=metavar)
    return kw_param(spec.param, Annotated[str | None, opt])


def _collect(specs: list[FieldSpec], kwargs: dict[str, Any]) -> Doc:
    """The fields the user gave as options (unset options are None and left out)."""
    out: Doc = {}
    for spec in specs:
        raw = kwargs.get(spec.param)
        if raw is None or (isinstance(raw, list) and not raw and spec.shape != "bool"):
            continue
        out[spec.name] = parse_value(spec, raw)
    return out


def _create_cmd(kind: Kind, specs: list[FieldSpec]) -> Callable[..., None]:
    @guarded
    def create(**kw: Any) -> None:
        opts = opts_of(kw)
        data = {**load_data(kw["data"]), **_collect(specs, kw)}
        if kw["id"]:
            data["id"] = kw["id"]
        with ApiClient(opts.api) as client:
            resolver = Resolver(client)
            data = resolver.refs(kind, data)
            if kind.name == "port":
                data = infer_port_type(resolver, data)
            show(kind, client.create(kind.collection, data), opts, client)

    params = [
        *(_field_param(s) for s in specs),
        kw_param("id", Annotated[str | None, typer.Option("--id", help="choose the id (UUID)")]),
        kw_param(
            "data",
            Annotated[
                str | None,
                typer.Option("--data", help="JSON object or @file.json; options override it"),
            ],
        ),
        *common_params(),
    ]
    create.__doc__ = f"Create a {kind.name.replace('_', ' ')}."
    return with_signature(create, params)


def _show_cmd(kind: Kind) -> Callable[..., None]:
    @guarded
    def show_(**kw: Any) -> None:
        opts = opts_of(kw)
        with ApiClient(opts.api) as client:
            ident = Resolver(client).ident(kind, kw["ident"])
            doc = client.get(kind.collection, ident)
            if kind.name == "bgp_peer":
                show_peer(doc, opts, client)
            else:
                show(kind, doc, opts, client)

    show_.__doc__ = f"Show one {kind.name.replace('_', ' ')}."
    return with_signature(
        show_, [kw_param("ident", IDENT, inspect.Parameter.empty), *common_params()]
    )


def _update_cmd(kind: Kind, specs: list[FieldSpec]) -> Callable[..., None]:
    writable = {s.name for s in specs}

    @guarded
    def update(**kw: Any) -> None:
        opts = opts_of(kw)
        changes = {**load_data(kw["data"]), **_collect(specs, kw)}
        for name in kw["unset"] or ():
            field = name.replace("-", "_")
            if field not in writable:
                raise InvalidInput(f"no writable field {name!r}", field=field)
            changes[field] = None
        if not changes:
            raise InvalidInput("nothing to update: give --FIELD options, --unset or --data")
        if_version = parse_int("if_version", kw["if_version"]) if kw["if_version"] else None
        with ApiClient(opts.api) as client:
            resolver = Resolver(client)
            ident = resolver.ident(kind, kw["ident"])
            changes = resolver.refs(kind, changes)
            doc = client.update(kind.collection, ident, changes, if_version=if_version)
            show(kind, doc, opts, client)

    params = [
        kw_param("ident", IDENT, inspect.Parameter.empty),
        *(_field_param(s) for s in specs),
        kw_param(
            "unset",
            Annotated[
                list[str] | None,
                typer.Option(
                    "--unset", help="set this field to null (repeatable)", metavar="FIELD"
                ),
            ],
        ),
        kw_param(
            "if_version",
            Annotated[
                str | None,
                typer.Option(
                    "--if-version", help="only if the object is still at this version", metavar="N"
                ),
            ],
        ),
        kw_param(
            "data",
            Annotated[
                str | None, typer.Option("--data", help="JSON object or @file.json of changes")
            ],
        ),
        *common_params(),
    ]
    update.__doc__ = f"Change fields of a {kind.name.replace('_', ' ')} (others are kept)."
    return with_signature(update, params)


def dependents(client: ApiClient, kind: Kind, ident: str) -> dict[str, int]:
    """Counts of the objects a cascading delete of (kind, ident) will take with it, found by
    walking :attr:`Kind.children` the way the service does."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(kind, ident)]
    while todo:
        parent, pid = todo.pop()
        for child_name, field in parent.children:
            child = KINDS[child_name]
            for doc in client.list(child.collection, {field: pid}):
                key = (child_name, str(doc["id"]))
                if doc.get(field) != pid or key in seen:
                    continue
                seen.add(key)
                counts[child.collection] = counts.get(child.collection, 0) + 1
                todo.append((child, key[1]))
    return counts


def _delete_cmd(kind: Kind) -> Callable[..., None]:
    @guarded
    def delete(**kw: Any) -> None:
        opts = opts_of(kw)
        cascade: bool = kw["cascade"]
        with ApiClient(opts.api) as client:
            ident = Resolver(client).ident(kind, kw["ident"])
            counts = dependents(client, kind, ident) if cascade and kind.children else {}
            with progress() as bar:
                bar.add_task(
                    f"deleting {kind.name} {ident}" + (" and dependents" if counts else "")
                )
                body = client.delete(kind.collection, ident, cascade=cascade)
        if opts.json:
            if body is not None:
                output.print_json(body)
            return
        extra = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        output.info(
            f"deleted {kind.name.replace('_', '-')} {ident}" + (f" with {extra}" if extra else "")
        )

    params = [
        kw_param("ident", IDENT, inspect.Parameter.empty),
        kw_param(
            "cascade",
            Annotated[
                bool,
                typer.Option(
                    "--cascade",
                    help="also delete dependent objects ("
                    + ", ".join(c for c, _ in kind.children)
                    + ")"
                    if kind.children
                    else "delete even if referenced",
                ),
            ],
            False,
        ),
        *common_params(view=False),
    ]
    delete.__doc__ = f"Delete a {kind.name.replace('_', ' ')}."
    return with_signature(delete, params)


def kind_commands(kind: Kind, group: typer.Typer) -> None:
    """Add the five commands of ``kind`` to its group."""
    specs = field_specs(kind)
    group.command("create")(_create_cmd(kind, specs))
    group.command("list")(list_cmd(kind, common_params()))
    group.command("show")(_show_cmd(kind))
    group.command("update")(_update_cmd(kind, specs))
    group.command("delete")(_delete_cmd(kind))


__all__ = ["dependents", "kind_commands"]
