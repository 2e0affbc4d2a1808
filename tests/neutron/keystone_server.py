"""A real Keystone for the tests (SQLite backend, fernet tokens), from the virtualenv the
Makefile's ``keystone`` target makes (``build/keystone``): configured, migrated, bootstrapped
with an admin, and served by the standard library's WSGI server on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "build" / "keystone"
ADMIN_PASSWORD = "admin-secret"
READY_TIMEOUT_S = 60.0

_CONF = """[DEFAULT]
log_file = {dir}/keystone.log
[database]
connection = sqlite:///{dir}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-receipts
[credential]
key_repository = {dir}/credential-keys
"""

_SERVE = """
import os, sys
port = int(os.environ["KEYSTONE_TEST_PORT"])
sys.argv = sys.argv[:1]
from wsgiref.simple_server import WSGIRequestHandler, make_server
class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass
from keystone.server.wsgi import initialize_public_application
app = initialize_public_application()
make_server("127.0.0.1", port, app, handler_class=Quiet).serve_forever()
"""


@dataclass
class Keystone:
    proc: subprocess.Popen[bytes]
    url: str  # the identity endpoint: http://127.0.0.1:PORT/v3
    dir: Path


def available() -> bool:
    return (VENV / "bin" / "keystone-manage").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _manage(conf: Path, *args: str) -> None:
    subprocess.run(
        [str(VENV / "bin" / "keystone-manage"), "--config-file", str(conf), *args],
        check=True,
        capture_output=True,
        timeout=300,
    )


def start(tmp: Path) -> Keystone:
    conf = tmp / "keystone.conf"
    conf.write_text(_CONF.format(dir=tmp))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v3"
    user = ["--keystone-user", "root", "--keystone-group", "root"]
    _manage(conf, "db_sync")
    _manage(conf, "fernet_setup", *user)
    _manage(conf, "credential_setup", *user)
    _manage(
        conf,
        "bootstrap",
        "--bootstrap-password",
        ADMIN_PASSWORD,
        "--bootstrap-admin-url",
        url,
        "--bootstrap-internal-url",
        url,
        "--bootstrap-public-url",
        url,
        "--bootstrap-region-id",
        "RegionOne",
    )
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf), "KEYSTONE_TEST_PORT": str(port)}
    with (tmp / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-c", _SERVE],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp / "serve.log").read_text())
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return Keystone(proc, url, tmp)
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(Keystone(proc, url, tmp))
    raise RuntimeError(f"keystone not ready after {READY_TIMEOUT_S}s")


def stop(keystone: Keystone) -> None:
    """Stop the server we started (by its pid only)."""
    if keystone.proc.poll() is None:
        keystone.proc.terminate()
        try:
            keystone.proc.wait(15)
        except subprocess.TimeoutExpired:
            keystone.proc.kill()
            keystone.proc.wait()


if __name__ == "__main__":  # a manual check: start, print the URL, stop on Enter
    k = start(Path(sys.argv[1]))
    print(k.url)
    sys.stdin.readline()
    stop(k)
