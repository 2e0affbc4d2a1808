"""``netloom apply -f``: create or update a topology from a plan file (:mod:`netloom.plan`),
showing progress, then what changed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from netloom.api.client import ApiClient
from netloom.cli import output
from netloom.cli.common import Settings, progress, settings
from netloom.cli.fields import read_text
from netloom.errors import InvalidInput
from netloom.plan import Applier, Change, Created, Document, parse_documents
from netloom.plan.template import bundled_plans, expand, load_plan, parse_plan_text

DONE = {"create": "created", "update": "updated", "link": "linked", "bind": "bound"}


def _summary(changes: list[Change], dry_run: bool) -> str:
    """``3 created, 1 updated`` (a dry run: ``would apply: 3 create, 1 update``)."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    done = [
        f"{n} {what if dry_run else DONE.get(what, what + 'd')}"
        for what, n in counts.items()
        if what != "unchanged"
    ]
    if not done:
        return "no change"
    return ("would apply: " if dry_run else "") + ", ".join(done)


def _changed(c: Change) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in c.changes.items())


def _print_changes(applier: Applier, created: Created, opts: Settings, dry_run: bool) -> None:
    """What the run did (or would do): one row per object, with the changed fields."""
    changes = applier.changes
    title = _summary(changes, dry_run)
    if opts.json and not dry_run:
        output.print_json([doc for _, doc in created])
    elif opts.json:
        output.print_json(
            [
                {
                    "index": c.index,
                    "action": c.action,
                    "kind": c.kind.name,
                    "ref": c.ref,
                    "id": c.id,
                    "changes": c.changes,
                }
                for c in changes
            ]
        )
    else:
        same = sum(1 for c in changes if c.action == "unchanged")
        title += f" ({same} objects unchanged)" if same else ""
        rows = [
            (c.action, c.kind.name, c.ref, c.id or "(new)", _changed(c))
            for c in changes
            if c.action != "unchanged"
        ]
        if rows:
            output.render_rows(title, ("action", "kind", "ref", "id", "changes"), rows)
        else:
            output.info(title)


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
        bool,
        typer.Option(
            "--dry-run",
            help="write nothing: show what would be created, updated (the changed fields),"
            " linked, bound and deleted. Checks that every reference resolves (through the"
            " API) and that every body is a valid record; checks that need the stored"
            " topology (address conflicts, tenancy) are made by the API when applying",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="also delete the objects of the plan's tenants (tenant documents, tenant_id"
            " values) that the plan does not name, children first; nothing else",
        ),
    ] = False,
    api: Annotated[str | None, typer.Option("--api", help="API URL")] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="print the objects' JSON (with --dry-run: the changes)"),
    ] = False,
) -> None:
    """Create or update a topology from a file, in dependency order.

    Each document is {"kind": "bridge", "name": "b1", "tenant_id": "@t1", ...}: "@x" refers
    to the document whose "ref" (or else "name") is x; plain names and ids of objects that
    already exist work too. Ports may carry "peer_id" (linked once both exist) and
    "host_id" + "interface_name" (bound). Rules take "tp_dst": 22 or "1000-2000" and
    "nw_proto": "tcp". A plan ({params, objects}) takes --param values.

    An object that exists (same kind, tenant or parent, and name; a nameless rule: same
    chain and position) is updated only where it differs, so applying a file twice changes
    nothing. If anything fails, what the run created is deleted again.
    """
    opts = settings(ctx, api, json_out)
    docs = load_docs(file, plan, parse_params(param))
    with ApiClient(opts.api) as client:
        applier = Applier(client, docs, prune=prune, dry_run=dry_run)
        created = applier.run() if dry_run else _run(applier)
    _print_changes(applier, created, opts, dry_run)


__all__ = ["apply_cmd"]
