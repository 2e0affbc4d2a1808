"""A real uvicorn server of the native API on 127.0.0.1 (an ephemeral port), in a thread of the
test process, over a memory store: for what only a real HTTP server shows (h11's handling of a
short body, a fuzzer speaking HTTP)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from netloom.api.app import create_app
from netloom.api.service import ObjectService
from netloom.insights.history import FlowHistory
from netloom.store.memory import MemoryStore


@contextmanager
def live_api(body_timeout: float = 30.0, history: FlowHistory | None = None) -> Iterator[str]:
    """Serve the API (and ``history`` if given) until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(ObjectService(MemoryStore()), body_timeout=body_timeout, history=history)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="live-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
