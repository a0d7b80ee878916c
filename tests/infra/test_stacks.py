"""What each stack deploys, checked against its stack file, the shared package and the local stack."""

from __future__ import annotations

import copy
import json
import types

import pytest
from pulumi.runtime import rpc

from batchline import settings
from batchline.domain import schema
from batchline.topology import FUNCTIONS, build_topology
from infra import harness
from infra import resource_types as T
from infra.alerts import F9_ALERTS
from infra.function_spec import source_files
from infra.harness import stack_view
from infra.rules.pubsub import deployed_edges


def _functions(run):
    return {f.inputs["labels"]["batchline-function"]: copy.deepcopy(f.inputs["serviceConfig"])
            for f in run.of_type(T.T_FUNCTION)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_function_caps_equal_the_stack_file(stack, dev_run, prod_run):
    raw = harness.load_stack_config(stack)["functions"]
    deployed = _functions({"dev": dev_run, "prod": prod_run}[stack])
    for fn in FUNCTIONS:
        assert deployed[fn]["maxInstanceCount"] == raw[fn]["max_instances"]
        assert deployed[fn]["maxInstanceRequestConcurrency"] == raw[fn]["concurrency"]
        assert deployed[fn]["timeoutSeconds"] == raw[fn]["timeout_s"]


def test_emergency_flag_applies_4_by_3(prod_run, prod_emergency_run):
    normal, emergency = _functions(prod_run), _functions(prod_emergency_run)
    assert (normal["worker"]["maxInstanceCount"], normal["worker"]["maxInstanceRequestConcurrency"]) == (20, 5)
    assert (emergency["worker"]["maxInstanceCount"], emergency["worker"]["maxInstanceRequestConcurrency"]) == (4, 3)
    # the profile only names the worker; the coordinator is told the worker's pace in force (issue 18)
    rate = "BATCHLINE_DISPATCH_RATE"
    paces = [caps["coordinator"]["environmentVariables"][rate] for caps in (normal, emergency)]
    assert paces == ["50", "6"]
    for fn in ("coordinator", "reconcile"):
        for caps in (normal, emergency):
            caps[fn]["environmentVariables"].pop(rate)
        assert emergency[fn] == normal[fn]
    assert prod_emergency_run.outputs["emergency"] is True


def test_emergency_default_profile_without_profile_key(dev_raw):
    raw = copy.deepcopy(dev_raw)
    raw["emergency"] = True
    raw.pop("emergency_profile", None)
    worker = _functions(harness.run_program(raw, stack="dev"))["worker"]
    assert (worker["maxInstanceCount"], worker["maxInstanceRequestConcurrency"]) == (4, 3)


def test_dev_and_prod_differ_as_configured(dev_run, prod_run):
    assert _functions(dev_run)["worker"]["maxInstanceCount"] != _functions(prod_run)["worker"]["maxInstanceCount"]
    sched = {r.stack: {j.inputs["name"].rsplit("-", 1)[-1]: j.inputs["schedule"] for j in r.of_type(T.T_JOB)}
             for r in (dev_run, prod_run)}
    assert sched["dev"] != sched["prod"]
    assert sched["prod"]["check"] == "* 10-23 * * *"  # every minute in the game window
    channels = {r.stack: sorted((c.inputs["type"], json.dumps(c.inputs.get("labels"))) for c in
                                r.of_type(T.T_CHANNEL)) for r in (dev_run, prod_run)}
    assert channels["dev"] == [("email", json.dumps({"email_address": "batchline-dev@example.com"}))]
    assert ("slack", json.dumps({"channel_name": "#batchline-alerts"})) in channels["prod"]
    assert dev_run.outputs["topics"]["work"] == "batchline-dev-work"
    assert prod_run.outputs["topics"]["work"] == "batchline-work"


def test_slack_token_stays_secret(prod_run):
    slack = [c for c in prod_run.of_type(T.T_CHANNEL) if c.inputs["type"] == "slack"]
    sensitive = slack[0].inputs["sensitiveLabels"]
    # registered as a Pulumi secret (encrypted in state), not as a plain value
    assert sensitive[rpc._special_sig_key] == rpc._special_secret_sig
    assert sensitive["value"]["authToken"] == "xoxb-test-token"
    # the token never leaks into a non-sensitive field
    for r in prod_run.resources:
        if r is not slack[0]:
            assert "xoxb-test-token" not in json.dumps(r.inputs, default=str)


def test_delivery_policy_comes_from_config(prod_run):
    subs = {s.inputs["name"]: s.inputs for s in prod_run.of_type(T.T_SUB)}
    work = subs["batchline-work-push"]
    assert work["deadLetterPolicy"]["maxDeliveryAttempts"] == 10
    assert work["deadLetterPolicy"]["deadLetterTopic"].endswith("/topics/batchline-work-dlq")
    assert work["ackDeadlineSeconds"] == 180  # the stack file's value, >= worker timeout 120 + margin
    assert subs["batchline-completions-push"]["ackDeadlineSeconds"] == 570  # coordinator 540 + margin
    assert subs["batchline-work-dlq-push"]["ackDeadlineSeconds"] == 570  # the dead-letter push reader too
    assert subs["batchline-work-dlq-pull"]["ackDeadlineSeconds"] == 60
    assert subs["batchline-consolidation-push"]["ackDeadlineSeconds"] == 600  # topology default kept
    assert work["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}


def test_functions_get_every_setting(dev_run):
    cfg = dev_run.config
    for env in (sc["environmentVariables"] for sc in _functions(dev_run).values()):
        parsed = settings.from_env(env)  # the functions' own parser accepts what infra sets
        assert parsed.project == cfg.gcp.project
        assert parsed.staging_dataset == cfg.bigquery.staging_dataset
        assert parsed.stall_minutes == cfg.thresholds.stall_minutes
        assert parsed.allow_faults is False


def test_one_alert_per_f9_alert_with_channels(prod_run):
    alerts = prod_run.of_type(T.T_ALERT)
    keys = sorted(a.inputs["userLabels"]["batchline_alert"].replace("_", "-") for a in alerts)
    assert keys == sorted(F9_ALERTS)
    channels = {c.outputs["name"] for c in prod_run.of_type(T.T_CHANNEL)}
    assert len(channels) == 2
    for a in alerts:
        assert set(a.inputs["notificationChannels"]) == channels


def test_alert_thresholds_follow_config(prod_run):
    t = prod_run.config.thresholds
    by_key = {a.inputs["userLabels"]["batchline_alert"]: a.inputs for a in prod_run.of_type(T.T_ALERT)}
    ratio = by_key["staging_write_failure_rate"]["conditions"][0]["conditionThreshold"]
    assert ratio["thresholdValue"] == pytest.approx(t.staging_write_failure_rate_pct / 100)
    assert "staging_write_attempts" in ratio["denominatorFilter"]
    dml = by_key["dml_rate_limited"]["conditions"][0]["conditionThreshold"]
    assert dml["aggregations"][0]["alignmentPeriod"] == f"{t.dml_rate_limit_window_s}s"
    assert t.dml_rate_limit_errors - 1 < dml["thresholdValue"] < t.dml_rate_limit_errors
    dlq = by_key["dead_letter_messages"]["conditions"]
    # a delta of new dead letters per source subscription, never the backlog operators keep (item 7)
    assert all("pubsub.googleapis.com/subscription/dead_letter_message_count" in c["conditionThreshold"]["filter"]
               and c["conditionThreshold"]["aggregations"][0]["perSeriesAligner"] == "ALIGN_DELTA" for c in dlq)
    assert not any("num_undelivered_messages" in json.dumps(a) for a in by_key.values())
    matched = {k: a["conditions"][0]["conditionMatchedLog"]["filter"] for k, a in by_key.items()
               if "conditionMatchedLog" in a["conditions"][0]}
    assert f"jsonPayload.coverage_pct<{t.coverage_warning_pct}" in matched["coverage_warning"]
    assert f"jsonPayload.coverage_pct<{t.coverage_critical_pct}" in matched["coverage_critical"]
    metrics = {m.inputs["name"].split("/")[-1]: m.inputs["filter"]
               for m in prod_run.of_type(T.T_METRIC)}
    assert 'jsonPayload.event="staging_write_failed"' in metrics["staging_write_failed"]


def test_operator_outputs(prod_run):
    out = prod_run.outputs
    assert set(out["topics"]) == {"work", "completions", "consolidation", "control", "summary"}
    assert set(out["function_urls"]) == set(FUNCTIONS)
    assert out["main_dataset"] == "predictions" and out["staging_dataset"] == "batchline_staging"
    assert set(out["dead_letter_pull_subscriptions"]) == set(out["dead_letter_topics"])


def test_main_table_from_shared_schema(dev_run):
    tables = {t.inputs["tableId"]: t.inputs for t in dev_run.of_type(T.T_TABLE)}
    main = tables[dev_run.config.bigquery.main_table]
    assert json.loads(main["schema"]) == [c.as_bigquery_json() for c in schema.MAIN_TABLE_COLUMNS]
    ctx = tables[dev_run.config.bigquery.context_table]
    assert json.loads(ctx["schema"]) == [c.as_bigquery_json() for c in schema.CONTEXT_TABLE_COLUMNS]


def test_infra_topology_equals_local_stack(monkeypatch, dev_run):
    """Provision the local stack's topology against recording fake Pub/Sub clients and compare its
    topics/subscriptions/push targets/dead-letter topics with what infra deploys."""
    provision = pytest.importorskip("batchline.local.provision")
    created: list[dict] = []

    class Pub:
        topic_path = staticmethod(lambda p, n: f"projects/{p}/topics/{n}")

        def create_topic(self, name):
            pass

    class Sub:
        subscription_path = staticmethod(lambda p, n: f"projects/{p}/subscriptions/{n}")

        def delete_subscription(self, subscription):
            pass

        def create_subscription(self, request):
            created.append(request)

        def close(self):
            pass

    monkeypatch.setattr(provision, "pubsub_v1", types.SimpleNamespace(PublisherClient=Pub, SubscriberClient=Sub))
    prefix = dev_run.config.pubsub.topic_prefix
    endpoints = {fn: f"http://localhost:{8080 + i}" for i, fn in enumerate(FUNCTIONS)}
    provision.create_topology("p", build_topology(prefix), endpoints)

    def local_edge(req):
        fn = path = None
        if "push_config" in req:
            url = req["push_config"]["push_endpoint"]
            fn = next(f for f, base in endpoints.items() if url.startswith(base))
            path = url[len(endpoints[fn]):]
        return (req["topic"].rsplit("/", 1)[-1], req["name"].rsplit("/", 1)[-1], fn, path)

    assert {local_edge(r) for r in created} == deployed_edges(stack_view(dev_run))
    local_dlq = {r["name"].rsplit("/", 1)[-1]: r["dead_letter_policy"]["dead_letter_topic"].rsplit("/", 1)[-1]
                 for r in created if "dead_letter_policy" in r}
    infra_dlq = {s.inputs["name"]: s.inputs["deadLetterPolicy"]["deadLetterTopic"].rsplit("/", 1)[-1]
                 for s in dev_run.of_type(T.T_SUB) if s.inputs.get("deadLetterPolicy")}
    assert local_dlq == infra_dlq


def test_source_archive_contents():
    for fn in FUNCTIONS:
        files = source_files(fn)
        assert files["main.py"].as_posix().endswith(f"functions/{fn}/main.py")
        assert files["requirements.txt"].as_posix().endswith("functions/requirements.txt")
        assert "batchline/topology.py" in files and "batchline/settings.py" in files
        assert not any(a.startswith("batchline/local/") or a == "batchline/ops/cli.py" for a in files)
        assert not any("__pycache__" in a for a in files)
