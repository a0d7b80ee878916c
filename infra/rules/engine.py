"""The one check engine: a rule is a plain function from a stack's neutral view (infra/view.py) to the
findings it reports, with its name, whether it is mandatory, and what it needs to see. The CrossGuard
pack (policy/, through infra/pack.py) runs the rules a pack can evaluate; `python -m infra.policies`
and the tests run them all on what the program registers under mocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from infra.view import Stack


class Needs(Enum):
    """What a rule reads besides the resources' inputs and dependencies."""

    VIEW = "what a CrossGuard pack is shown"  # runs in the pack, at preview and at up
    REPLACE_WITH = "replace_with, which a pack is not shown"  # offline, at preview and at up
    CONFIG = "the stack config and the outputs the program computed"  # offline, as `pulumi up` registers


@dataclass(frozen=True)
class Finding:
    rule: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.reason}"


Check = Callable[[Stack], list[Finding]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    mandatory: bool
    check: Check
    needs: Needs = Needs.VIEW

    @property
    def offline(self) -> bool:
        """Whether only the offline runner can evaluate it (a CrossGuard pack cannot)."""
        return self.needs is not Needs.VIEW


def rule(name: str, *, mandatory: bool, needs: Needs = Needs.VIEW) -> Callable[[Check], Rule]:
    """Make a function a Rule; its docstring's first paragraph is the rule's description."""
    def make(fn: Check) -> Rule:
        return Rule(name, (fn.__doc__ or name).strip().split("\n\n")[0], mandatory, fn, needs)
    return make


def catalogue(*groups: tuple[Rule, ...]) -> dict[str, Rule]:
    """Rules by name; a name given twice is a mistake, not an override."""
    out: dict[str, Rule] = {}
    for r in (r for group in groups for r in group):
        if r.name in out:
            raise ValueError(f"rule {r.name!r} is defined twice")
        out[r.name] = r
    return out

