"""The CrossGuard side of the shared rules: turns what a policy pack is given (pulumi_policy's
`PolicyResource`s) into the neutral view (`infra.view`) and the rules (`infra.rules`) into stack
validation policies. It never imports pulumi_policy itself: `policy/__main__.py` (which runs in the
pack's own venv, see policy/requirements.txt) passes the classes in, so the main test suite can
exercise everything here with stand-ins.

pulumi_policy hands props through a proxy that raises on unknown values; the raw dict is behind the
key "__target", with unknown values as these sentinel strings (pulumi_policy/proxy.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infra import rules
from infra.view import UNKNOWN, Stack, View

UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})
PACK_NAME = "batchline-deploy-gates"


def plain(value: Any) -> Any:
    """A proxied (or plain) property value as plain dicts/lists, unknowns as UNKNOWN."""
    if isinstance(value, Mapping):
        try:
            value = value["__target"]  # pulumi_policy's _DictProxy
        except KeyError:
            pass
        return {k: plain(value[k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        try:
            value = value["__target"]  # _ListProxy
        except (KeyError, TypeError, IndexError):
            pass
        return [plain(v) for v in value]
    if isinstance(value, str) and value in UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def to_view(resource: Any) -> View:
    """One pulumi_policy PolicyResource as a View (replace_with: not shown to packs)."""
    deps = {k: tuple(d.urn for d in v) for k, v in (resource.property_dependencies or {}).items()}
    return View(resource.resource_type, resource.name, resource.urn, plain(resource.props), deps,
                tuple(d.urn for d in (resource.dependencies or [])), None)


def to_stack(resources: Sequence[Any]) -> Stack:
    return Stack([to_view(r) for r in resources])


def stack_policies(stack_validation_policy: type, enforcement_level: Any) -> list[Any]:
    """One StackValidationPolicy per rule a pack can evaluate; security rules mandatory."""
    policies = []
    for r in rules.RULES.values():
        if r.offline:
            continue

        def validate(args: Any, report_violation: Any, r: rules.Rule = r) -> None:
            stack = to_stack(args.resources)
            urns = {v.name: v.urn for v in stack.views}
            for f in r.check(stack):
                report_violation(f"{f.resource}: {f.reason}", urns.get(f.resource))

        policies.append(stack_validation_policy(
            name=r.name, description=r.description, validate=validate,
            enforcement_level=enforcement_level.MANDATORY if r.mandatory else enforcement_level.ADVISORY))
    return policies


_STRING_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def to_wire(stack: Stack) -> list[dict[str, Any]]:
    """A stack as JSON-able records in the shape a pack is given (unknowns as pulumi_policy's
    sentinel strings): what policy/selfcheck.py feeds the real pulumi_policy objects."""

    def wire(value: Any) -> Any:
        if value is UNKNOWN:
            return _STRING_UNKNOWN
        if isinstance(value, Mapping):
            return {k: wire(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [wire(v) for v in value]
        return value

    return [{"type": v.type, "name": v.name, "urn": v.urn, "props": wire(dict(v.props)),
             "property_dependencies": {k: list(u) for k, u in v.deps.items()},
             "dependencies": list(v.dependencies)} for v in stack.views]
