"""Object commands, generated from :data:`netloom.model.kinds.KINDS`.

For every kind there is a sub-command group named like the kind with dashes (``tunnel-zone``)
with ``create``, ``list``, ``show``, ``update`` and ``delete``; their ``--field`` options are
derived from the pydantic record, so a field added to the model appears in the CLI without a
line here. Ports also get ``bind``/``unbind``/``link``/``unlink``, and ``netloom apply -f`` creates
a whole topology from one JSON file in dependency order.

The CLI validates only what it must to build a request (JSON syntax, integers); the API is the
one place that checks records, so the CLI and the API can never disagree on what is valid.
Reference fields (``--tenant-id``...) and the ``ID`` arguments accept a unique name as well as an
id: the CLI looks the name up through the kind's ``name`` filter.
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netloom.api.client import ApiClient, default_api_url, items_of
from netloom.cli import output
from netloom.errors import (
    ApiUnreachable,
    Conflict,
    InvalidInput,
    NetloomError,
    NotFound,
    print_error,
)
from netloom.model.kinds import BY_COLLECTION, KINDS, Kind, Ref

Doc = dict[str, Any]
Shape = Literal["str", "bool", "int", "list", "json_list", "json"]

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3

# ---------------------------------------------------------------------------------------------
# Field specs: what the pydantic model says about each field, in CLI terms.


@dataclass(frozen=True)
class FieldSpec:
    name: str  # record field: "tenant_id"
    shape: Shape
    required: bool
    choices: tuple[str, ...] = ()
    item_int: bool = False  # list of ints
    model: type[BaseModel] | None = None  # nested record of json / json_list fields
    ref: Ref | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def param(self) -> str:
        return "f_" + self.name

    def help(self) -> str:
        parts: list[str] = []
        if self.ref is not None:
            targets = " or ".join(t.replace("_", "-") for t in self.ref.target)
            parts.append(f"{targets} id or unique name")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.shape == "list":
            parts.append("repeatable or comma-separated")
        if self.model is not None:
            keys = ", ".join(self.model.model_fields)
            if self.shape == "json_list":
                parts.append(f"JSON object or list of objects {{{keys}}}; repeatable")
            else:
                parts.append(f"JSON object {{{keys}}}")
                if set(self.model.model_fields) == {"start", "end"}:
                    parts[-1] += " or N or N-M"
        if self.required:
            parts.append("required on create")
        return "; ".join(parts)


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the value type."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _spec(kind: Kind, name: str) -> FieldSpec:
    info = kind.record.model_fields[name]
    tp = _unwrap(info.annotation)
    ref = next((r for r in kind.refs if r.field == name), None)
    required = info.is_required()
    origin = get_origin(tp)
    if tp is bool:
        return FieldSpec(name, "bool", required)
    if tp is int:
        return FieldSpec(name, "int", required)
    if origin is Literal:
        return FieldSpec(name, "str", required, tuple(str(a) for a in get_args(tp)), ref=ref)
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return FieldSpec(name, "str", required, tuple(str(e.value) for e in tp), ref=ref)
    if origin is list:
        item = _unwrap(get_args(tp)[0])
        if _is_model(item):
            return FieldSpec(name, "json_list", required, model=item, ref=ref)
        return FieldSpec(name, "list", required, item_int=item is int, ref=ref)
    if _is_model(tp):
        return FieldSpec(name, "json", required, model=tp, ref=ref)
    return FieldSpec(name, "str", required, ref=ref)


def field_specs(kind: Kind) -> list[FieldSpec]:
    """The writable fields of a kind (``id`` and system-owned fields excluded)."""
    return [
        _spec(kind, n) for n in kind.record.model_fields if n != "id" and n not in kind.read_only
    ]


# ---------------------------------------------------------------------------------------------
# Value parsing: option strings -> JSON values (errors name the field).


def _parse_int(spec_name: str, raw: str) -> int:
    try:
        return int(raw.strip(), 0)  # 0x0800 works for ethertypes
    except ValueError:
        raise InvalidInput(f"{raw!r} is not an integer", field=spec_name) from None


def _parse_json(field: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON: {exc.msg} at char {exc.pos}", field=field) from None


def _parse_range(field: str, raw: str) -> Any:
    """``80``, ``1000-2000`` or a JSON object for a PortRange."""
    text = raw.strip()
    if text.startswith("{"):
        return _parse_json(field, text)
    lo, sep, hi = text.partition("-")
    start = _parse_int(field, lo)
    return {"start": start, "end": _parse_int(field, hi) if sep else start}


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """Turn what click collected for one option into the JSON value of the field."""
    if spec.shape == "bool":
        return bool(raw)
    if spec.shape == "int":
        return _parse_int(spec.name, str(raw))
    if spec.shape == "list":
        items = [p.strip() for chunk in raw for p in str(chunk).split(",") if p.strip()]
        return [_parse_int(spec.name, i) for i in items] if spec.item_int else items
    if spec.shape == "json_list":
        out: list[Any] = []
        for chunk in raw:
            value = _parse_json(spec.name, chunk)
            out.extend(value if isinstance(value, list) else [value])
        return out
    if spec.shape == "json":
        if spec.model is not None and set(spec.model.model_fields) == {"start", "end"}:
            return _parse_range(spec.name, str(raw))
        return _parse_json(spec.name, str(raw))
    if spec.choices and str(raw) not in spec.choices:
        raise InvalidInput(f"{raw!r} is not one of {', '.join(spec.choices)}", field=spec.name)
    return str(raw)


def load_data(raw: str | None) -> Doc:
    """``--data '{json}'`` or ``--data @file.json`` (``@-``: stdin)."""
    if raw is None:
        return {}
    text = raw
    if raw.startswith("@"):
        path = raw[1:]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="data") from None
    value = _parse_json("data", text)
    if not isinstance(value, dict):
        raise InvalidInput("--data must be a JSON object", field="data")
    return value


def parse_filters(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"filter {pair!r} is not field=value", field="filter")
        out[key.strip().replace("-", "_")] = value
    return out


# ---------------------------------------------------------------------------------------------
# Names -> ids.


def is_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Resolver:
    """Resolves ids or unique names of objects, remembering the answers for one command."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._cache: dict[tuple[tuple[str, ...], str], tuple[str, str]] = {}

    def find(
        self, targets: tuple[str, ...], value: str, field: str | None = None
    ) -> tuple[str, str]:
        """(kind name, id) of the object ``value`` names among ``targets`` kinds.

        An id is checked only when several kinds are possible (to learn which); a name must
        match exactly one object across them."""
        key = (targets, value)
        if key in self._cache:
            return self._cache[key]
        found = (
            self._by_id(targets, value) if is_id(value) else self._by_name(targets, value, field)
        )
        self._cache[key] = found
        return found

    def _by_id(self, targets: tuple[str, ...], value: str) -> tuple[str, str]:
        if len(targets) == 1:
            return targets[0], value
        for t in targets:
            try:
                self.client.get(KINDS[t].collection, value)
            except NetloomError as exc:
                if getattr(exc, "status", None) == 404:
                    continue
                raise
            return t, value
        raise NotFound(f"no {' or '.join(targets)} with id {value}")

    def _by_name(self, targets: tuple[str, ...], value: str, field: str | None) -> tuple[str, str]:
        named = [t for t in targets if "name" in KINDS[t].filters]
        what = " or ".join(t.replace("_", "-") for t in targets)
        if not named:
            raise InvalidInput(f"{value!r} is not an id (a {what} has no name)", field=field)
        hits = [
            (t, str(d["id"]))
            for t in named
            for d in self.client.list(KINDS[t].collection, {"name": value})
            if d.get("name") == value  # the API may ignore an unknown filter: check
        ]
        if not hits:
            raise NotFound(f"no {what} named {value!r}", field=field)
        if len(hits) > 1:
            raise Conflict(f"{len(hits)} objects named {value!r}: use an id", field=field)
        return hits[0]

    def ident(self, kind: Kind, value: str) -> str:
        return self.find((kind.name,), value)[1]

    def refs(self, kind: Kind, data: Doc) -> Doc:
        """Replace names by ids in every reference field of ``data`` (ids pass through)."""
        out = dict(data)
        for ref in kind.refs:
            value = out.get(ref.field)
            if value is None:
                continue
            if not ref.many:
                if isinstance(value, str) and value:
                    out[ref.field] = self.find(ref.target, value, ref.field)[1]
            elif isinstance(value, list):
                out[ref.field] = [self._ref_item(ref, v) for v in value]
        return out

    def _ref_item(self, ref: Ref, item: Any) -> Any:
        if ref.subfield is None:
            return self.find(ref.target, item, ref.field)[1] if isinstance(item, str) else item
        if isinstance(item, dict) and isinstance(item.get(ref.subfield), str):
            sub = self.find(ref.target, item[ref.subfield], f"{ref.field}.{ref.subfield}")[1]
            return {**item, ref.subfield: sub}
        return item


def infer_port_type(resolver: Resolver, data: Doc) -> Doc:
    """A port's ``type`` follows from its device: fill it in when the user left it out."""
    if data.get("type") or not isinstance(data.get("device_id"), str):
        return data
    device_kind, _ = resolver.find(("bridge", "router"), data["device_id"], "device_id")
    return {**data, "type": device_kind}


# ---------------------------------------------------------------------------------------------
# Shared command plumbing.


@dataclass
class Settings:
    api: str | None = None
    json: bool = False


def settings(ctx: typer.Context | None, api: str | None, json_out: bool) -> Settings:
    """Per-command options win over the root ``netloom --api/--json`` ones, which win over
    ``$NETLOOM_API``."""
    root = ctx.find_root().obj if ctx is not None else None
    base = root if isinstance(root, Settings) else Settings()
    return Settings(api=api or base.api or default_api_url(), json=json_out or base.json)


def fail(exc: BaseException) -> NoReturn:
    print_error(exc)
    raise typer.Exit(EXIT_UNREACHABLE if isinstance(exc, ApiUnreachable) else EXIT_FAILED)


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Every failure becomes one stderr line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except NetloomError as exc:
            fail(exc)
        except KeyboardInterrupt:
            fail(NetloomError("interrupted"))

    return wrapper


def _kw(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _common_params() -> list[inspect.Parameter]:
    return [
        _kw("ctx", typer.Context),
        _kw(
            "api",
            Annotated[
                str | None,
                typer.Option(
                    "--api", help="API URL (default $NETLOOM_API or http://127.0.0.1:8181)"
                ),
            ],
        ),
        _kw(
            "json_out",
            Annotated[bool, typer.Option("--json", help="print the API's JSON")],
            False,
        ),
    ]


def _field_param(spec: FieldSpec) -> inspect.Parameter:
    """One ``--field`` option. Booleans are tri-state (``--x``/``--no-x``/absent) so that an
    update changes only what was given."""
    help_text = spec.help()
    if spec.shape == "bool":
        flag = f"{spec.option}/--no-{spec.option[2:]}"
        return _kw(spec.param, Annotated[bool | None, typer.Option(flag, help=help_text)])
    if spec.shape in ("list", "json_list"):
        opt = typer.Option(spec.option, help=help_text, metavar="VALUE")
        return _kw(spec.param, Annotated[list[str] | None, opt])
    metavar = "|".join(spec.choices) if 0 < len(spec.choices) <= 4 else spec.shape.upper()
    metavar = metavar.replace("STR", "TEXT")
    opt = typer.Option(spec.option, help=help_text, metavar=metavar)
    return _kw(spec.param, Annotated[str | None, opt])


def _with_signature(
    fn: Callable[..., None], params: list[inspect.Parameter]
) -> Callable[..., None]:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    return fn


def _collect(specs: list[FieldSpec], kwargs: dict[str, Any]) -> Doc:
    """The fields the user gave as options (unset options are None and left out)."""
    out: Doc = {}
    for spec in specs:
        raw = kwargs.get(spec.param)
        if raw is None or (isinstance(raw, list) and not raw and spec.shape != "bool"):
            continue
        out[spec.name] = parse_value(spec, raw)
    return out


def show(kind: Kind, doc: Doc, opts: Settings) -> None:
    if opts.json:
        output.print_json(doc)
    else:
        output.render_record(kind, doc)


def progress(total: int | None = None) -> Progress:
    """A progress display on stderr (stdout stays clean for ``--json``), drawn only on a
    terminal so logs and pipes get no control characters."""
    err = Console(file=sys.stderr)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if total is None:
        columns = [TextColumn("{task.description}"), TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


# ---------------------------------------------------------------------------------------------
# Per-kind commands.


def _create_cmd(kind: Kind, specs: list[FieldSpec]) -> Callable[..., None]:
    @guarded
    def create(**kw: Any) -> None:
        opts = settings(kw["ctx"], kw["api"], kw["json_out"])
        data = {**load_data(kw["data"]), **_collect(specs, kw)}
        if kw["id"]:
            data["id"] = kw["id"]
        with ApiClient(opts.api) as client:
            resolver = Resolver(client)
            data = resolver.refs(kind, data)
            if kind.name == "port":
                data = infer_port_type(resolver, data)
            show(kind, client.create(kind.collection, data), opts)

    params = [
        *(_field_param(s) for s in specs),
        _kw("id", Annotated[str | None, typer.Option("--id", help="choose the id (UUID)")]),
        _kw(
            "data",
            Annotated[
                str | None,
                typer.Option("--data", help="JSON object or @file.json; options override it"),
            ],
        ),
        *_common_params(),
    ]
    create.__doc__ = f"Create a {kind.name.replace('_', ' ')}."
    return _with_signature(create, params)


def _list_cmd(kind: Kind) -> Callable[..., None]:
    refs = {r.field: r for r in kind.refs}

    @guarded
    def list_(**kw: Any) -> None:
        opts = settings(kw["ctx"], kw["api"], kw["json_out"])
        filters = parse_filters(kw["filter"])
        filters.update({f: kw[f"q_{f}"] for f in kind.filters if kw.get(f"q_{f}") is not None})
        with ApiClient(opts.api) as client:
            resolver = Resolver(client)
            for f, value in list(filters.items()):
                if f in refs and value and not refs[f].many:
                    filters[f] = resolver.find(refs[f].target, value, f)[1]
            body = client.list_raw(kind.collection, filters)
        if opts.json:
            output.print_json(body)
        else:
            output.render_list(kind, items_of(body))

    params = [
        _kw(
            f"q_{f}",
            Annotated[
                str | None,
                typer.Option("--" + f.replace("_", "-"), help=f"only objects whose {f} is this"),
            ],
        )
        for f in kind.filters
    ]
    params += [
        _kw(
            "filter",
            Annotated[
                list[str] | None,
                typer.Option("--filter", help="field=value (repeatable)", metavar="FIELD=VALUE"),
            ],
        ),
        *_common_params(),
    ]
    list_.__doc__ = f"List {kind.collection.replace('_', ' ')}, optionally filtered."
    return _with_signature(list_, params)


_IDENT = Annotated[str, typer.Argument(help="id, or unique name", metavar="ID")]


def _show_cmd(kind: Kind) -> Callable[..., None]:
    @guarded
    def show_(**kw: Any) -> None:
        opts = settings(kw["ctx"], kw["api"], kw["json_out"])
        with ApiClient(opts.api) as client:
            ident = Resolver(client).ident(kind, kw["ident"])
            show(kind, client.get(kind.collection, ident), opts)

    show_.__doc__ = f"Show one {kind.name.replace('_', ' ')}."
    return _with_signature(
        show_, [_kw("ident", _IDENT, inspect.Parameter.empty), *_common_params()]
    )


def _update_cmd(kind: Kind, specs: list[FieldSpec]) -> Callable[..., None]:
    writable = {s.name for s in specs}

    @guarded
    def update(**kw: Any) -> None:
        opts = settings(kw["ctx"], kw["api"], kw["json_out"])
        changes = {**load_data(kw["data"]), **_collect(specs, kw)}
        for name in kw["unset"] or ():
            field = name.replace("-", "_")
            if field not in writable:
                raise InvalidInput(f"no writable field {name!r}", field=field)
            changes[field] = None
        if not changes:
            raise InvalidInput("nothing to update: give --FIELD options, --unset or --data")
        if_version = _parse_int("if_version", kw["if_version"]) if kw["if_version"] else None
        with ApiClient(opts.api) as client:
            resolver = Resolver(client)
            ident = resolver.ident(kind, kw["ident"])
            changes = resolver.refs(kind, changes)
            show(kind, client.update(kind.collection, ident, changes, if_version=if_version), opts)

    params = [
        _kw("ident", _IDENT, inspect.Parameter.empty),
        *(_field_param(s) for s in specs),
        _kw(
            "unset",
            Annotated[
                list[str] | None,
                typer.Option(
                    "--unset", help="set this field to null (repeatable)", metavar="FIELD"
                ),
            ],
        ),
        _kw(
            "if_version",
            Annotated[
                str | None,
                typer.Option(
                    "--if-version", help="only if the object is still at this version", metavar="N"
                ),
            ],
        ),
        _kw(
            "data",
            Annotated[
                str | None, typer.Option("--data", help="JSON object or @file.json of changes")
            ],
        ),
        *_common_params(),
    ]
    update.__doc__ = f"Change fields of a {kind.name.replace('_', ' ')} (others are kept)."
    return _with_signature(update, params)


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
        opts = settings(kw["ctx"], kw["api"], kw["json_out"])
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
        _kw("ident", _IDENT, inspect.Parameter.empty),
        _kw(
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
        *_common_params(),
    ]
    delete.__doc__ = f"Delete a {kind.name.replace('_', ' ')}."
    return _with_signature(delete, params)


# ---------------------------------------------------------------------------------------------
# Port bindings and links.

_PORT = KINDS["port"]


def _port_bind(
    ctx: typer.Context,
    port: _IDENT,
    host: Annotated[str, typer.Option("--host", help="host id or name")],
    interface: Annotated[str, typer.Option("--interface", help="interface name on that host")],
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Bind a port to an interface of a host (makes it exterior)."""
    opts = settings(ctx, api, json_out)
    with ApiClient(opts.api) as client:
        r = Resolver(client)
        show(
            _PORT,
            client.bind_port(r.ident(_PORT, port), r.ident(KINDS["host"], host), interface),
            opts,
        )


def _port_unbind(
    ctx: typer.Context,
    port: _IDENT,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Remove a port's binding."""
    opts = settings(ctx, api, json_out)
    with ApiClient(opts.api) as client:
        _after(client, client.unbind_port(Resolver(client).ident(_PORT, port)), port, opts)


def _port_link(
    ctx: typer.Context,
    port: _IDENT,
    peer: Annotated[str, typer.Option("--peer", help="peer port id or name")],
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Link two ports (interior link, e.g. router port <-> bridge port)."""
    opts = settings(ctx, api, json_out)
    with ApiClient(opts.api) as client:
        r = Resolver(client)
        show(_PORT, client.link_ports(r.ident(_PORT, port), r.ident(_PORT, peer)), opts)


def _port_unlink(
    ctx: typer.Context,
    port: _IDENT,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Remove a port's link (both sides)."""
    opts = settings(ctx, api, json_out)
    with ApiClient(opts.api) as client:
        _after(client, client.unlink_port(Resolver(client).ident(_PORT, port)), port, opts)


def _after(client: ApiClient, body: Any, port: str, opts: Settings) -> None:
    """Show what an unbind/unlink answered; an empty answer shows the port as it is now."""
    if isinstance(body, dict):
        show(_PORT, body, opts)
    elif not opts.json:
        show(_PORT, client.get(_PORT.collection, Resolver(client).ident(_PORT, port)), opts)


# ---------------------------------------------------------------------------------------------
# apply -f topology.json


@dataclass
class Document:
    index: int
    kind: Kind
    handle: str | None
    data: Doc
    link_to: str | None = None  # peer_id, applied after creation
    bind: tuple[str, str] | None = None  # (host_id, interface_name), applied after creation


def _kind_named(raw: Any, index: int) -> Kind:
    name = str(raw or "").replace("-", "_")
    kind = KINDS.get(name) or BY_COLLECTION.get(name)
    if kind is None:
        raise InvalidInput(f"document #{index}: unknown kind {raw!r}", field="kind")
    return kind


def parse_documents(body: Any) -> list[Document]:
    """A JSON list of ``{"kind": ..., fields...}``; an optional ``"ref"`` (or the ``name``)
    is the handle other documents use as ``"@handle"``. A port's ``peer_id`` and its binding
    are applied after every object exists, so two ports can name each other."""
    if isinstance(body, dict) and isinstance(body.get("objects"), list):
        body = body["objects"]
    if not isinstance(body, list):
        raise InvalidInput("the file must hold a JSON list of {kind, ...} documents", field="file")
    docs: list[Document] = []
    handles: set[str] = set()
    for i, raw in enumerate(body, 1):
        if not isinstance(raw, dict):
            raise InvalidInput(f"document #{i} is not a JSON object", field="file")
        data = dict(raw)
        kind = _kind_named(data.pop("kind", None), i)
        handle = data.pop("ref", None) or data.get("name") or None
        if handle is not None:
            handle = str(handle)
            if handle in handles:
                raise InvalidInput(f"document #{i}: handle {handle!r} used twice", field="ref")
            handles.add(handle)
        doc = Document(i, kind, handle, data)
        if kind.name == "port":
            doc.link_to = data.pop("peer_id", None)
            if data.get("host_id") is not None:
                doc.bind = (str(data.pop("host_id")), str(data.pop("interface_name", "") or ""))
        docs.append(doc)
    return docs


def _handles_in(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("@"):
        yield value[1:]
    elif isinstance(value, list):
        for v in value:
            yield from _handles_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _handles_in(v)


def creation_order(docs: list[Document]) -> list[Document]:
    """Documents ordered so each comes after the ones it references (Kahn's algorithm,
    stable: file order among independent documents)."""
    by_handle = {d.handle: d for d in docs if d.handle}
    deps: dict[int, set[int]] = {}
    for d in docs:
        needs = set()
        for h in _handles_in(d.data):
            if h not in by_handle:
                raise InvalidInput(f"document #{d.index}: unknown reference @{h}", field="ref")
            needs.add(by_handle[h].index)
        for h in _handles_in([d.link_to, *(d.bind or ())]):
            if h not in by_handle:
                raise InvalidInput(f"document #{d.index}: unknown reference @{h}", field="ref")
        deps[d.index] = needs - {d.index}
    ordered: list[Document] = []
    done: set[int] = set()
    pending = list(docs)
    while pending:
        ready = [d for d in pending if deps[d.index] <= done]
        if not ready:
            cycle = ", ".join(d.handle or f"#{d.index}" for d in pending)
            raise InvalidInput(f"reference cycle among: {cycle}", field="ref")
        for d in ready:
            ordered.append(d)
            done.add(d.index)
        pending = [d for d in pending if d.index not in done]
    return ordered


def _where(d: Document) -> str:
    return f"document #{d.index} ({d.kind.name}{' ' + d.handle if d.handle else ''})"


def _substitute(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, list):
        return [_substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    return value


class Applier:
    """Creates the documents, then the links and bindings; on failure removes what it
    created (newest first) so a bad file changes nothing."""

    def __init__(self, client: ApiClient, docs: list[Document]) -> None:
        self.client = client
        self.resolver = Resolver(client)
        self.docs = creation_order(docs)
        self.ids: dict[str, str] = {}
        self.created: list[tuple[Document, Doc]] = []
        self._current = "before the first document"  # where a failure happened

    def steps(self) -> int:
        links = {
            frozenset((d.handle or f"#{d.index}", str(d.link_to).removeprefix("@")))
            for d in self.docs
            if d.link_to
        }
        return len(self.docs) + len(links) + sum(1 for d in self.docs if d.bind)

    def run(self, advance: Callable[[str], None]) -> list[tuple[Document, Doc]]:
        try:
            for d in self.docs:
                advance(f"creating {d.kind.name} {d.handle or ''}")
                self._create(d)
            self._links_and_bindings(advance)
        except NetloomError as exc:
            self._rollback()
            exc.message = f"{self._current}: {exc.message} (nothing kept)"
            raise
        return self.created

    def _create(self, d: Document) -> None:
        self._current = _where(d)
        data = self.resolver.refs(d.kind, _substitute(d.data, self.ids))
        if d.kind.name == "port":
            data = infer_port_type(self.resolver, data)
        doc = self.client.create(d.kind.collection, data)
        self.created.append((d, doc))
        if d.handle:
            self.ids[d.handle] = str(doc["id"])

    def _links_and_bindings(self, advance: Callable[[str], None]) -> None:
        """Link (once per pair) and bind the ports that asked for it; a link changes both
        ports, so the peer's record is read again to show what the API holds."""
        position = {str(doc["id"]): i for i, (_, doc) in enumerate(self.created)}
        linked: set[frozenset[str]] = set()
        for d, doc in list(self.created):
            self._current = _where(d)
            me = str(doc["id"])
            if d.link_to:
                target = str(_substitute(d.link_to, self.ids))
                peer = self.resolver.find(("port",), target, "peer_id")[1]
                if frozenset((me, peer)) not in linked:
                    advance(f"linking {d.handle or me}")
                    linked.add(frozenset((me, peer)))
                    self._replace(position, self.client.link_ports(me, peer))
                    if peer in position:
                        self._replace(position, self.client.get("ports", peer))
            if d.bind:
                target = str(_substitute(d.bind[0], self.ids))
                host = self.resolver.find(("host",), target, "host_id")[1]
                advance(f"binding {d.handle or me}")
                self._replace(position, self.client.bind_port(me, host, d.bind[1]))

    def _replace(self, position: dict[str, int], doc: Doc) -> None:
        i = position[str(doc["id"])]
        self.created[i] = (self.created[i][0], doc)

    def _rollback(self) -> None:
        for d, doc in reversed(self.created):
            try:
                if d.kind.name == "port" and doc.get("peer_id"):
                    self.client.unlink_port(str(doc["id"]))
                self.client.delete(d.kind.collection, str(doc["id"]), cascade=True)
            except NetloomError:
                continue  # already gone with a cascade, or the API went away: best effort


def _apply(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Option("-f", "--file", help="JSON list of {kind, ...} documents; - for stdin")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only print the creation order")
    ] = False,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the created objects' JSON")
    ] = False,
) -> None:
    """Create a topology from a file, in dependency order.

    Each document is {"kind": "bridge", "name": "b1", "tenant_id": "@t1", ...}: "@x" refers
    to the document whose "ref" (or else "name") is x; plain names and ids of objects that
    already exist work too. Ports may carry "peer_id" (linked once both exist) and
    "host_id" + "interface_name" (bound after creation). If anything fails, what was created
    is deleted again.
    """
    opts = settings(ctx, api, json_out)
    text = load_data_text(file)
    docs = parse_documents(_parse_json("file", text))
    if dry_run:
        ordered = creation_order(docs)
        rows = [
            (d.index, d.kind.name, d.handle or "", d.link_to or "", (d.bind or ("",))[0])
            for d in ordered
        ]
        if opts.json:
            output.print_json([{"index": r[0], "kind": r[1], "ref": r[2]} for r in rows])
        else:
            output.render_rows("creation order", ("#", "kind", "ref", "link", "bind"), rows)
        return
    with ApiClient(opts.api) as client:
        applier = Applier(client, docs)
        with progress(applier.steps()) as bar:
            task = bar.add_task("applying", total=applier.steps())

            started = False

            def advance(what: str) -> None:
                """Called as each step starts: the previous one is then done."""
                nonlocal started
                bar.update(task, advance=1 if started else 0, description=what)
                started = True

            created = applier.run(advance)
            bar.update(task, completed=applier.steps())
    if opts.json:
        output.print_json([doc for _, doc in created])
    else:
        output.render_rows(
            f"created {len(created)} objects",
            ("kind", "ref", "id"),
            ((d.kind.name, d.handle or "", doc.get("id")) for d, doc in created),
        )


def load_data_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None


# ---------------------------------------------------------------------------------------------
# Registration.


def _root_options(
    ctx: typer.Context,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help="API URL for object commands (default $NETLOOM_API or http://127.0.0.1:8181)",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="object commands print the API's JSON")
    ] = False,
) -> None:
    """netloom: network virtualization overlay."""
    ctx.obj = Settings(api=api, json=json_out)


def kind_app(kind: Kind) -> typer.Typer:
    """The command group of one kind."""
    name = kind.name.replace("_", "-")
    group = typer.Typer(help=f"Manage {kind.collection.replace('_', ' ')}.", no_args_is_help=True)
    specs = field_specs(kind)
    group.command("create")(_create_cmd(kind, specs))
    group.command("list")(_list_cmd(kind))
    group.command("show")(_show_cmd(kind))
    group.command("update")(_update_cmd(kind, specs))
    group.command("delete")(_delete_cmd(kind))
    if kind.name == "port":
        group.command("bind")(guarded(_port_bind))
        group.command("unbind")(guarded(_port_unbind))
        group.command("link")(guarded(_port_link))
        group.command("unlink")(guarded(_port_unlink))
    group.info.name = name
    return group


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add one group per kind, ``apply``, and the root ``--api``/``--json`` options (only if
    no other module claimed the root callback)."""
    del bench
    if app.registered_callback is None:
        app.callback()(_root_options)
    for kind in KINDS.values():
        app.add_typer(kind_app(kind), name=kind.name.replace("_", "-"))
    app.command("apply")(guarded(_apply))


__all__ = [
    "Applier",
    "Document",
    "FieldSpec",
    "Resolver",
    "creation_order",
    "field_specs",
    "parse_documents",
    "parse_value",
    "register",
]
