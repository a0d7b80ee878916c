"""The rule that the caps and delivery policies carry the largest batch (issue 18, item 1), registered in
`infra.rules.RULES` like the others (imported at the end of infra/rules.py), so the CrossGuard pack, the
offline runner and tests/infra all run it.

Mandatory: a stack that fails it dead-letters healthy items the first time a whole batch reaches the cap
at once (a redispatch, a replay, a backlog after an outage), and each is a failed item an operator must
replay. Config validation refuses such a stack already (infra/config_capacity.py, for the emergency
profile too); the rule checks what the program actually registered: each dead-lettering push
subscription's burst and seconds per message (its labels), its attempts and minimum backoff, and its
target function's instances x concurrency. All literal inputs, so preview and up agree.
"""

from __future__ import annotations

from infra import capacity
from infra.access import FUNCTION_LABEL
from infra.resource_types import T_SUB
from infra.rules import _number, rule, target_function
from infra.view import UNKNOWN, Finding, Stack, seconds


def _label_number(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


@rule("delivery-fits-caps", mandatory=True)
def delivery_fits_caps(stack: Stack) -> list[Finding]:
    """Every dead-lettering push subscription carries its largest burst at its target's cap: Cloud Run's
    429s at max instances x concurrency, each a delivery attempt, never exhaust a healthy message's
    attempts (infra/capacity.py)."""
    out = []
    for s in stack.of_type(T_SUB):
        if not s.get("deadLetterPolicy") or not s.get("pushConfig"):
            continue
        fn = target_function(stack, s, "pushConfig")
        if fn is None:
            continue  # authenticated-calls reports a push to nothing of ours
        burst, item_ms = _label_number(s.label(capacity.BURST_LABEL)), _label_number(s.label(capacity.ITEM_MS_LABEL))
        if not burst or not item_ms:
            out.append(Finding("delivery-fits-caps", s.name, f"no capacity plan: labels {capacity.BURST_LABEL} and "
                                                             f"{capacity.ITEM_MS_LABEL} must be positive integers"))
            continue
        instances = _number(fn.get("serviceConfig", "maxInstanceCount"))
        concurrency = _number(fn.get("serviceConfig", "maxInstanceRequestConcurrency"))
        attempts = _number(s.get("deadLetterPolicy", "maxDeliveryAttempts"))
        backoff = seconds(s.get("retryPolicy", "minimumBackoff"))
        if None in (instances, concurrency, attempts, backoff) or UNKNOWN in (instances, attempts):
            out.append(Finding("delivery-fits-caps", s.name, f"cannot read {fn.name}'s max instances and concurrency "
                                                             f"or the subscription's attempts and minimum backoff"))
            continue
        slots = capacity.slots_of(str(fn.label(FUNCTION_LABEL)), int(instances), int(concurrency))
        v = capacity.verdict(burst, slots, item_ms / 1000, int(attempts), backoff)
        if not v.ok:
            out.append(Finding("delivery-fits-caps", s.name, f"into {fn.name}: {v.problem()}"))
    return out
