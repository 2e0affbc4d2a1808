"""Schema-driven fuzz of the whole native API: schemathesis generates requests for every
operation of the OpenAPI document (valid and invalid data) and sends them to a live uvicorn
server; no answer may be a 5xx, use an undocumented status, or violate its documented schema.
The server holds a whole tenant topology; every other case is aimed at one of its objects (and
the trace at one of its VM ports), so that the answers of real objects are checked too.
Bounded (few examples per operation, no per-example deadline) and deterministic (derandomized)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode, checks

from insights.records import record as flow_record
from netloom.api.app import create_app
from netloom.api.service import ObjectService
from netloom.insights.history import FlowHistory
from netloom.store.memory import MemoryStore

from .conftest import build_topology
from .live_server import live_api

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

schema = schemathesis.openapi.from_dict(
    create_app(ObjectService(MemoryStore()), history=FlowHistory()).openapi()
)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


_turn = itertools.count()


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[str, dict[str, list[str]], str]]:
    """The live server's URL, the ids of its objects by collection and a VM port."""
    history = FlowHistory()
    history.ingest([flow_record(n) for n in range(20)])
    with live_api(history=history) as url, httpx.Client(base_url=url) as http:
        t = build_topology(http, spares=True)  # type: ignore[arg-type]
        ids = {
            c["name"]: [d["id"] for d in http.get(c["href"]).json()["items"]]
            for c in http.get("/api/v1").json()["collections"]
        }
        yield url, ids, t["vm1"]


def _valid(case: Any, location: str) -> bool:
    """Whether the case's ``location`` was generated valid (aiming it keeps it valid)."""
    info = case.meta.components.get(location) if case.meta is not None else None
    return info is None or info.mode == GenerationMode.POSITIVE


def _aim(case: Any, ids: dict[str, list[str]], vm: str) -> None:
    turn = next(_turn)
    if turn % 2:
        return
    parts = case.operation.path.split("/")
    if "id" in case.path_parameters and ids.get(parts[3]) and _valid(case, "path"):
        objects = ids[parts[3]]
        case.path_parameters["id"] = objects[turn // 2 % len(objects)]
    if parts[-1] == "trace" and isinstance(case.body, dict) and _valid(case, "body"):
        case.body["from_port"] = vm


@schema.parametrize()
@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: Any, world: tuple[str, dict[str, list[str]], str]
) -> None:
    url, ids, vm = world
    _aim(case, ids, vm)
    case.call_and_validate(base_url=url, checks=CHECKS, timeout=10)
