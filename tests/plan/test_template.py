"""Plan files: parameters, repetition, includes, conditions and the errors they give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netloom.errors import InvalidInput
from netloom.plan.template import PlanTemplate, bundled_plans, expand, load_plan, parse_plan_text

pytestmark = pytest.mark.unit


def _plan(objects: list[dict[str, Any]], **params: Any) -> PlanTemplate:
    return PlanTemplate("t", tuple(objects), params)


def test_a_whole_placeholder_keeps_the_parameters_type() -> None:
    plan = _plan(
        [{"kind": "dhcp_subnet", "mtu": "${mtu}", "dns_servers": "${dns}"}], mtu=1450, dns=[]
    )
    assert plan.expand() == [{"kind": "dhcp_subnet", "mtu": 1450, "dns_servers": []}]
    assert plan.expand({"mtu": 9000})[0]["mtu"] == 9000


def test_placeholders_inside_a_string_are_formatted() -> None:
    plan = _plan([{"kind": "port", "address": "${gw}/${len}"}], gw="10.0.0.1", len=24)
    assert plan.expand()[0]["address"] == "10.0.0.1/24"


def test_each_repeats_an_object_per_item_with_its_index() -> None:
    plan = _plan(
        [{"each": "vms", "kind": "port", "ref": "p-${item.name}", "n": "${index}"}], vms=[]
    )
    docs = plan.expand({"vms": [{"name": "a"}, {"name": "b"}]})
    assert docs == [{"kind": "port", "ref": "p-a", "n": 0}, {"kind": "port", "ref": "p-b", "n": 1}]


def test_when_skips_an_object_on_a_false_flag() -> None:
    plan = _plan([{"kind": "chain", "when": "${sg}"}, {"kind": "bridge"}], sg=False)
    assert [d["kind"] for d in plan.expand()] == ["bridge"]
    assert [d["kind"] for d in plan.expand({"sg": True})] == ["chain", "bridge"]


def test_include_puts_a_bundled_plan_in_place_with_its_parameters() -> None:
    plan = _plan([{"include": "stateful-sg", "with": {"tenant": "@t", "deny_port": "${p}"}}], p=23)
    docs = plan.expand()
    chains = [d for d in docs if d["kind"] == "chain"]
    assert [c["ref"] for c in chains] == ["sg-egress", "sg-ports", "sg-ingress"]
    assert all(c["tenant_id"] == "@t" for c in chains)
    deny = next(d for d in docs if d.get("ref") == "sg-drop-deny")
    assert deny["tp_dst"] == {"start": 23, "end": 23}


@pytest.mark.parametrize(
    ("objects", "params", "message"),
    [
        ([{"kind": "bridge", "name": "${nope}"}], {}, "${nope} is not defined"),
        ([{"each": "vms", "kind": "port"}], {"vms": 3}, "'each' must name a list"),
        ([{"include": "stateful-sg", "with": {"bogus": 1}}], {}, "no parameter(s) ['bogus']"),
        ([{"include": "no-such-plan"}], {}, "no plan named 'no-such-plan'"),
        ([{"include": "stateful-sg", "kind": "x"}], {}, "only 'with', 'when' and 'each'"),
    ],
)
def test_bad_plans_name_the_object_and_the_problem(
    objects: list[dict[str, Any]], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match="object #1") as info:
        _plan(objects, **params).expand()
    assert message in str(info.value)


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown parameter"):
        _plan([], a=1).expand({"b": 2})


def test_a_plain_document_list_is_passed_through_and_takes_no_parameters() -> None:
    docs = [{"kind": "tenant", "name": "t"}]
    assert expand(docs) is docs
    with pytest.raises(InvalidInput, match="takes no parameters"):
        expand(docs, {"x": 1})


def test_yaml_and_json_text_both_parse_and_errors_give_the_line() -> None:
    assert parse_plan_text('[{"kind": "tenant"}]', name="f") == [{"kind": "tenant"}]
    assert parse_plan_text("objects:\n  - kind: tenant\n", name="f") == {
        "objects": [{"kind": "tenant"}]
    }
    with pytest.raises(InvalidInput, match="line 2"):
        parse_plan_text("objects:\n\t- kind: tenant\n", name="f")


def test_a_plan_file_by_path(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("params: {n: t1}\nobjects:\n  - {kind: tenant, name: '${n}'}\n")
    assert load_plan(str(f)).expand() == [{"kind": "tenant", "name": "t1"}]


@pytest.mark.parametrize("name", bundled_plans())
def test_every_bundled_plan_expands_with_its_defaults(name: str) -> None:
    load_plan(name).expand()


def test_merge_adds_a_mapping_parameter_to_the_object() -> None:
    plan = _plan(
        [{"each": "rules", "kind": "rule", "chain_id": "@c", "merge": "${item.m}"}], rules=[]
    )
    docs = plan.expand({"rules": [{"m": {"action": "drop", "nw_proto": 6}}, {"m": None}]})
    assert docs == [
        {"kind": "rule", "chain_id": "@c", "action": "drop", "nw_proto": 6},
        {"kind": "rule", "chain_id": "@c"},
    ]
    with pytest.raises(InvalidInput, match="sets \\['chain_id'\\] twice"):
        plan.expand({"rules": [{"m": {"chain_id": "x"}}]})


def test_an_include_can_repeat_per_item() -> None:
    plan = _plan(
        [{"each": "ts", "include": "stateful-sg", "with": {"prefix": "t${item}-sg"}}], ts=[]
    )
    refs = [d["ref"] for d in plan.expand({"ts": [1, 2]}) if d["kind"] == "chain"]
    assert refs == [f"t{t}-sg-{c}" for t in (1, 2) for c in ("egress", "ports", "ingress")]


def test_an_optional_placeholder_is_null_when_not_given() -> None:
    plan = _plan([{"each": "vms", "kind": "port", "f": "${item.f?}", "m": "${item.m?}"}], vms=[])
    docs = plan.expand({"vms": [{"f": "x"}]})
    assert docs == [{"kind": "port", "f": "x", "m": None}]
