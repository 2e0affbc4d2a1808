"""Unique id prefixes as input (:class:`netloom.plan.Resolver`), against an in-memory client:
what counts as a prefix, names first, ambiguity and absence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from netloom.errors import Conflict, NotFound
from netloom.plan import Resolver
from netloom.plan.resolve import is_prefix

pytestmark = pytest.mark.unit

Doc = dict[str, Any]

B1 = "abcdef01-1111-4000-8000-000000000001"
B2 = "abcdef02-2222-4000-8000-000000000002"
R1 = "abcdef01-3333-4000-8000-000000000003"


class Fake:
    """Lists of bridges and routers; counts list calls."""

    def __init__(self) -> None:
        self.docs = {
            "bridges": [{"id": B1, "name": "beef"}, {"id": B2, "name": "b2"}],
            "routers": [{"id": R1, "name": "r1"}],
        }
        self.lists: list[tuple[str, dict[str, str]]] = []

    def list(self, collection: str, filters: Mapping[str, str] | None = None) -> list[Doc]:
        self.lists.append((collection, dict(filters or {})))
        return [
            d
            for d in self.docs.get(collection, [])
            if all(d.get(k) == v for k, v in (filters or {}).items())
        ]

    def get(self, collection: str, id: str) -> Doc:
        raise NotImplementedError


def test_what_is_a_prefix() -> None:
    assert is_prefix("abcd") and is_prefix("ABCDEF01") and is_prefix("abcdef01-11")
    assert not is_prefix("abc") and not is_prefix("abcg") and not is_prefix("-abc")
    assert not is_prefix(B1) and not is_prefix("r1")


def test_prefixes_resolve_uniquely() -> None:
    fake = Fake()
    r = Resolver(fake)  # type: ignore[arg-type]
    bridge, device = ("bridge",), ("bridge", "router")
    assert r.find(bridge, "abcdef02")[1] == B2
    assert r.find(bridge, "ABCDEF01-1")[1] == B1
    assert r.find(device, "abcdef01-3")[1] == R1  # across the possible kinds
    assert r.find(bridge, "beef")[1] == B1  # a name wins over a prefix
    with pytest.raises(Conflict, match="matches 2 objects"):
        r.find(device, "abcdef01")  # a bridge and a router
    with pytest.raises(NotFound):
        r.find(bridge, "ffff0000")
    with pytest.raises(NotFound):
        r.find(bridge, "xyz")  # not a prefix: only a name, and none matches


def test_one_list_per_kind() -> None:
    fake = Fake()
    Resolver(fake).find(("bridge", "router"), "abcdef02")  # type: ignore[arg-type]
    unfiltered = [c for c, f in fake.lists if not f]
    assert sorted(unfiltered) == ["bridges", "routers"]
