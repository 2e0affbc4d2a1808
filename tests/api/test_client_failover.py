"""The API client over several cluster processes: a call that fails in transport goes to the
next endpoint, and a create retried after its process died mid-request is neither lost nor
duplicated."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from netloom.api.client import ApiClient, api_urls
from netloom.errors import ApiError, ApiUnreachable, InvalidInput

pytestmark = pytest.mark.unit


class DiesAfterCommit(httpx.BaseTransport):
    """Hands the request to the application, then loses the answer (a process killed after
    its commit, before its reply)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.inner.handle_request(request).read()
        raise httpx.ReadError("connection reset by peer", request=request)


class Refused(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


def _api(*transports: httpx.BaseTransport) -> ApiClient:
    api = ApiClient(",".join(f"http://n{i}:8181" for i in range(len(transports))))
    api._http = [
        httpx.Client(base_url=u, transport=t)
        for u, t in zip(api.base_urls, transports, strict=True)
    ]
    return api


def test_a_create_whose_process_dies_mid_request_is_created_once(client: Any) -> None:
    dying = DiesAfterCommit(client._transport)
    api = _api(dying, client._transport)
    doc = api.create("tenants", {"name": "t1"})
    assert dying.calls == 1
    assert [t["id"] for t in api.list("tenants")] == [doc["id"]]  # not lost, not duplicated
    assert api.base_url == "http://n1:8181" and len(api.retry_waits) == 1


def test_a_refused_endpoint_is_skipped_and_an_id_taken_by_another_object_is_a_conflict(
    client: Any,
) -> None:
    api = _api(Refused(), client._transport)
    first = api.create("tenants", {"name": "t1"})
    assert api.last_retried
    # a retried create that finds a different object under its id is not a success
    dying = DiesAfterCommit(client._transport)
    again = _api(dying, client._transport)
    taken = "aaaaaaaa-0000-4000-8000-000000000000"
    client.post("/api/v1/tenants", json={"id": taken, "name": "x"})
    with pytest.raises(ApiError) as err:
        again.create("tenants", {"id": taken, "name": "y"})
    assert err.value.code == "already_exists"
    assert len(api.list("tenants")) == 2 and first["name"] == "t1"


def test_every_endpoint_down_is_unreachable() -> None:
    api = _api(Refused(), Refused())
    with pytest.raises(ApiUnreachable) as err:
        api.list("tenants")
    assert "http://n0:8181, http://n1:8181" in err.value.message


def test_api_urls() -> None:
    assert api_urls("a:1, http://b:2/") == ["http://a:1", "http://b:2"]
    with pytest.raises(InvalidInput):
        api_urls(" , ")
