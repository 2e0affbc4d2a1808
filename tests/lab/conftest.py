"""Fixtures for the namespace lab: labs with unique names that are torn down however the test
ends (the finalizer runs ``down`` by name, which works from the state file even when the test
crashed halfway through ``up``)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator

import pytest

from netloom.lab import lab as labmod
from netloom.lab import netns
from netloom.lab.lab import Lab


def unique_name() -> str:
    """``t`` + 6 hex digits: a valid lab name (<= 8 chars) no other run uses."""
    return "t" + secrets.token_hex(3)


@pytest.fixture(autouse=True)
def _need_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("unit") is not None:
        return  # pure: the plan, the supervisor's identity check
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("the lab needs root and nsenter")


@pytest.fixture
def lab_names() -> Iterator[list[str]]:
    """Names handed out to a test; every one is torn down at the end, pass or fail."""
    names: list[str] = []
    yield names
    errors = []
    for name in names:
        try:
            labmod.down(name)
        except Exception as exc:  # keep tearing down the others
            errors.append(f"{name}: {exc}")
        for ns in netns.list_netns(f"{name}-"):  # belt and braces: never leak a namespace
            netns.delete(ns)
    assert not errors, errors


@pytest.fixture
def new_lab(lab_names: list[str]) -> Callable[..., Lab]:
    """``new_lab(mtu=..., store=...)``: a claimed (not yet built) lab, torn down after."""

    def make(**kwargs: object) -> Lab:
        name = unique_name()
        lab_names.append(name)
        return Lab.create(name, **kwargs)  # type: ignore[arg-type]

    return make
