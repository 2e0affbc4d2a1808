"""Fixtures for ``bench agent100``: a unique lab name, and a check afterwards that nothing of
that lab is left (namespaces, state file, BPF pins, processes), pass or fail."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from netloom.lab import lab as labmod
from netloom.lab import netns


@pytest.fixture
def lab_name() -> Iterator[str]:
    """``a`` + 6 hex digits; torn down by name afterwards in case the run itself could not."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("iperf3") is None:
        pytest.skip("bench agent100 needs root, nsenter and iperf3")
    name = "a" + secrets.token_hex(3)
    yield name
    labmod.down(name)
    for ns in netns.list_netns(f"{name}-"):
        netns.delete(ns)
