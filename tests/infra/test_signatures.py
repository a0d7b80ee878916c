"""Every recorded input of every resource, nested fields included, against the installed SDKs'
signatures (pulumi-gcp, pulumiverse-time): the mocks accept any field name, the provider does not.
And the check is shown to fail on a misspelled field, at the top level, nested, inside a list, and
on a wrong shape."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from infra import signatures
from infra.harness import Resource


def test_every_input_of_every_resource_matches_the_sdk(any_run):
    custom = [r for r in any_run.resources if r.custom]
    assert len({r.type for r in custom}) >= 20  # every resource type the program creates is checked
    found = [p for r in custom for p in signatures.resource_problems(r.type, r.name, r.inputs)]
    assert found == []


def test_every_resource_type_resolves_to_its_sdk_class(dev_run):
    for r in dev_run.resources:
        if r.custom:
            cls = signatures.args_class(r.type)
            assert cls.__name__.endswith("Args") and signatures.properties(cls), r.type


def _find(run, name: str) -> Resource:
    return next(r for r in run.resources if r.name == name)


def _oidc_typo(i: dict) -> None:
    token = i["pushConfig"]["oidcToken"]
    token["audiance"] = token.pop("audience")


def _condition_typo(i: dict) -> None:
    cond = i["conditions"][0]["conditionMatchedLog"]
    cond["labelExtractor"] = cond.pop("labelExtractors")


MISTAKES: list[tuple[str, Callable[[dict], None], str]] = [
    ("batchline-work-push", _oidc_typo, "pushConfig.oidcToken.audiance: no such field"),
    ("batchline-work-push", lambda i: i.update(ackDeadlineSecond=i.pop("ackDeadlineSeconds")),
     ".ackDeadlineSecond: no such field"),
    ("batchline-work-push", lambda i: i.update(retryPolicy="10s"), "retryPolicy: expected an object"),
    ("batchline-work-push", lambda i: i.update(ackDeadlineSeconds="180"), "ackDeadlineSeconds: expected int"),
    ("monitoring-staging-gap", _condition_typo, "conditions[0].conditionMatchedLog.labelExtractor: no such field"),
    ("fn-worker", lambda i: i["buildConfig"].update(serviceAcount="x"), "buildConfig.serviceAcount: no such field"),
    ("fn-worker", lambda i: i["serviceConfig"]["environmentVariables"].update(BATCHLINE_X=3),
     "environmentVariables['BATCHLINE_X']: expected str"),
    ("monitoring-metrics-settle", lambda i: i.update(createDuraton="1s"), "createDuraton: no such field"),
    ("scheduler-start", lambda i: i["httpTarget"]["oidcToken"].update(audiance="x"),
     "httpTarget.oidcToken.audiance: no such field"),
]


@pytest.mark.parametrize("name, mistake, expected", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_a_mistake_is_caught(prod_run, name, mistake, expected):
    r = _find(prod_run, name)
    assert signatures.resource_problems(r.type, r.name, r.inputs) == []
    broken = copy.deepcopy(r.inputs)
    mistake(broken)
    found = signatures.resource_problems(r.type, r.name, broken)
    assert any(expected in p for p in found), found
