"""A neutral view of the resources a stack registers: what both a CrossGuard policy pack and the
offline mock harness can see. Pure Python (no Pulumi, no pulumi_policy), so the same rule functions
(`infra.rules`) run in the pack's own venv and in the main test suite.

What a rule may read, and why:
* `props`: the resource's inputs with engine (camelCase) names. During `pulumi preview` a value that
  comes from another resource's output (an e-mail, a URL, an id) is unknown: it is `UNKNOWN` here.
  Rules never rely on such values; literal inputs (names, roles, timeouts, labels) are known.
* `deps`: for each input, the URNs of the resources its value came from (Pulumi's property
  dependencies, known at preview). "This push subscription calls that function" is read here, not
  from a URL.
* `dependencies`: every URN the resource depends on (depends_on included).
* `replace_with`: the URNs whose replacement replaces this resource, or None where it cannot be seen
  (a CrossGuard pack is not given resource options beyond protect/ignoreChanges/...): rules that need
  it run offline only.
* `outputs` (a resource) and `config` (the stack): what the resource computed and the stack's
  validated config. Only the offline runner has them (the mocks' outputs, the stack file), so only the
  rules that compare the deployment with its config read them (infra/rules/engine.py, `Needs`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class _Unknown:
    """A value that is not known until the resource it comes from exists (preview)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class View:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    replace_with: tuple[str, ...] | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def get(self, *path: str, default: Any = None) -> Any:
        """props[path[0]][path[1]]...; `default` when absent, UNKNOWN when unknown on the way."""
        node: Any = self.props
        for key in path:
            if node is UNKNOWN:
                return UNKNOWN
            if not isinstance(node, Mapping) or key not in node or node[key] is None:
                return default
            node = node[key]
        return node

    def label(self, key: str) -> Any:
        return self.get("labels", key)


class Stack:
    """All views of one stack, indexed by URN; `config` is the stack's config where it is known."""

    def __init__(self, views: list[View], config: Any = None) -> None:
        self.views = views
        self.by_urn = {v.urn: v for v in views}
        self.config = config

    def of_type(self, type_: str) -> list[View]:
        return [v for v in self.views if v.type == type_]

    def deps_of(self, view: View, prop: str, type_: str | None = None) -> list[View]:
        """The resources the input `prop` of `view` came from (optionally of one type)."""
        out = [self.by_urn[u] for u in view.deps.get(prop, ()) if u in self.by_urn]
        return [v for v in out if type_ is None or v.type == type_]

    def depends_on(self, view: View, type_: str) -> list[View]:
        out = [self.by_urn[u] for u in view.dependencies if u in self.by_urn]
        return [v for v in out if v.type == type_]


def walk(value: Any) -> Iterator[Any]:
    """Every leaf of a nested input value."""
    if isinstance(value, Mapping):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from walk(v)
    else:
        yield value


def number(value: Any) -> float | None:
    """A numeric input as a float; None when absent, unknown or not a number (a bool is not one)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def seconds(value: Any) -> float | None:
    """'600s' -> 600.0; None when absent, unknown or malformed."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None


def as_preview(view: View, computed: Mapping[str, set[str]]) -> View:
    """The view as `pulumi preview` shows it before anything exists: a string that came from a value
    another resource computes (its id, e-mail, URL: `computed[urn]`, for each resource an input
    depends on) is unknown, and nothing is computed yet. Literal inputs, numbers and the shape of
    objects stay known."""

    def blank(value: Any, sources: set[str]) -> Any:
        if isinstance(value, Mapping):
            return {k: blank(v, sources) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [blank(v, sources) for v in value]
        if isinstance(value, str) and any(c and c in value for c in sources):
            return UNKNOWN
        return value

    props = {}
    for k, v in view.props.items():
        sources = set().union(*(computed.get(u, set()) for u in view.deps.get(k, ())))
        props[k] = blank(v, sources) if sources else v
    return View(view.type, view.name, view.urn, props, view.deps, view.dependencies, view.replace_with)
