"""Fixtures for the demo tests: unique lab names, torn down however a test ends (by name, from
the lab's state file, then any namespace still carrying the name as a prefix)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from netloom.lab import lab as labmod
from netloom.lab import netns


def _root_ready() -> str | None:
    if os.geteuid() != 0:
        return "the demo needs root"
    for tool in ("nsenter", "udhcpc", "iperf3", "ss", "clang"):
        if shutil.which(tool) is None:
            return f"the demo needs {tool}"
    return None


@pytest.fixture
def demo_names() -> Iterator[list[str]]:
    """Lab names handed to a test; each is removed at the end, pass or fail."""
    reason = _root_ready()
    if reason:
        pytest.skip(reason)
    names: list[str] = []
    yield names
    errors = []
    for name in names:
        try:
            labmod.down(name)
        except Exception as exc:  # keep removing the others
            errors.append(f"{name}: {exc}")
        for ns in netns.list_netns(f"{name}-"):
            netns.delete(ns)
    assert not errors, errors


@pytest.fixture
def demo_name(demo_names: list[str]) -> str:
    name = "td" + secrets.token_hex(3)
    demo_names.append(name)
    return name
