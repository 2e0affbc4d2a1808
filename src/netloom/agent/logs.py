"""The agent core's logger and its ``key=value`` log fields."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("netloom.agent")


def kv(**fields: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


__all__ = ["kv", "log"]
