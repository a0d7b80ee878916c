"""The policy set: reusable checks over the resources a stack registers.

Each check takes a `StackRun` (the stack's validated config and every resource the program
registered, with its inputs) and returns violations naming the resource and the reason. The tests run
them on Pulumi.dev.yaml and Pulumi.prod.yaml; run them on your own stack config with

    python -m infra.policies --stack dev
    python -m infra.policies --stack prod --secret slack_token=placeholder

(offline, under Pulumi's mocks: no credentials, no Pulumi CLI). Exit status 1 if anything is violated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchline import schema, settings
from batchline.topology import FUNCTIONS, build_topology
from infra import rules
from infra.components.functions import FUNCTION_LABEL, INGRESS, RUNTIME
from infra.components.iam import ACCESS, INVOKER_ROLE, PUSH, SCHEDULER
from infra.components.monitoring import ALERT_LABEL, DEAD_LETTER_METRIC, F9_ALERTS
from infra.config import ACK_DEADLINE_S, BACKOFF_S, MAX_DELIVERY_ATTEMPTS
from infra.harness import Resource, StackRun, stack_view
from infra.view import seconds as _seconds

T_TOPIC = "gcp:pubsub/topic:Topic"
T_SUB = "gcp:pubsub/subscription:Subscription"
T_TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"
T_SUB_IAM = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
T_FUNCTION = "gcp:cloudfunctionsv2/function:Function"
T_ACCOUNT = "gcp:serviceaccount/account:Account"
T_JOB = "gcp:cloudscheduler/job:Job"
T_ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
T_CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
T_DATASET = "gcp:bigquery/dataset:Dataset"
T_TABLE = "gcp:bigquery/table:Table"
T_PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
T_DATASET_IAM = "gcp:bigquery/datasetIamMember:DatasetIamMember"

PUBSUB_AGENT = re.compile(r"serviceAccount:service-[0-9]+@gcp-sa-pubsub\.iam\.gserviceaccount\.com")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
INVOKER_ROLES = (INVOKER_ROLE, "roles/cloudfunctions.invoker")


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.policy}] {self.resource}: {self.reason}"


Check = Callable[[StackRun], list[Violation]]
POLICIES: dict[str, Check] = {}


def policy(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        POLICIES[name] = fn
        return fn
    return register


# --- helpers over registered resources ---------------------------------------------------------
def _topic_name_of(ref: str | None) -> str | None:
    return ref.rsplit("/", 1)[-1] if ref else None


def _dead_letter_topics(run: StackRun) -> set[str]:
    return {_topic_name_of((s.inputs.get("deadLetterPolicy") or {}).get("deadLetterTopic"))
            for s in run.of_type(T_SUB) if s.inputs.get("deadLetterPolicy")} - {None}


def _sa_email(run: StackRun, who: str) -> str | None:
    for a in run.of_type(T_ACCOUNT):
        if a.inputs.get("accountId", "").endswith(f"-{who}"):
            return a.outputs.get("email")
    return None


def _function_of(r: Resource) -> str | None:
    return (r.inputs.get("labels") or {}).get(FUNCTION_LABEL)


def _function_uris(run: StackRun) -> dict[str, str]:
    return {(f.outputs.get("serviceConfig") or {}).get("uri"): _function_of(f) for f in run.of_type(T_FUNCTION)}


def _split_endpoint(endpoint: str, uris: dict[str, str]) -> tuple[str | None, str | None]:
    for uri, fn in uris.items():
        if uri and endpoint.startswith(uri):
            return fn, endpoint[len(uri):] or "/"
    return None, None


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)
    elif isinstance(value, str):
        yield value


# --- the checks ---------------------------------------------------------------------------------
@policy("subscription-delivery")
def subscription_delivery(run: StackRun) -> list[Violation]:
    """Every source subscription dead-letters within bounds; every subscription has a retry policy,
    an ack deadline within bounds and never expires."""
    out: list[Violation] = []
    v = lambda r, why: out.append(Violation("subscription-delivery", r.name, why))  # noqa: E731
    dlq_topics = _dead_letter_topics(run)
    topics = {t.inputs.get("name") for t in run.of_type(T_TOPIC)}
    for s in run.of_type(T_SUB):
        i = s.inputs
        is_reader = _topic_name_of(i.get("topic")) in dlq_topics
        dlp = i.get("deadLetterPolicy")
        if not is_reader:
            if not dlp:
                v(s, "source subscription has no dead-letter policy")
            else:
                attempts = dlp.get("maxDeliveryAttempts")
                if attempts is None or not MAX_DELIVERY_ATTEMPTS[0] <= attempts <= MAX_DELIVERY_ATTEMPTS[1]:
                    v(s, f"max delivery attempts {attempts} outside {MAX_DELIVERY_ATTEMPTS}")
                if _topic_name_of(dlp.get("deadLetterTopic")) not in topics:
                    v(s, f"dead-letter topic {dlp.get('deadLetterTopic')} is not a topic of this stack")
        elif dlp:
            v(s, "a dead-letter reader must not dead-letter itself")
        rp = i.get("retryPolicy")
        if not rp:
            v(s, "no retry policy")
        else:
            lo, hi = _seconds(rp.get("minimumBackoff")), _seconds(rp.get("maximumBackoff"))
            if lo is None or hi is None or not BACKOFF_S[0] <= lo <= hi <= BACKOFF_S[1]:
                v(s, f"retry backoff {rp} outside {BACKOFF_S} s or min > max")
        ack = i.get("ackDeadlineSeconds")
        if ack is None or not ACK_DEADLINE_S[0] <= ack <= ACK_DEADLINE_S[1]:
            v(s, f"ack deadline {ack} outside {ACK_DEADLINE_S}")
        if (i.get("expirationPolicy") or {}).get("ttl") != "":
            v(s, "subscription may expire (set expiration_policy ttl to '' = never)")
    return out


@policy("dead-letter-readers-and-grants")
def dead_letter_readers_and_grants(run: StackRun) -> list[Violation]:
    """Every dead-letter topic has a pull subscription and the service agent may publish to it; the
    service agent may subscribe to every dead-lettering source subscription."""
    out: list[Violation] = []
    subs = run.of_type(T_SUB)
    topic_grants = {(g.inputs.get("topic"), g.inputs.get("role")) for g in run.of_type(T_TOPIC_IAM)
                    if PUBSUB_AGENT.fullmatch(str(g.inputs.get("member")))}
    sub_grants = {(g.inputs.get("subscription"), g.inputs.get("role")) for g in run.of_type(T_SUB_IAM)
                  if PUBSUB_AGENT.fullmatch(str(g.inputs.get("member")))}
    for dlq in sorted(_dead_letter_topics(run)):
        readers = [s for s in subs if _topic_name_of(s.inputs.get("topic")) == dlq]
        if not any(not s.inputs.get("pushConfig") for s in readers):
            out.append(Violation("dead-letter-readers-and-grants", dlq,
                                 "dead-letter topic has no pull subscription: its messages would be dropped"))
        if (dlq, "roles/pubsub.publisher") not in topic_grants:
            out.append(Violation("dead-letter-readers-and-grants", dlq,
                                 "Pub/Sub service agent lacks roles/pubsub.publisher on the dead-letter topic"))
    for s in subs:
        if s.inputs.get("deadLetterPolicy") and (s.inputs.get("name"), "roles/pubsub.subscriber") not in sub_grants:
            out.append(Violation("dead-letter-readers-and-grants", s.name,
                                 "Pub/Sub service agent lacks roles/pubsub.subscriber on the source subscription"))
    return out


@policy("function-caps")
def function_caps(run: StackRun) -> list[Violation]:
    """Each function's caps equal the stack config (emergency profile applied when switched on)."""
    out: list[Violation] = []
    seen = set()
    for f in run.of_type(T_FUNCTION):
        fn = _function_of(f)
        seen.add(fn)
        caps = run.config.functions.caps.get(fn)
        if caps is None:
            out.append(Violation("function-caps", f.name, f"unknown function label {fn!r}"))
            continue
        sc = f.inputs.get("serviceConfig") or {}
        want = {"maxInstanceCount": caps.max_instances, "maxInstanceRequestConcurrency": caps.concurrency,
                "minInstanceCount": caps.min_instances, "availableMemory": caps.memory,
                "availableCpu": caps.cpu, "timeoutSeconds": caps.timeout_s}
        for key, value in want.items():
            if sc.get(key) != value:
                out.append(Violation("function-caps", f.name, f"{key} is {sc.get(key)!r}, stack config says {value!r}"))
    for fn in sorted(set(FUNCTIONS) - seen):
        out.append(Violation("function-caps", fn, "function not deployed"))
    return out


@policy("function-runtime")
def function_runtime(run: StackRun) -> list[Violation]:
    """Runtime, entry point, internal ingress, dedicated service account, and every settings variable
    (never BATCHLINE_ALLOW_FAULTS)."""
    out: list[Violation] = []
    required = set(settings.Settings().deployed_env())  # the contract, from its one source
    for f in run.of_type(T_FUNCTION):
        fn = _function_of(f)
        bc, sc = f.inputs.get("buildConfig") or {}, f.inputs.get("serviceConfig") or {}
        v = lambda why, f=f: out.append(Violation("function-runtime", f.name, why))  # noqa: E731
        if bc.get("runtime") != RUNTIME:
            v(f"runtime {bc.get('runtime')!r}, expected {RUNTIME}")
        if bc.get("entryPoint") != fn:
            v(f"entry point {bc.get('entryPoint')!r}, expected {fn!r}")
        if sc.get("ingressSettings") != INGRESS:
            v(f"ingress {sc.get('ingressSettings')!r}, expected {INGRESS}")
        if sc.get("serviceAccountEmail") != _sa_email(run, fn):
            v(f"runs as {sc.get('serviceAccountEmail')!r}, not its own service account")
        env = sc.get("environmentVariables") or {}
        missing = sorted(required - set(env))
        if missing:
            v(f"missing settings variables {missing}")
        if settings.ENV_ALLOW_FAULTS in env:
            v(f"{settings.ENV_ALLOW_FAULTS} must never be set by infra")
    return out


@policy("invokers")
def invokers(run: StackRun) -> list[Violation]:
    """Only the push and scheduler service accounts may invoke functions, each only the functions it
    calls."""
    out: list[Violation] = []
    emails = {who: _sa_email(run, who) for who in (PUSH, SCHEDULER)}
    allowed = {(f"serviceAccount:{emails[who]}", fn) for who in (PUSH, SCHEDULER) for fn in ACCESS[who].invokes}
    names = {f.inputs.get("name"): _function_of(f) for f in run.of_type(T_FUNCTION)}
    granted = set()
    for r in run.resources:
        if r.inputs.get("role") in INVOKER_ROLES:
            target = names.get(_topic_name_of(r.inputs.get("name") or r.inputs.get("cloudFunction")))
            members = r.inputs.get("members") or [r.inputs.get("member")]
            for m in members:
                if (m, target) not in allowed:
                    out.append(Violation("invokers", r.name, f"{m} may not invoke {target or r.inputs.get('name')}"))
                granted.add((m, target))
    for m, fn in sorted(allowed - granted):
        out.append(Violation("invokers", fn, f"{m} needs {INVOKER_ROLE} (its push/scheduler calls would fail)"))
    return out


@policy("oidc")
def oidc(run: StackRun) -> list[Violation]:
    """Every scheduler job and push subscription authenticates with OIDC as its own service account,
    with the target function as audience; scheduler jobs retry."""
    out: list[Violation] = []
    uris = _function_uris(run)
    for who, resources, get in (
            (SCHEDULER, run.of_type(T_JOB), lambda r: (r.inputs.get("httpTarget") or {}, "uri")),
            (PUSH, [s for s in run.of_type(T_SUB) if s.inputs.get("pushConfig")],
             lambda r: (r.inputs.get("pushConfig") or {}, "pushEndpoint"))):
        email = _sa_email(run, who)
        for r in resources:
            target, url_key = get(r)
            token = target.get("oidcToken") or {}
            if token.get("serviceAccountEmail") != email:
                out.append(Violation("oidc", r.name, f"no OIDC token of the {who} service account"))
            fn, _ = _split_endpoint(str(target.get(url_key, "")), uris)
            if fn is None or token.get("audience") not in uris:
                out.append(Violation("oidc", r.name, "target or audience is not a function of this stack"))
    for j in run.of_type(T_JOB):
        rc = j.inputs.get("retryConfig") or {}
        if "retryCount" not in rc:
            out.append(Violation("oidc", j.name, "scheduler job has no retry config"))
        if not j.inputs.get("timeZone"):
            out.append(Violation("oidc", j.name, "scheduler job has no time zone"))
    return out


@policy("alerts")
def alerts(run: StackRun) -> list[Violation]:
    """One alert policy per F9 alert, each notifying at least one channel of the stack, with a runbook;
    the dead-letter alert watches every dead-letter pull subscription."""
    out: list[Violation] = []
    channels = {c.outputs.get("name") for c in run.of_type(T_CHANNEL)}
    by_key: dict[str, list[Resource]] = {}
    for a in run.of_type(T_ALERT):
        by_key.setdefault((a.inputs.get("userLabels") or {}).get(ALERT_LABEL, "").replace("_", "-"), []).append(a)
    for key in F9_ALERTS:
        found = by_key.get(key, [])
        if len(found) != 1:
            out.append(Violation("alerts", key, f"expected exactly one alert policy, found {len(found)}"))
            continue
        a = found[0]
        chans = a.inputs.get("notificationChannels") or []
        if not chans or not set(chans) <= channels:
            out.append(Violation("alerts", a.name, f"notification channels {chans} not among the stack's {channels}"))
        if len((a.inputs.get("documentation") or {}).get("content", "")) < 40:
            out.append(Violation("alerts", a.name, "no runbook in the documentation"))
        if not a.inputs.get("conditions"):
            out.append(Violation("alerts", a.name, "no condition"))
    # new dead letters: Pub/Sub's delta count on every source subscription, not the kept backlog
    sources = {s.inputs.get("name") for s in run.of_type(T_SUB) if s.inputs.get("deadLetterPolicy")}
    watched = {f for a in by_key.get("dead-letter-messages", []) for c in a.inputs.get("conditions") or []
               for flt in [(c.get("conditionThreshold") or {}).get("filter", "")] if DEAD_LETTER_METRIC in flt
               for f in re.findall(r'subscription_id="([^"]+)"', flt)}
    for sub in sorted(sources - watched):
        out.append(Violation("alerts", sub, "source subscription's new dead letters not watched by the dead-letter "
                                            f"alert ({DEAD_LETTER_METRIC})"))
    return out


def deployed_edges(run: StackRun) -> set[tuple[str | None, str | None, str | None, str | None]]:
    """(topic, subscription, push function, push path) of every registered subscription: the shape of
    `Topology.edges()`."""
    uris = _function_uris(run)
    deployed = set()
    for s in run.of_type(T_SUB):
        push = s.inputs.get("pushConfig")
        fn, path = _split_endpoint(push.get("pushEndpoint", ""), uris) if push else (None, None)
        deployed.add((_topic_name_of(s.inputs.get("topic")), s.inputs.get("name"), fn, path))
    return deployed


@policy("topology")
def topology(run: StackRun) -> list[Violation]:
    """The deployed topics/subscriptions/push targets equal the shared topology (which the local stack
    also builds)."""
    deployed = deployed_edges(run)
    expected = build_topology(run.config.pubsub.topic_prefix).edges()
    out = [Violation("topology", str(e[1]), f"deployed but not in the shared topology: {e}")
           for e in sorted(deployed - expected, key=str)]
    out += [Violation("topology", str(e[1]), f"in the shared topology but not deployed: {e}")
            for e in sorted(expected - deployed, key=str)]
    return out


@policy("bigquery")
def bigquery(run: StackRun) -> list[Violation]:
    """Staging dataset expires tables (safety net), main table matches the shared schema, partitioned
    and clustered; both datasets in one location."""
    out: list[Violation] = []
    bq = run.config.bigquery
    ds = {d.inputs.get("datasetId"): d for d in run.of_type(T_DATASET)}
    staging, main = ds.get(bq.staging_dataset), ds.get(bq.main_dataset)
    if staging is None or main is None:
        return [Violation("bigquery", "datasets", f"missing main or staging dataset: have {sorted(ds)}")]
    if not staging.inputs.get("defaultTableExpirationMs"):
        out.append(Violation("bigquery", staging.name, "staging dataset has no default table expiration"))
    if main.inputs.get("defaultTableExpirationMs"):
        out.append(Violation("bigquery", main.name, "main dataset must not expire tables"))
    if staging.inputs.get("location") != main.inputs.get("location"):
        out.append(Violation("bigquery", staging.name, "staging and main datasets in different locations"))
    tables = {t.inputs.get("tableId"): t for t in run.of_type(T_TABLE)}
    t = tables.get(bq.main_table)
    if t is None:
        return out + [Violation("bigquery", bq.main_table, "main table not created")]
    cols = [c["name"] for c in json.loads(t.inputs.get("schema", "[]"))]
    if cols != schema.main_column_names():
        out.append(Violation("bigquery", t.name, "main table schema differs from batchline.schema"))
    if (t.inputs.get("timePartitioning") or {}).get("field") != schema.MAIN_TABLE_PARTITION_FIELD:
        out.append(Violation("bigquery", t.name, "main table not partitioned on the shared partition field"))
    if list(t.inputs.get("clusterings") or []) != list(schema.MAIN_TABLE_CLUSTER_FIELDS):
        out.append(Violation("bigquery", t.name, "main table not clustered on the shared cluster fields"))
    if bq.context_table not in tables:
        out.append(Violation("bigquery", bq.context_table, "context table not created"))
    return out


def _rule(name: str) -> Check:
    def go(run: StackRun) -> list[Violation]:
        return [Violation(f.rule, f.resource, f.reason) for f in rules.RULES[name].check(stack_view(run))]
    go.__doc__ = rules.RULES[name].description
    return go


# The deploy-gating rules shared with the CrossGuard pack (infra/rules.py) run here too, on the
# registered resources' neutral view; the checks above compare with the stack config, which a pack
# cannot see.
for _name in rules.RULES:
    POLICIES[_name] = _rule(_name)


def check_all(run: StackRun, only: list[str] | None = None) -> list[Violation]:
    out: list[Violation] = []
    for name, check in POLICIES.items():
        if only is None or name in only:
            out.extend(check(run))
    return out


def main(argv: list[str] | None = None) -> int:
    from infra.config import ConfigError
    from infra.harness import run_stack

    ap = argparse.ArgumentParser(prog="python -m infra.policies", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    ap.add_argument("--secret", action="append", default=[], metavar="KEY=VALUE",
                    help="a secret config value not in the stack file (e.g. slack_token=placeholder)")
    ap.add_argument("--policy", action="append", choices=sorted(POLICIES), help="run only these checks")
    ap.add_argument("--export-views", metavar="PATH",
                    help="also write the resources as a policy pack sees them (for policy/selfcheck.py)")
    ap.add_argument("--preview", action="store_true", help="with --export-views: as preview shows them")
    args = ap.parse_args(argv)
    secrets = dict(s.split("=", 1) for s in args.secret)
    try:
        run = run_stack(args.stack, secrets=secrets)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.export_views:
        from infra.pack import to_wire

        Path(args.export_views).write_text(json.dumps(to_wire(stack_view(run, preview=args.preview)), default=str))
    violations = check_all(run, args.policy)
    for v in violations:
        print(v)
    print(f"{args.stack}: {len(run.resources)} resources, {len(args.policy or POLICIES)} policies, "
          f"{len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
