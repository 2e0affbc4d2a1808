"""Simulation traces (readable and JSON).

During a simulation each step is appended as a plain tuple (cheap on the hot path); the
:class:`Trace` turns them into :class:`TraceStep` records only when someone looks. Probe
packets and the what-if trace are in :mod:`netloom.sim.probe`.
"""

from __future__ import annotations

from dataclasses import dataclass

# (kind, object id, object name, decision, detail); a rule's name is "chain #position name"
RawStep = tuple[str, str, str, str, str]

# rule decisions that let the packet go on to the next rule or chain
_PASSING = frozenset({"no-match", "jump", "continue", "return"})


@dataclass(frozen=True, slots=True)
class TraceStep:
    kind: str  # port, bridge, router, chain, rule, nat, conntrack, ...
    id: str
    name: str
    decision: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "decision": self.decision,
            "detail": self.detail,
        }


class Trace:
    """The ordered steps of one simulation."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[RawStep]) -> None:
        self._raw = raw

    @property
    def steps(self) -> list[TraceStep]:
        return [TraceStep(*s) for s in self._raw]

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def raw(self) -> list[RawStep]:
        """The steps as recorded (shared, not copied: do not change it)."""
        return self._raw

    def decisions(self) -> list[str]:
        """``kind:decision`` of each step; handy in tests and logs."""
        return [f"{s[0]}:{s[3]}" for s in self._raw]

    def to_json(self) -> list[dict[str, str]]:
        return [s.to_json() for s in self.steps]

    def decided_by(self) -> TraceStep | None:
        """The rule whose decision stands: the last rule that accepted, dropped, rejected or
        translated the packet, unless something other than a rule dropped it afterwards."""
        for i in range(len(self._raw) - 1, -1, -1):
            s = self._raw[i]
            if s[0] == "rule" and s[3] not in _PASSING:
                later = self._raw[i + 1 :]
                if any(t[0] != "chain" and t[3] in ("drop", "reject") for t in later):
                    return None
                return TraceStep(*s)
        return None

    def render(self) -> str:
        lines = []
        for i, s in enumerate(self.steps, 1):
            label = s.name or s.id[:8]
            if s.kind == "rule":  # chain #position name [id]
                label = f"{label} [{s.id[:8]}]"
            detail = f"  ({s.detail})" if s.detail else ""
            lines.append(f"{i:>3}. {s.kind:<9} {label:<20} {s.decision}{detail}")
        return "\n".join(lines)


def trace_from_json(steps: list[dict[str, str]]) -> Trace:
    """A :class:`Trace` back from :meth:`Trace.to_json` (a trace that crossed the API)."""
    return Trace([(s["kind"], s["id"], s["name"], s["decision"], s["detail"]) for s in steps])


__all__ = ["RawStep", "Trace", "TraceStep", "trace_from_json"]
