"""What the flow history answers (the filters a query takes, the rows it returns) and keeps.

A flow belongs to a time window when it overlaps it: it was last seen at or after ``since`` and
first seen at or before ``until``. Counters are the flow's totals (not prorated to the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netloom.errors import InvalidInput

TALKER_KEYS = {
    "source": ("src_ip",),
    "destination": ("dst_ip",),
    "pair": ("src_ip", "dst_ip"),
    "port": ("in_port_id",),
}
VERDICTS = ("forward", "drop", "reject")
DROP_VERDICTS = ("drop", "reject")
MAX_LIMIT = 10_000
MIN_BUCKET_S = 0.001  # drops over time: a bucket's length
MAX_BUCKET_S = 366 * 86400.0
DEFAULT_MAX_AGE_S = 7 * 86400.0  # retention: seconds a flow is kept after it was last seen
DEFAULT_MAX_FLOWS = 10_000_000  # retention: flows kept at most (the oldest go first)


@dataclass(frozen=True)
class FlowFilter:
    """Which flows a query looks at; every field set narrows it (``None``: any)."""

    since: float | None = None
    until: float | None = None
    port_id: str | None = None  # the flow entered or left by this port
    peer_port_id: str | None = None  # with port_id: flows between the two ports, either way
    ip: str | None = None  # source or destination address
    peer_ip: str | None = None  # with ip: flows between the two addresses, either way
    security_group_id: str | None = None  # one of the groups whose rules decided the flow
    rule_id: str | None = None
    host_id: str | None = None  # ingress or egress host
    project_id: str | None = None
    verdict: str | None = None
    proto: int | None = None

    def __post_init__(self) -> None:
        if self.peer_port_id is not None and self.port_id is None:
            raise InvalidInput("peer_port_id needs port_id", field="peer_port_id")
        if self.peer_ip is not None and self.ip is None:
            raise InvalidInput("peer_ip needs ip", field="peer_ip")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise InvalidInput(f"verdict must be one of {', '.join(VERDICTS)}", field="verdict")
        if self.proto is not None and not 0 <= self.proto <= 255:
            raise InvalidInput("proto must be between 0 and 255", field="proto")
        if None not in (self.since, self.until) and self.since > self.until:  # type: ignore[operator]
            raise InvalidInput("since is after until", field="since")

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        terms: list[str] = []
        args: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            terms.append(sql)
            args.extend(values)

        if self.since is not None:
            add("last_seen >= ?", self.since)
        if self.until is not None:
            add("first_seen <= ?", self.until)
        if self.port_id is not None and self.peer_port_id is not None:
            add(
                "((in_port_id = ? AND out_port_id = ?) OR (in_port_id = ? AND out_port_id = ?))",
                self.port_id,
                self.peer_port_id,
                self.peer_port_id,
                self.port_id,
            )
        elif self.port_id is not None:
            add("(in_port_id = ? OR out_port_id = ?)", self.port_id, self.port_id)
        if self.ip is not None and self.peer_ip is not None:
            add(
                "((src_ip = ? AND dst_ip = ?) OR (src_ip = ? AND dst_ip = ?))",
                self.ip,
                self.peer_ip,
                self.peer_ip,
                self.ip,
            )
        elif self.ip is not None:
            add("(src_ip = ? OR dst_ip = ?)", self.ip, self.ip)
        self._where_rest(add)
        return (" AND ".join(terms) or "TRUE"), args

    def _where_rest(self, add: Any) -> None:
        if self.security_group_id is not None:
            add("list_contains(security_groups, ?)", self.security_group_id)
        if self.rule_id is not None:
            add("list_contains(rules, ?)", self.rule_id)
        if self.host_id is not None:
            add("(host_id = ? OR egress_host_id = ?)", self.host_id, self.host_id)
        if self.project_id is not None:
            add("project_id = ?", self.project_id)
        if self.verdict is not None:
            add("verdict = ?", self.verdict)
        if self.proto is not None:
            add("proto = ?", self.proto)


@dataclass(frozen=True)
class Talker:
    """One key of a top-talkers answer (an address, a pair of addresses or a port)."""

    key: tuple[str | None, ...]
    bytes: int
    packets: int
    flows: int


@dataclass(frozen=True)
class DropPoint:
    """Flows a rule dropped (or rejected) in one time bucket starting at ``time``."""

    rule_id: str | None  # None: dropped with no rule (no route, no port...)
    time: float
    flows: int
    packets: int
    bytes: int


@dataclass(frozen=True)
class Page:
    """A page of a list: ``marker`` asks for the next one (``None``: the last page)."""

    items: list[Any] = field(default_factory=list)
    marker: str | None = None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def talker_columns(by: str) -> tuple[str, ...]:
    try:
        return TALKER_KEYS[by]
    except KeyError:
        raise InvalidInput(f"by must be one of {', '.join(TALKER_KEYS)}", field="by") from None


def parse_marker(marker: str) -> tuple[float, str]:
    """A flow list's marker: ``<last_seen>/<flow_id>`` of the previous page's last flow."""
    seen, sep, flow_id = marker.partition("/")
    try:
        if not sep or not flow_id:
            raise ValueError
        return float(seen), flow_id
    except ValueError:
        raise InvalidInput(f"{marker!r} is not a marker of this list", field="marker") from None


def make_marker(last_seen: float, flow_id: str) -> str:
    return f"{last_seen!r}/{flow_id}"


__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_FLOWS",
    "DROP_VERDICTS",
    "MAX_BUCKET_S",
    "MAX_LIMIT",
    "MIN_BUCKET_S",
    "TALKER_KEYS",
    "VERDICTS",
    "DropPoint",
    "FlowFilter",
    "Page",
    "Talker",
    "check_limit",
    "make_marker",
    "parse_marker",
    "talker_columns",
]
