"""Keystone authentication of the APIs: tokens validated by keystonemiddleware's
``auth_token`` (configured as Neutron's ``[keystone_authtoken]`` section), its answer read from
the headers it sets (``X-Project-Id``, ``X-Roles``...).

keystonemiddleware is WSGI middleware; each request's headers are handed to it as a WSGI
environ in a worker thread, and the environ its inner application receives is the identity.
A token it refuses never reaches the inner application: that is a 401."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netloom.errors import Forbidden, NotAuthenticated

ADMIN = "admin"
WRITER_ROLES = frozenset({"admin", "member", "manager"})


@dataclass(frozen=True)
class Identity:
    user_id: str
    project_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def can_write(self) -> bool:
        return bool(self.roles & WRITER_ROLES)


class KeystoneAuth:
    """Validates tokens against Keystone (``conf``: keystonemiddleware's options)."""

    def __init__(self, conf: Mapping[str, str]) -> None:
        from keystonemiddleware import auth_token

        self._seen = threading.local()
        self._middleware = auth_token.AuthProtocol(self._inner, dict(conf))

    def _inner(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self._seen.environ = environ
        start_response("200 OK", [])
        return [b""]

    def identify(self, headers: Iterable[tuple[str, str]]) -> Identity:
        """The caller of a request with these headers (401 without a valid token)."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "SERVER_NAME": "netloom",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
        }
        for name, value in headers:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        self._seen.environ = None
        status: list[str] = []
        body = self._middleware(environ, lambda s, h, exc=None: status.append(s))
        for _ in body:
            pass
        seen = self._seen.environ
        if seen is None or seen.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
            raise NotAuthenticated("The request you have made requires authentication.")
        roles = frozenset(r for r in seen.get("HTTP_X_ROLES", "").split(",") if r)
        return Identity(seen.get("HTTP_X_USER_ID", ""), seen.get("HTTP_X_PROJECT_ID"), roles)

    def require_admin(self, headers: Iterable[tuple[str, str]]) -> Identity:
        who = self.identify(headers)
        if not who.is_admin:
            raise Forbidden("the native API needs an admin token")
        return who


__all__ = ["ADMIN", "WRITER_ROLES", "Identity", "KeystoneAuth"]
