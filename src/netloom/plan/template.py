"""Plan files: the documents ``netloom apply`` takes, with parameters and repetition.

A plan is data. The lab's default network, the demo's two tenants, the benches' clouds and the
test harnesses are each one YAML file under ``netloom/plan/plans/``; code only supplies the
parameters (how many VMs, which hosts) and hands the expanded documents to the one applier.

Format (a superset of the plain list that ``netloom apply -f`` has always taken)::

    params:               # defaults; the caller (or ``--param``) overrides them
      lab: demo
      vms: []
    objects:
      - kind: tenant
        ref: tenant
        name: ${lab}
      - each: vms         # one copy per item of the list parameter ``vms``
        kind: port
        ref: port-${item.name}
        device_id: "@bridge"
        fixed_ips: ["${item.ip}"]

``- include: NAME`` with ``with: {param: value}`` puts another bundled plan's objects in
place (handles are shared, so the including plan refers to the included plan's objects; with
``each`` once per item), and
``when: ${flag}`` on an object or an include skips it when the value is false, null or empty
(an empty list: ``when: ${ports}`` keeps an object only if there are ports).

``merge: ${item.fields}`` merges a mapping parameter into the object, for objects whose
fields are themselves data (a rule's match, given by the caller).

``${name}`` and ``${item.field}`` (dotted paths into mappings; ``${index}`` is the item's
position) are replaced in every string; ``${item.field?}`` is null where the field is not
given. A string that is exactly one placeholder takes the
parameter's own type (a number, a list, null), so ``mtu: ${mtu}`` stays an integer and an
item's ``inbound_filter_id: ${item.sg_in}`` may be null. Anything left unresolved, an unknown
parameter or an ``each`` over something that is not a list is an :class:`InvalidInput` naming
the object; nothing is applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from netloom.errors import InvalidInput

__all__ = ["PlanTemplate", "bundled_plans", "expand", "load_plan", "parse_plan_text"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\??)\}")
_EACH = "each"
_INCLUDE = "include"
_WHEN = "when"
_MERGE = "merge"
_MAX_DEPTH = 8  # includes within includes: deep enough for composition, short of a loop


@dataclass(frozen=True)
class PlanTemplate:
    """A parsed plan file: default parameters and the object templates, in file order."""

    name: str
    objects: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def expand(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The plan's documents with ``params`` (over the defaults) substituted."""
        unknown = set(params or {}) - set(self.params)
        if unknown:
            raise InvalidInput(
                f"plan {self.name}: unknown parameter(s) {', '.join(sorted(unknown))}"
                f" (it takes {', '.join(sorted(self.params)) or 'none'})",
                field="params",
            )
        return self._expand({**self.params, **(params or {})}, depth=0)

    def _expand(self, scope: Mapping[str, Any], depth: int) -> list[dict[str, Any]]:
        if depth > _MAX_DEPTH:
            raise InvalidInput(f"plan {self.name}: includes nest deeper than {_MAX_DEPTH}")
        docs: list[dict[str, Any]] = []
        for i, obj in enumerate(self.objects, 1):
            where = f"plan {self.name}, object #{i} ({obj.get('kind', obj.get(_INCLUDE, '?'))})"
            for item_scope, item_where in _scopes(obj, scope, where):
                if _WHEN in obj and not _substitute(obj[_WHEN], item_scope, item_where):
                    continue
                if _INCLUDE in obj:
                    docs.extend(_include(obj, item_scope, item_where, depth))
                else:
                    body = {k: v for k, v in obj.items() if k not in (_EACH, _WHEN)}
                    docs.append(_merged(_substitute(body, item_scope, item_where), item_where))
        return docs


def expand(body: Any, params: Mapping[str, Any] | None = None, *, name: str = "plan") -> Any:
    """``body`` as ``netloom apply`` reads it: a plan mapping is expanded to its documents; a
    plain list of documents (the older form) is returned as it is."""
    if isinstance(body, Mapping) and "objects" in body:
        return _template(name, body).expand(params)
    if params:
        raise InvalidInput(f"{name} is a plain list of documents: it takes no parameters")
    return body


def parse_plan_text(text: str, *, name: str) -> Any:
    """A plan or document list from JSON or YAML text (JSON is YAML, but JSON's own parser
    gives better error positions, so it is tried first)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(f"{name}: not valid JSON or YAML{where}", field="file") from None


def load_plan(name_or_path: str) -> PlanTemplate:
    """A bundled plan by name (``lab``, ``demo`` ...) or a plan file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
        return _template(str(path), parse_plan_text(text, name=str(path)))
    bundled = resources.files("netloom.plan") / "plans" / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise InvalidInput(
            f"no plan named {name_or_path!r} (bundled: {', '.join(bundled_plans())})",
            field="plan",
        )
    return _template(name_or_path, parse_plan_text(bundled.read_text(), name=name_or_path))


def bundled_plans() -> list[str]:
    """The names of the plans shipped with netloom."""
    folder = resources.files("netloom.plan") / "plans"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _template(name: str, body: Any) -> PlanTemplate:
    if not isinstance(body, Mapping) or not isinstance(body.get("objects"), list):
        raise InvalidInput(f"plan {name}: expected a mapping with an 'objects' list", field="file")
    params = body.get("params") or {}
    if not isinstance(params, Mapping):
        raise InvalidInput(f"plan {name}: 'params' must be a mapping", field="params")
    for i, obj in enumerate(body["objects"], 1):
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"plan {name}: object #{i} is not a mapping", field="file")
    return PlanTemplate(name, tuple(body["objects"]), dict(params))


def _include(
    obj: Mapping[str, Any], scope: Mapping[str, Any], where: str, depth: int
) -> list[dict[str, Any]]:
    extra = set(obj) - {_INCLUDE, "with", _WHEN, _EACH}
    if extra:
        raise InvalidInput(
            f"{where}: an include takes only 'with', 'when' and 'each', not {sorted(extra)}"
        )
    args = _substitute(obj.get("with") or {}, scope, where)
    if not isinstance(args, Mapping):
        raise InvalidInput(f"{where}: 'with' must be a mapping")
    try:
        inner = load_plan(str(obj[_INCLUDE]))
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", field="include") from None
    unknown = set(args) - set(inner.params)
    if unknown:
        raise InvalidInput(f"{where}: {inner.name} takes no parameter(s) {sorted(unknown)}")
    return inner._expand({**inner.params, **args}, depth + 1)


def _scopes(
    obj: Mapping[str, Any], scope: Mapping[str, Any], where: str
) -> list[tuple[Mapping[str, Any], str]]:
    """One scope for a plain object; one per item (with ``item`` and ``index``) for ``each``."""
    if _EACH not in obj:
        return [(scope, where)]
    over = obj[_EACH]
    items = scope.get(over) if isinstance(over, str) else None
    if not isinstance(items, list):
        raise InvalidInput(f"{where}: 'each' must name a list parameter, not {over!r}")
    return [({**scope, "item": it, "index": n}, f"{where}, item {n}") for n, it in enumerate(items)]


def _merged(doc: dict[str, Any], where: str) -> dict[str, Any]:
    if _MERGE not in doc:
        return doc
    extra = doc.pop(_MERGE)
    if extra is None:
        return doc
    if not isinstance(extra, Mapping):
        raise InvalidInput(f"{where}: 'merge' must be a mapping, not {extra!r}")
    clash = set(extra) & set(doc)
    if clash:
        raise InvalidInput(f"{where}: 'merge' sets {sorted(clash)} twice")
    return {**doc, **extra}


def _substitute(value: Any, scope: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return _substitute_str(value, scope, where)
    if isinstance(value, list):
        return [_substitute(v, scope, where) for v in value]
    if isinstance(value, Mapping):
        return {k: _substitute(v, scope, where) for k, v in value.items()}
    return value


def _substitute_str(text: str, scope: Mapping[str, Any], where: str) -> Any:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        return _lookup(whole.group(1), scope, where)
    return _PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), scope, where)), text)


def _lookup(path: str, scope: Mapping[str, Any], where: str) -> Any:
    optional = path.endswith("?")
    value: Any = scope
    for part in path.removesuffix("?").split("."):
        if not isinstance(value, Mapping) or part not in value:
            if optional:
                return None
            raise InvalidInput(f"{where}: ${{{path}}} is not defined", field="params")
        value = value[part]
    return value
