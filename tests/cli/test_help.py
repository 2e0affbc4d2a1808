"""Every command of the ``netloom`` app answers ``--help``: the command tree is walked from the
click command typer builds, so a command added later is covered without a line here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from netloom.cli.main import app
from netloom.model.kinds import KINDS

pytestmark = pytest.mark.unit


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    if isinstance(cmd, TyperGroup):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app), ()))


def test_the_walk_finds_the_command_tree() -> None:
    paths = {p for p, _ in COMMANDS}
    assert {("cluster",), ("port", "list"), ("bench",), ("trace",)} <= paths
    assert len(paths) > 60


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "netloom")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="netloom", env={"COLUMNS": "120"})
    assert result.exit_code == 0, f"netloom {' '.join(path)} --help:\n{result.output}"
    assert result.exception is None
    assert "usage" in result.output.lower()
    cmd = dict(COMMANDS)[path]
    assert (cmd.help or "").strip(), f"netloom {' '.join(path)} has no help text"


def test_every_list_and_show_has_output_options() -> None:
    groups = {k.replace("_", "-") for k in KINDS}
    for path, cmd in COMMANDS:
        if len(path) == 2 and path[0] in groups and path[1] in ("list", "show"):
            opts = {o for p in cmd.params for o in p.opts}
            assert {"-f", "--format", "-c", "--column", "--json"} <= opts, path
            if path[-1] == "list":
                assert "--long" in opts, path
