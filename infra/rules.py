"""Deploy-gating rules: plain functions over the neutral view of a stack (`infra.view`), shared by the
CrossGuard policy pack (`policy/`, enforced by `pulumi preview|up --policy-pack policy/`) and by the
offline runner and tests (`python -m infra.policies`, tests/infra). Nothing here imports Pulumi.

Security rules are mandatory (a violation stops `pulumi up`); the others are advisory (reported).
Rules read literal inputs and property dependencies only, never computed e-mails, URLs or ids, so
they give the same answer at preview, when those are unknown. `offline` rules need something a pack
is not shown (replace_with) and run only under the mock harness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from batchline import settings
from infra import limits
from infra.access import ACCESS, BUILD, BUILD_ROLES
from infra.grant_scopes import declared_grant, declared_set, granted_set
from infra.resource_types import (
    GRANTS,
    RESOURCE_GRANTS,
    T_ACCOUNT,
    T_ALERT,
    T_FUNCTION,
    T_IDENTITY,
    T_JOB,
    T_METRIC,
    T_PROJECT_IAM,
    T_SLEEP,
    T_SUB,
)
from infra.view import UNKNOWN, Finding, Stack, View, seconds, walk

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
DEAD_LETTER_METRIC = "pubsub.googleapis.com/subscription/dead_letter_message_count"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    mandatory: bool
    check: Callable[[Stack], list[Finding]]
    offline: bool = False  # needs what a CrossGuard pack is not shown


RULES: dict[str, Rule] = {}


def rule(name: str, *, mandatory: bool, offline: bool = False) -> Callable:
    def register(fn: Callable[[Stack], list[Finding]]) -> Callable[[Stack], list[Finding]]:
        RULES[name] = Rule(name, (fn.__doc__ or name).strip().split("\n\n")[0], mandatory, fn, offline)
        return fn
    return register


# --- helpers ------------------------------------------------------------------------------------
def identity(stack: Stack, grant: View) -> str | None:
    """Which of our identities (ACCESS key) a grant's member is, from the account it came from."""
    for account in stack.deps_of(grant, "member", T_ACCOUNT):
        account_id = account.get("accountId")
        if isinstance(account_id, str):
            return next((who for who in ACCESS if account_id.endswith(f"-{who}")), None)
    return None


def target_function(stack: Stack, view: View, prop: str) -> View | None:
    found = stack.deps_of(view, prop, T_FUNCTION)
    return found[0] if found else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- security: mandatory ------------------------------------------------------------------------
@rule("no-public-access", mandatory=True)
def no_public_access(stack: Stack) -> list[Finding]:
    """No allUsers / allAuthenticatedUsers anywhere, no primitive roles on any grant."""
    out = []
    for v in stack.views:
        if any(isinstance(x, str) and x in PUBLIC_MEMBERS for x in walk(dict(v.props))):
            out.append(Finding("no-public-access", v.name, "public member in its inputs"))
        if v.type in GRANTS and v.get("role") in PRIMITIVE_ROLES:
            out.append(Finding("no-public-access", v.name, f"primitive role {v.get('role')}"))
    return out


@rule("function-ingress", mandatory=True)
def function_ingress(stack: Stack) -> list[Finding]:
    """Functions accept internal traffic only and never run with faults enabled."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        if f.get("serviceConfig", "ingressSettings") != "ALLOW_INTERNAL_ONLY":
            out.append(Finding("function-ingress", f.name, "ingress is not ALLOW_INTERNAL_ONLY"))
        env = f.get("serviceConfig", "environmentVariables", default={})
        if env is not UNKNOWN and settings.ENV_ALLOW_FAULTS in env:
            out.append(Finding("function-ingress", f.name, f"{settings.ENV_ALLOW_FAULTS} is set"))
    return out


@rule("authenticated-calls", mandatory=True)
def authenticated_calls(stack: Stack) -> list[Finding]:
    """Every push subscription and scheduler job calls a function of this stack with an OIDC token of
    its own service account (push / scheduler), read from property dependencies."""
    out = []
    calls = [(s, "pushConfig", "push") for s in stack.of_type(T_SUB) if s.get("pushConfig")]
    calls += [(j, "httpTarget", "scheduler") for j in stack.of_type(T_JOB)]
    for v, prop, who in calls:
        if not v.get(prop, "oidcToken"):
            out.append(Finding("authenticated-calls", v.name, "no OIDC token"))
        accounts = [a.get("accountId") for a in stack.deps_of(v, prop, T_ACCOUNT)]
        if not any(isinstance(a, str) and a.endswith(f"-{who}") for a in accounts):
            out.append(Finding("authenticated-calls", v.name, f"token is not minted for the {who} service account"))
        if target_function(stack, v, prop) is None:
            out.append(Finding("authenticated-calls", v.name, "does not call a function of this stack"))
    return out


@rule("least-privilege", mandatory=True)
def least_privilege(stack: Stack) -> list[Finding]:
    """Every grant to one of our service accounts is one `infra/access.py` declares: project roles,
    dataset roles by dataset kind, publisher by topic key, subscriber on the dead-letter pull
    subscription of a declared topic key, invoker by function."""
    out = []
    for g in (v for v in stack.views if v.type in GRANTS):
        who = identity(stack, g)
        if who is None:
            continue  # not one of our accounts (the Pub/Sub service agent, operators): other rules
        ok, scope = declared_grant(stack, g, ACCESS[who])
        if not ok:
            out.append(Finding("least-privilege", g.name, f"{who} may not hold {g.get('role')} on {scope}"))
    return out


def _granted(stack: Stack) -> set[tuple[str, str, str, str]]:
    """(identity, scope kind, scope key, role) of every grant to one of our accounts."""
    out = set()
    for g in (v for v in stack.views if v.type in GRANTS):
        who = identity(stack, g)
        if who is not None:
            out |= {(who, *x) for x in granted_set(stack, g)}
    return out


@rule("declared-grants-exist", mandatory=False)
def declared_grants_exist(stack: Stack) -> list[Finding]:
    """Every grant `infra/access.py` declares exists: a function without its publisher, subscriber,
    dataset or project role, or a caller without its invoker grant, fails with 403 in production."""
    if not stack.of_type(T_FUNCTION):
        return []
    want = {(who, *x) for who, a in ACCESS.items() for x in declared_set(a)}
    return [Finding("declared-grants-exist", who, f"missing {role} on {kind} {key}".rstrip())
            for who, kind, key, role in sorted(want - _granted(stack))]


@rule("build-service-account", mandatory=True)
def build_service_account(stack: Stack) -> list[Finding]:
    """Every function builds as our build account, which holds exactly the roles Google's custom
    build service account page lists (never the project's default build account)."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        accounts = [a.get("accountId") for a in stack.deps_of(f, "buildConfig", T_ACCOUNT)]
        if not f.get("buildConfig", "serviceAccount") or not any(
                isinstance(a, str) and a.endswith(f"-{BUILD}") for a in accounts):
            out.append(Finding("build-service-account", f.name, "does not build as the build service account"))
    held = {g.get("role") for g in stack.of_type(T_PROJECT_IAM) if identity(stack, g) == BUILD}
    if stack.of_type(T_FUNCTION) and held != set(BUILD_ROLES):
        out.append(Finding("build-service-account", BUILD, f"holds {sorted(map(str, held))}, Google lists "
                                                           f"{sorted(BUILD_ROLES)}"))
    return out


# --- correctness: advisory ----------------------------------------------------------------------
@rule("function-memory-cpu", mandatory=False)
def function_memory_cpu(stack: Stack) -> list[Finding]:
    """Memory/CPU pairs and concurrency Google accepts (infra/limits.py)."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        memory, cpu = f.get("serviceConfig", "availableMemory"), f.get("serviceConfig", "availableCpu")
        if memory in limits.MEMORY_MIB and cpu in limits.CPU_CHOICES:
            problem = limits.memory_cpu_problem(memory, cpu)
            conc = _number(f.get("serviceConfig", "maxInstanceRequestConcurrency"))
            if problem is None and conc is not None and conc > 1 and float(cpu) < 1:
                problem = f"concurrency {conc:g} needs at least 1 vCPU, got {cpu}"
        else:
            problem = f"memory {memory!r} / cpu {cpu!r} not among the accepted values"
        if problem:
            out.append(Finding("function-memory-cpu", f.name, problem))
    return out


def _deadline_findings(stack: Stack, name: str, views: list[tuple[View, str, float | None]]) -> list[Finding]:
    out = []
    for v, prop, deadline in views:
        fn = target_function(stack, v, prop)
        timeout = _number(fn.get("serviceConfig", "timeoutSeconds")) if fn else None
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
        (s, "pushConfig", _number(s.get("ackDeadlineSeconds"))) for s in stack.of_type(T_SUB) if s.get("pushConfig")])


@rule("scheduler-deadline", mandatory=False)
def scheduler_deadline(stack: Stack) -> list[Finding]:
    """Every scheduler job's attempt deadline is at least its target function's timeout + margin."""
    return _deadline_findings(stack, "scheduler-deadline", [
        (j, "httpTarget", seconds(j.get("attemptDeadline"))) for j in stack.of_type(T_JOB)])


@rule("function-env-contract", mandatory=False)
def function_env_contract(stack: Stack) -> list[Finding]:
    """Every function gets exactly the variables batchline.settings renders for a deployment."""
    want = set(settings.Settings().deployed_env())
    out = []
    for f in stack.of_type(T_FUNCTION):
        env = f.get("serviceConfig", "environmentVariables", default={})
        if env is UNKNOWN:
            continue
        if set(env) != want:
            out.append(Finding("function-env-contract", f.name, f"missing {sorted(want - set(env))}, "
                                                                f"unexpected {sorted(set(env) - want)}"))
    return out


@rule("pubsub-agent-identity", mandatory=False)
def pubsub_agent_identity(stack: Stack) -> list[Finding]:
    """Grants to the Pub/Sub service agent name it through projects.ServiceIdentity, not a string
    assembled from the project number."""
    out = []
    for g in (v for v in stack.views if v.type in GRANTS):
        member = g.get("member")
        from_identity = stack.deps_of(g, "member", T_IDENTITY)
        if isinstance(member, str) and "gcp-sa-pubsub" in member and not from_identity:
            out.append(Finding("pubsub-agent-identity", g.name, "Pub/Sub agent member not from ServiceIdentity"))
    return out


@rule("alerts-first-run", mandatory=False)
def alerts_first_run(stack: Stack) -> list[Finding]:
    """An alert policy on log-based metrics waits for a Sleep that starts after those metrics (the
    Monitoring API 404s on a metric minutes old); a log-match policy has one condition and a
    notification rate limit."""
    out = []
    for a in stack.of_type(T_ALERT):
        metrics = {m.urn for m in stack.deps_of(a, "conditions", T_METRIC)}
        if metrics:
            sleeps = stack.depends_on(a, T_SLEEP)
            if not any(metrics <= set(s.dependencies) for s in sleeps):
                out.append(Finding("alerts-first-run", a.name, "references log-based metrics without waiting for "
                                                               "a Sleep that depends on them"))
        conditions = a.get("conditions", default=[])
        if isinstance(conditions, list) and any(isinstance(c, dict) and c.get("conditionMatchedLog")
                                                for c in conditions):
            if len(conditions) != 1:
                out.append(Finding("alerts-first-run", a.name, "a log-match policy may have only one condition"))
            if not a.get("alertStrategy", "notificationRateLimit", "period"):
                out.append(Finding("alerts-first-run", a.name, "a log-match policy needs a notification rate limit"))
    return out


@rule("dead-letter-alert", mandatory=False)
def dead_letter_alert(stack: Stack) -> list[Finding]:
    """New dead letters page: every dead-lettering subscription's dead_letter_message_count is watched
    as a delta; no alert watches the backlog of a subscription operators keep messages in."""
    filters = [c.get("conditionThreshold", {}).get("filter") for a in stack.of_type(T_ALERT)
               for c in (a.get("conditions", default=[]) or []) if isinstance(c, dict)]
    filters = [f for f in filters if isinstance(f, str)]
    watched = {m for f in filters if DEAD_LETTER_METRIC in f for m in re.findall(r'subscription_id="([^"]+)"', f)}
    out = []
    for s in stack.of_type(T_SUB):
        name = s.get("name")
        if s.get("deadLetterPolicy") and isinstance(name, str) and name not in watched:
            out.append(Finding("dead-letter-alert", s.name, "its new dead letters page nobody"))
    if any("num_undelivered_messages" in f for f in filters):
        out.append(Finding("dead-letter-alert", "alerts", "an alert watches a backlog (num_undelivered_messages): "
                                                          "it stays open and never pages for the next message"))
    return out


@rule("grants-replaced-with-resource", mandatory=False, offline=True)
def grants_replaced_with_resource(stack: Stack) -> list[Finding]:
    """A grant on a topic, subscription, dataset, service or service account is replaced with that
    resource (replace_with): one recreated under the same name starts without bindings, and the
    grant would show no diff."""
    out = []
    for g in (v for v in stack.views if v.type in RESOURCE_GRANTS):
        targets = set(g.deps.get(RESOURCE_GRANTS[g.type], ()))
        if g.replace_with is not None and not targets <= set(g.replace_with):
            out.append(Finding("grants-replaced-with-resource", g.name, "not replaced with the resource it grants on"))
    return out


def check(stack: Stack, names: list[str] | None = None, *, offline: bool = True) -> list[Finding]:
    return [f for r in RULES.values() if (names is None or r.name in names) and (offline or not r.offline)
            for f in r.check(stack)]


# rules kept in their own modules, registered in RULES when this module loads
from infra import capacity_rules, operator_rules  # noqa: E402,F401
