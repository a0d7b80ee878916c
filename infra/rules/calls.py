"""Rules on who calls whom and how: push subscriptions and scheduler jobs call a function of this stack
with an OIDC token of their own service account, only those accounts may invoke, and every caller waits
longer than the function it calls may run (infra/limits.py)."""

from __future__ import annotations

from infra import limits
from infra.access import ACCESS, INVOKER_ROLE, INVOKER_ROLES, PUSH, SCHEDULER
from infra.resource_types import T_ACCOUNT, T_FUNCTION, T_JOB, T_SUB
from infra.rules.engine import Finding, Needs, rule
from infra.rules.reading import account_email, function_of, function_uris, last_part, split_endpoint, target_function
from infra.view import Stack, View, number, seconds


@rule("authenticated-calls", mandatory=True)
def authenticated_calls(stack: Stack) -> list[Finding]:
    """Every push subscription and scheduler job calls a function of this stack with an OIDC token of
    its own service account (push / scheduler), read from property dependencies."""
    out = []
    calls = [(s, "pushConfig", PUSH) for s in stack.of_type(T_SUB) if s.get("pushConfig")]
    calls += [(j, "httpTarget", SCHEDULER) for j in stack.of_type(T_JOB)]
    for v, prop, who in calls:
        if not v.get(prop, "oidcToken"):
            out.append(Finding("authenticated-calls", v.name, "no OIDC token"))
        accounts = [a.get("accountId") for a in stack.deps_of(v, prop, T_ACCOUNT)]
        if not any(isinstance(a, str) and a.endswith(f"-{who}") for a in accounts):
            out.append(Finding("authenticated-calls", v.name, f"token is not minted for the {who} service account"))
        if target_function(stack, v, prop) is None:
            out.append(Finding("authenticated-calls", v.name, "does not call a function of this stack"))
    return out


@rule("oidc", mandatory=False, needs=Needs.CONFIG)
def oidc(stack: Stack) -> list[Finding]:
    """Every scheduler job and push subscription authenticates with OIDC as its own service account,
    with the target function as audience; scheduler jobs retry."""
    out: list[Finding] = []
    uris = function_uris(stack)
    callers = ((SCHEDULER, stack.of_type(T_JOB), "httpTarget", "uri"),
               (PUSH, [s for s in stack.of_type(T_SUB) if s.props.get("pushConfig")], "pushConfig", "pushEndpoint"))
    for who, views, prop, url_key in callers:
        email = account_email(stack, who)
        for v in views:
            target = v.props.get(prop) or {}
            token = target.get("oidcToken") or {}
            if token.get("serviceAccountEmail") != email:
                out.append(Finding("oidc", v.name, f"no OIDC token of the {who} service account"))
            fn, _ = split_endpoint(str(target.get(url_key, "")), uris)
            if fn is None or token.get("audience") not in uris:
                out.append(Finding("oidc", v.name, "target or audience is not a function of this stack"))
    for j in stack.of_type(T_JOB):
        if "retryCount" not in (j.props.get("retryConfig") or {}):
            out.append(Finding("oidc", j.name, "scheduler job has no retry config"))
        if not j.props.get("timeZone"):
            out.append(Finding("oidc", j.name, "scheduler job has no time zone"))
    return out


@rule("invokers", mandatory=False, needs=Needs.CONFIG)
def invokers(stack: Stack) -> list[Finding]:
    """Only the push and scheduler service accounts may invoke functions, each only the functions it
    calls."""
    out: list[Finding] = []
    emails = {who: account_email(stack, who) for who in (PUSH, SCHEDULER)}
    allowed = {(f"serviceAccount:{emails[who]}", fn) for who in (PUSH, SCHEDULER) for fn in ACCESS[who].invokes}
    names = {f.props.get("name"): function_of(f) for f in stack.of_type(T_FUNCTION)}
    granted = set()
    for v in stack.views:
        if v.props.get("role") in INVOKER_ROLES:
            target = names.get(last_part(v.props.get("name") or v.props.get("cloudFunction")))
            for m in v.props.get("members") or [v.props.get("member")]:
                if (m, target) not in allowed:
                    out.append(Finding("invokers", v.name, f"{m} may not invoke {target or v.props.get('name')}"))
                granted.add((m, target))
    for m, fn in sorted(allowed - granted):
        out.append(Finding("invokers", fn, f"{m} needs {INVOKER_ROLE} (its push/scheduler calls would fail)"))
    return out


def _deadline_findings(stack: Stack, name: str, calls: list[tuple[View, str, float | None]]) -> list[Finding]:
    out = []
    for v, prop, deadline in calls:
        fn = target_function(stack, v, prop)
        timeout = number(fn.get("serviceConfig", "timeoutSeconds")) if fn else None
        if timeout is None:
            continue  # no target: authenticated-calls reports it
        if deadline is None or deadline < limits.needed_deadline(int(timeout)):
            out.append(Finding(name, v.name, f"deadline {deadline} s is shorter than {fn.name}'s timeout "
                                             f"{timeout:g} s + {limits.DEADLINE_MARGIN_S} s"))
    return out


@rule("push-ack-deadline", mandatory=False)
def push_ack_deadline(stack: Stack) -> list[Finding]:
    """For push the ack deadline is the request timeout: every push subscription's ack deadline is at
    least its target function's timeout + margin."""
    return _deadline_findings(stack, "push-ack-deadline", [
        (s, "pushConfig", number(s.get("ackDeadlineSeconds"))) for s in stack.of_type(T_SUB) if s.get("pushConfig")])


@rule("scheduler-deadline", mandatory=False)
def scheduler_deadline(stack: Stack) -> list[Finding]:
    """Every scheduler job's attempt deadline is at least its target function's timeout + margin."""
    return _deadline_findings(stack, "scheduler-deadline", [
        (j, "httpTarget", seconds(j.get("attemptDeadline"))) for j in stack.of_type(T_JOB)])


RULES = (authenticated_calls, oidc, invokers, push_ack_deadline, scheduler_deadline)
