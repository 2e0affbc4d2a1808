"""Fixtures of the ``bench perf`` tests.

Namespace-creating tests need root; the harness itself names everything ``nlb-<random>`` and
removes it, and :func:`leftover_guard` fails a test that leaves any of *its* namespaces (the
ones it reports having made) behind, then removes them so one failure does not leak into the
next test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from netloom.lab import netns


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


@pytest.fixture
def made() -> Iterator[list[str]]:
    """Namespaces a test learned it created; any still present afterwards is removed here and
    the test is failed by its own assertion (the fixture only guarantees cleanup)."""
    names: list[str] = []
    yield names
    for name in names:
        if netns.exists(name):
            netns.delete(name)
