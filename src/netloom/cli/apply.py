"""``netloom apply -f``: create a topology from a plan file (:mod:`netloom.plan`), showing
progress."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import Settings, progress, settings
from netloom.cli.fields import read_text
from netloom.errors import InvalidInput
from netloom.plan import Applier, Created, Document, creation_order, parse_documents
from netloom.plan.template import bundled_plans, expand, load_plan, parse_plan_text


def _print_order(docs: list[Document], opts: Settings) -> None:
    rows = [
        (d.index, d.kind.name, d.handle or "", d.link_to or "", (d.bind or ("",))[0])
        for d in creation_order(docs)
    ]
    if opts.json:
        output.print_json([{"index": r[0], "kind": r[1], "ref": r[2]} for r in rows])
    else:
        output.render_rows("creation order", ("#", "kind", "ref", "link", "bind"), rows)


def _run(applier: Applier) -> Created:
    """Run the applier under a progress bar (on a terminal only)."""
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
    return created


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that reads as JSON (a number, a list ...) takes that type."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param wants KEY=VALUE, not {pair!r}", field="param")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def load_docs(file: str | None, plan: str | None, params: dict[str, Any]) -> list[Document]:
    """The documents of a file (``-`` for stdin) or of a bundled plan, parameters applied."""
    if (file is None) == (plan is None):
        raise InvalidInput("give exactly one of -f FILE or --plan NAME", field="file")
    if plan is not None:
        return parse_documents(load_plan(plan).expand(params))
    assert file is not None
    body = parse_plan_text(read_text(file, "file"), name=file)
    return parse_documents(expand(body, params, name=file))


def apply_cmd(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Option(
            "-f", "--file", help="plan file (JSON or YAML: a document list or a plan); - for stdin"
        ),
    ] = None,
    plan: Annotated[
        str | None, typer.Option("--plan", help="a bundled plan: " + ", ".join(bundled_plans()))
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="plan parameter KEY=VALUE (JSON)")
    ] = None,
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
    "host_id" + "interface_name" (bound). A plan ({params, objects}) takes --param values.
    If anything fails, what was created is deleted again.
    """
    opts = settings(ctx, api, json_out)
    docs = load_docs(file, plan, parse_params(param))
    if dry_run:
        _print_order(docs, opts)
        return
    with ApiClient(opts.api) as client:
        created = _run(Applier(client, docs))
    if opts.json:
        output.print_json([doc for _, doc in created])
    else:
        output.render_rows(
            f"created {len(created)} objects",
            ("kind", "ref", "id"),
            ((d.kind.name, d.handle or "", doc.get("id")) for d, doc in created),
        )


__all__ = ["apply_cmd"]
