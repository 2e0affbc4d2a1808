"""A request whose body is shorter than its Content-Length, sent over a raw socket to a real
uvicorn server: the API gives up after its body timeout with 408 and closes the connection;
nothing is logged at error level (no traceback)."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from .live_server import live_api

pytestmark = pytest.mark.unit


def _exchange(port: int, head: bytes, body: bytes) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        start = time.monotonic()
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):  # the server closes the connection after its answer
            answer += chunk
        return answer, time.monotonic() - start


@pytest.mark.parametrize("path", ["/api/v1/tenants", "/api/v1/trace"])
def test_short_body_times_out_with_408(caplog: pytest.LogCaptureFixture, path: str) -> None:
    caplog.set_level(logging.WARNING)
    with live_api(body_timeout=0.5) as url:
        port = int(url.rsplit(":", 1)[1])
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        ).encode()
        answer, took = _exchange(port, head, b'{"name": "sh')
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["code"] == "request_timeout"
    assert 0.4 < took < 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def test_a_complete_body_is_not_affected(caplog: pytest.LogCaptureFixture) -> None:
    with live_api(body_timeout=0.5) as url:
        port = int(url.rsplit(":", 1)[1])
        body = b'{"name": "whole"}'
        head = (
            "POST /api/v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        answer, _ = _exchange(port, head, body)
    assert answer.startswith(b"HTTP/1.1 201 "), answer
