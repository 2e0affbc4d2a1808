"""Order statistics every benchmark reports with one convention.

``percentile(values, q)``: ``q`` is a fraction in [0, 1]; the nearest-rank method, no
interpolation: the smallest observed value with at least ``q`` of the values at or below it
(index ``ceil(q * n) - 1``, and the minimum for ``q = 0``). An empty list has no percentile
(``None``), one value is every percentile of itself.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from netloom.errors import InvalidInput


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (``q`` in [0, 1]) of ``values``; None if empty."""
    if not 0.0 <= q <= 1.0:
        raise InvalidInput(f"percentile fraction {q} is outside [0, 1]", field="q")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def median(values: Iterable[float]) -> float | None:
    """The median (the mean of the two middle values for an even count); None if empty."""
    got = list(values)
    return statistics.median(got) if got else None


def ratio(measured: float | None, base: float | None) -> float | None:
    """``measured / base``; None when either is missing or ``base`` is zero."""
    if measured is None or base is None or base == 0:
        return None
    return measured / base


def rounded(value: float | None, digits: int) -> float | None:
    """``round(value, digits)``, None stays None."""
    return None if value is None else round(value, digits)


def summary(prefix: str, values: list[float], digits: int = 3) -> dict[str, float | None]:
    """``<prefix>_p50``, ``_p99`` and ``_max`` of ``values`` (None each when empty)."""
    return {
        f"{prefix}_p50": rounded(percentile(values, 0.5), digits),
        f"{prefix}_p99": rounded(percentile(values, 0.99), digits),
        f"{prefix}_max": rounded(max(values) if values else None, digits),
    }


__all__ = ["median", "percentile", "ratio", "rounded", "summary"]
