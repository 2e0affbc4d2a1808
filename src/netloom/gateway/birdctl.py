"""bird's control socket (what ``birdc`` speaks): one command, its reply lines, and the
parsing of ``show protocols`` and ``show bfd sessions`` into session states.

The protocol: bird greets with ``0001 BIRD <version> ready.``; each reply line starts with a
four-digit code and ``-`` (more follows) or a space (the last line), or a space alone (a
continuation of the previous code). Codes 8xxx and 9xxx are errors. The configuration sets
``timeformat protocol "%s"``, so a protocol's "since" is Unix seconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from netloom.errors import GatewayError
from netloom.model.bgp import SessionState

_STATES = {s.value: s for s in SessionState}
_MAX_LINE = 1 << 16


@dataclass(frozen=True, slots=True)
class ProtocolRow:
    """One line of ``show protocols``: bird's protocol state and, for BGP, the FSM state."""

    name: str
    proto: str
    state: str  # bird's: up, start, stop, down, flush
    since: float
    session: SessionState


async def command(sock: str, cmd: str, timeout: float = 5.0) -> list[tuple[int, str]]:
    """Send ``cmd`` over bird's control socket ``sock``: the reply as (code, text) lines.
    Raises :class:`GatewayError` when bird cannot be reached or answers with an error."""
    try:
        return await asyncio.wait_for(_exchange(sock, cmd), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        raise GatewayError(f"bird control socket {sock}: {exc or type(exc).__name__}") from exc


async def _exchange(sock: str, cmd: str) -> list[tuple[int, str]]:
    reader, writer = await asyncio.open_unix_connection(sock, limit=_MAX_LINE)
    try:
        await _reply(reader)  # the greeting
        writer.write(cmd.encode() + b"\n")
        await writer.drain()
        lines = await _reply(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    bad = [text for code, text in lines if code >= 8000]
    if bad:
        raise GatewayError(f"bird refused {cmd!r}: {'; '.join(bad)}")
    return lines


async def _reply(reader: asyncio.StreamReader) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    code = 0
    while True:
        raw = (await reader.readuntil(b"\n")).decode(errors="replace").rstrip("\n")
        if raw.startswith(" "):
            out.append((code, raw[1:]))
            continue
        code, sep, text = int(raw[:4]), raw[4:5], raw[5:]
        out.append((code, text))
        if sep == " ":
            return out


def parse_protocols(lines: list[tuple[int, str]]) -> dict[str, ProtocolRow]:
    """``show protocols`` (code 1002 rows) by protocol name."""
    rows: dict[str, ProtocolRow] = {}
    for code, text in lines:
        f = text.split()
        if code != 1002 or len(f) < 5:
            continue
        name, proto, _table, state, since = f[:5]
        info = f[5].lower() if len(f) > 5 else ""
        session = _STATES.get(info, SessionState.IDLE)
        if state != "up" and session is SessionState.ESTABLISHED:
            session = SessionState.IDLE
        try:
            when = float(since)
        except ValueError:
            when = 0.0
        rows[name] = ProtocolRow(name, proto, state, when, session)
    return rows


def parse_bfd(lines: list[tuple[int, str]]) -> dict[str, bool]:
    """``show bfd sessions``: peer address -> up."""
    out: dict[str, bool] = {}
    for _code, text in lines:
        f = text.split()
        if len(f) >= 3 and f[0].count(".") == 3 and f[0][0].isdigit():
            out[f[0]] = f[2].lower() == "up"
    return out


__all__ = ["ProtocolRow", "command", "parse_bfd", "parse_protocols"]
