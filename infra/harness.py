"""Run the real Pulumi program offline under `pulumi.runtime.set_mocks` (Pulumi's documented unit
test method) and record every registered resource, for the tests and the policy runner.

A stack file's `config:` block is loaded into the mocked runtime's config exactly as the CLI would
pass it (objects as JSON strings), so the program reads it through `pulumi.Config` as in `pulumi up`.
Secure values cannot be decrypted offline; they are replaced by a placeholder secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.config import NAMESPACE, StackConfig
from infra.resource_types import (
    GET_PROJECT,
    T_ACCOUNT,
    T_ALERT,
    T_CHANNEL,
    T_FUNCTION,
    T_IDENTITY,
    T_SUB,
    T_TOPIC,
)
from infra.stack_file import load_stack_config, stack_file  # noqa: F401 - re-exported for callers
from infra.view import Stack, View, as_preview, walk

REPO_ROOT = Path(__file__).resolve().parent.parent
MOCK_PROJECT_NUMBER = "123456789012"
PLACEHOLDER_SECRET = "offline-placeholder-secret"


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    custom: bool
    # from the registration request, as the engine (and a CrossGuard pack) sees them
    urn: str = ""
    id: str = ""
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)  # input -> URNs it came from
    dependencies: list[str] = field(default_factory=list)  # URNs (depends_on and property dependencies)
    replace_with: list[str] = field(default_factory=list)  # URNs whose replacement replaces this one
    parent: str = ""


@dataclass
class StackRun:
    stack: str
    config: StackConfig
    resources: list[Resource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]


class RecordingMocks(pulumi.runtime.Mocks):
    """Returns plausible computed outputs (ids, emails, URLs) and records every registration."""

    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.by_key: dict[tuple[str, str], Resource] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        state = dict(inputs)
        project = inputs.get("project", "mock-project")
        t = args.typ
        rid = f"{args.name}_id"
        if t == T_ACCOUNT:
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            state.update(email=email, name=f"projects/{project}/serviceAccounts/{email}",
                         member=f"serviceAccount:{email}")
            rid = state["name"]
        elif t == T_FUNCTION:
            uri = f"https://{inputs['name']}-mock-uc.a.run.app"
            sc = dict(inputs.get("serviceConfig") or {})
            sc.update(uri=uri, service=f"projects/{project}/locations/{inputs['location']}/services/{inputs['name']}")
            state.update(serviceConfig=sc, url=uri)
        elif t == T_IDENTITY:
            agent = inputs["service"].split(".")[0]
            email = f"service-{MOCK_PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}")
        elif t == T_TOPIC:
            rid = f"projects/{project}/topics/{inputs['name']}"
        elif t == T_SUB:
            rid = f"projects/{project}/subscriptions/{inputs['name']}"
        elif t == T_CHANNEL:
            state["name"] = f"projects/{project}/notificationChannels/{args.name}"
            rid = state["name"]
        elif t == T_ALERT:
            state["name"] = f"projects/{project}/alertPolicies/{args.name}"
            rid = state["name"]
        r = Resource(t, args.name, inputs, state, bool(args.custom), id=rid)
        self.resources.append(r)
        self.by_key[(t, args.name)] = r
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == GET_PROJECT:
            pid = args.args.get("projectId", "mock-project")
            return {"projectId": pid, "number": MOCK_PROJECT_NUMBER, "name": pid, "id": f"projects/{pid}"}
        return {}


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, plus what the registration request says beyond the inputs: the URN, each
    input's dependencies, depends_on, replace_with, the parent. CrossGuard sees the same (all but
    replace_with), so the shared rules (infra.rules) read them instead of computed outputs."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        r = self.recording.by_key.get((request.type, request.name))
        if r is not None:
            r.urn = response.urn
            r.property_dependencies = {k: list(v.urns) for k, v in request.propertyDependencies.items()}
            r.dependencies = list(request.dependencies)
            r.replace_with = list(request.replace_with)
            r.parent = request.parent
        return response


def _wire(raw: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Config as the engine hands it to a program: full keys, strings (objects as JSON)."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for name, value in raw.items():
        key = f"{NAMESPACE}:{name}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            value = PLACEHOLDER_SECRET
            secret_keys.append(key)
        if isinstance(value, bool):
            config[key] = "true" if value else "false"
        elif isinstance(value, (dict, list, int, float)):
            config[key] = json.dumps(value)
        else:
            config[key] = str(value)
    return config, secret_keys


def run_program(raw: dict[str, Any], stack: str = "test", secrets: dict[str, str] | None = None) -> StackRun:
    """Run infra.program under mocks with `raw` as the stack's `batchline:` config. `secrets` adds
    secret keys (e.g. {"slack_token": "xoxb-test"}) as `pulumi config set --secret` would."""
    from infra import program

    config, secret_keys = _wire(raw)
    for name, value in (secrets or {}).items():
        config[f"{NAMESPACE}:{name}"] = value
        secret_keys.append(f"{NAMESPACE}:{name}")
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="batchline", stack=stack, preview=False,
                             monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(config, secret_keys)
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def go():
        cfg, outputs = program.run()
        result["config"] = cfg
        return pulumi.Output.from_input(outputs).apply(result.setdefault("outputs", {}).update)

    try:
        go()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return StackRun(stack, result["config"], mocks.resources, result.get("outputs", {}))


def run_stack(stack: str, root: Path = REPO_ROOT, secrets: dict[str, str] | None = None) -> StackRun:
    return run_program(load_stack_config(stack, root), stack=stack, secrets=secrets)


def stack_view(run: StackRun, *, preview: bool = False) -> Stack:
    """The recorded resources as the rules see them (infra.view), with their outputs and the stack's
    config. `preview=True` blanks every value that may come from another resource, as `pulumi preview`
    shows it before anything exists, and leaves the outputs and the config out, as a pack is shown."""
    views = [View(r.type, r.name, r.urn, r.inputs,
                  {k: tuple(v) for k, v in r.property_dependencies.items()},
                  tuple(r.dependencies), tuple(r.replace_with), r.outputs)
             for r in run.resources if r.custom]
    if not preview:
        return Stack(views, run.config)
    # what each resource computes: its id and every output string that is not one of its inputs
    computed = {r.urn: ({x for x in walk(r.outputs) if isinstance(x, str)}
                        - {x for x in walk(r.inputs) if isinstance(x, str)}) | {r.id}
                for r in run.resources}
    return Stack([as_preview(v, computed) for v in views])
