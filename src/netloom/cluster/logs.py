"""The cluster's logs: logfmt lines on stderr.

``ts=... level=info logger=... msg=... event=api.listening addr=...``: one event per line,
machine-parsable, still readable. The keys after ``msg`` are the ``extra=`` fields of the call.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=<RFC 3339 UTC> level=<lvl> logger=<name> msg=<text> key=value...``; the keys are the
    ``extra=`` fields of the call."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in record.__dict__.items() if k not in _RESERVED]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(level: str) -> None:
    """Every logger (uvicorn's included) writes logfmt to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


__all__ = ["LOG_LEVELS", "LogfmtFormatter", "setup_logging"]
