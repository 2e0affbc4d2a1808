"""A small synchronous client for the native REST API (``/api/v1``).

Used by the CLI, the lab and the benchmarks; it imports nothing of the server.

It speaks only HTTP and JSON: it knows the collection names and the port sub-resources, not the
record types, so the server stays the one place that validates. Every failure becomes a
:class:`~netloom.errors.NetloomError` carrying the API's own ``code``/``message``/``field``, so
the CLI can print one line and exit non-zero instead of a traceback.

Several cluster processes: the client takes a comma-separated list of API URLs and sends a call
that failed in transport (refused, reset, timed out: the process may have died mid-request) to
the next one. A create carries an id chosen by the client before the first attempt, so a retry
that finds the object already created (409 ``already_exists``) with the same fields counts as
success: a create is neither lost nor duplicated.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from netloom.errors import ApiError, ApiUnreachable, InvalidInput

DEFAULT_API = "http://127.0.0.1:8181"
API_ENV = "NETLOOM_API"
PREFIX = "/api/v1"
LIST_PARAMS = ("limit", "marker", "sort_key", "sort_dir")
"""The query parameters of a list beyond its filters."""

Doc = dict[str, Any]


def default_api_url() -> str:
    return os.environ.get(API_ENV) or DEFAULT_API


def normalise_url(url: str) -> str:
    """Accept ``host:port`` as well as a full URL, the way ``--api`` of ``netloom cluster``
    is written."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def api_urls(value: str | None = None) -> list[str]:
    """``--api`` / ``$NETLOOM_API``: one URL or a comma-separated list, normalised."""
    urls = [normalise_url(u) for u in (value or default_api_url()).split(",") if u.strip()]
    if not urls:
        raise InvalidInput("no API URL given", field="api")
    return urls


def etag_for(version: int) -> str:
    """The entity tag of a record version: a strong, quoted tag (RFC 9110 §8.8.3)."""
    return f'"{version}"'


def _error_from(response: httpx.Response) -> ApiError:
    """Turn an error response into an :class:`ApiError`.

    The API answers ``{code, message, field}``; a FastAPI validation body (``{detail: [...]}``)
    or a non-JSON body (a proxy, a crash) still yields a readable one-line error."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return ApiError(
            f"http_{status}", text[0] if text else response.reason_phrase, status=status
        )
    if isinstance(body, dict) and "detail" in body and "code" not in body:
        body = body["detail"]
        if isinstance(body, list) and body and isinstance(body[0], dict):
            first = body[0]
            loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
            return ApiError(
                "invalid_input",
                str(first.get("msg", "invalid input")),
                status=status,
                field=".".join(loc) or None,
            )
        if not isinstance(body, dict):
            return ApiError(f"http_{status}", str(body), status=status)
    if isinstance(body, dict):
        field = body.get("field")
        return ApiError(
            str(body.get("code") or f"http_{status}"),
            str(body.get("message") or response.reason_phrase),
            status=status,
            field=str(field) if field is not None else None,
        )
    return ApiError(f"http_{status}", json.dumps(body), status=status)


class ApiClient:
    """Blocking client of one API endpoint or a list of them (tried in turn; see the module
    doc). Use as a context manager (closes the pools)."""

    def __init__(self, base_url: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_urls = api_urls(base_url)
        # a dead machine must not cost the whole timeout before the next endpoint is tried
        limits = httpx.Timeout(timeout, connect=min(timeout, 2.0))
        self._http = [httpx.Client(base_url=u, timeout=limits) for u in self.base_urls]
        self._at = 0
        self.last_response: httpx.Response | None = None
        self.last_retried = False  # the last call needed another endpoint
        self.retry_waits: deque[float] = deque(maxlen=1024)  # seconds until its retry succeeded

    @property
    def base_url(self) -> str:
        """The endpoint in use."""
        return self.base_urls[self._at]

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for http in self._http:
            http.close()

    # -- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One exchange (on the next endpoint when one fails in transport); returns the
        decoded JSON body (None when empty)."""
        start = time.monotonic()
        failed: list[str] = []
        while True:
            try:
                response = self._http[self._at].request(
                    method, PREFIX + path, json=json_body, params=params, headers=headers
                )
                break
            except httpx.TransportError as exc:
                failed.append(str(exc))
                if len(failed) == len(self.base_urls):
                    raise ApiUnreachable(", ".join(self.base_urls), failed[-1]) from None
                self._at = (self._at + 1) % len(self.base_urls)
        self.last_retried = bool(failed)
        if failed:
            self.retry_waits.append(time.monotonic() - start)
        self.last_response = response
        if response.status_code >= 400:
            raise _error_from(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                "bad_response", f"the API answered non-JSON to {method} {path}", status=502
            ) from None

    # -- objects -----------------------------------------------------------------------------

    def create(self, collection: str, data: Doc) -> Doc:
        """Create an object; its id is fixed here (unless given) so that a retry after a
        transport failure is recognised (see the module doc)."""
        body = {**data, "id": data.get("id") or str(uuid.uuid4())}
        try:
            return self._doc(self.request("POST", f"/{collection}", json_body=body))
        except ApiError as exc:
            if not (self.last_retried and exc.code == "already_exists"):
                raise
            found = self.get(collection, body["id"])
            if any(found.get(k) != v for k, v in body.items()):
                raise  # someone else's object under this id
            return found

    def get(self, collection: str, id: str) -> Doc:
        return self._doc(self.request("GET", f"/{collection}/{id}"))

    def list(
        self, collection: str, filters: Mapping[str, str] | None = None, **paging: str | int
    ) -> list[Doc]:
        """The objects of a collection. ``paging`` takes the list parameters of the API:
        ``limit`` and ``marker`` (one page of at most ``limit`` objects after the object
        ``marker``), ``sort_key`` and ``sort_dir`` (``asc``, ``desc``)."""
        return items_of(self.list_raw(collection, filters, **paging))

    def list_raw(
        self, collection: str, filters: Mapping[str, str] | None = None, **paging: str | int
    ) -> Any:
        """The list answer as the API sent it (``--json`` prints it untouched)."""
        unknown = sorted(set(paging) - set(LIST_PARAMS))
        if unknown:
            raise TypeError(f"unknown list parameters: {', '.join(unknown)}")
        params = {**(filters or {}), **{k: str(v) for k, v in paging.items()}}
        return self.request("GET", f"/{collection}", params=params)

    def update(
        self, collection: str, id: str, changes: Doc, *, if_version: int | None = None
    ) -> Doc:
        """Partial update (PATCH, RFC 7396 merge semantics); ``if_version`` makes it a
        compare-and-set through ``If-Match`` (RFC 9110 §13.1.1)."""
        headers = {"If-Match": etag_for(if_version)} if if_version is not None else None
        return self._doc(
            self.request("PATCH", f"/{collection}/{id}", json_body=changes, headers=headers)
        )

    def delete(self, collection: str, id: str, *, cascade: bool = False) -> Any:
        params = {"cascade": "true"} if cascade else None
        return self.request("DELETE", f"/{collection}/{id}", params=params)

    # -- port sub-resources ----------------------------------------------------------------

    def bind_port(self, port_id: str, host_id: str, interface_name: str) -> Doc:
        body = {"host_id": host_id, "interface_name": interface_name}
        return self._doc(self.request("POST", f"/ports/{port_id}/binding", json_body=body))

    def unbind_port(self, port_id: str) -> Any:
        return self.request("DELETE", f"/ports/{port_id}/binding")

    def link_ports(self, port_id: str, peer_id: str) -> Doc:
        body = {"peer_id": peer_id}
        return self._doc(self.request("POST", f"/ports/{port_id}/link", json_body=body))

    def unlink_port(self, port_id: str) -> Any:
        return self.request("DELETE", f"/ports/{port_id}/link")

    @staticmethod
    def _doc(body: Any) -> Doc:
        if isinstance(body, dict):
            return body
        raise ApiError(
            "bad_response", "the API answered something other than an object", status=502
        )


def items_of(body: Any) -> list[Doc]:
    """A list answer is either a JSON array or an envelope ``{"items": [...]}``."""
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body = body["items"]
    if isinstance(body, list):
        return [d for d in body if isinstance(d, dict)]
    raise ApiError("bad_response", "the API answered something other than a list", status=502)


__all__ = [
    "API_ENV",
    "DEFAULT_API",
    "LIST_PARAMS",
    "ApiClient",
    "default_api_url",
    "etag_for",
    "items_of",
    "normalise_url",
]
