"""Waiting in tests: poll a condition until it holds, with a deadline; never sleep to prove
something happened (or did not)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["eventually", "wait_until"]


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str, step: float = 0.01
) -> float:
    """Poll ``predicate`` until truthy; returns the seconds it took. AssertionError naming
    ``message`` (what was awaited) once ``timeout`` seconds have passed."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(step)
    return time.monotonic() - start


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    """:func:`wait_until` for asyncio tests: the loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)
