"""Which deployment a command talks to, and the control path to it.

Default: the local stack recorded in `--state-dir`. `--project P` targets a deployment with the
application-default credentials; resource names, the BigQuery location and the Firestore database come
from `--stack-outputs` (the JSON of `pulumi stack output --json`), `--topic-prefix` and `--setting
key=value`, else the defaults of `batchline.settings`. Every value passes the same validation the
functions apply to their environment.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path

from batchline.adapters.clients import Clients
from batchline.domain import control_requests as ctl
from batchline.flows.control import FAILED, FINAL, RequestStore
from batchline.local import stack as local_stack
from batchline.local.stack_record import load
from batchline.settings import Settings, SettingsError, from_env

ANSWERED = (*FINAL, FAILED)


class TargetError(ValueError):
    """The target cannot be used as given (bad flag, no running stack); exit code 2."""


def _from_outputs(path: Path) -> dict[str, str]:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"--stack-outputs {path}: {exc}") from exc
    fields: dict[str, str] = {}
    for key in ("project", "main_dataset", "staging_dataset", "main_table", "context_table", "bq_location",
                "firestore_database"):
        if isinstance(out.get(key), str):
            fields[key] = out[key]
    work = (out.get("topics") or {}).get("work")
    if isinstance(work, str) and work.endswith("-work"):
        fields["topic_prefix"] = work[: -len("-work")]
    return fields


def resolve(state_dir: Path, project: str | None, stack_outputs: Path | None, topic_prefix: str | None,
            settings: list[str] | None) -> Clients:
    if project is None and stack_outputs is None:
        if settings or topic_prefix:
            raise TargetError("--setting and --topic-prefix apply to a deployment (--project or --stack-outputs)")
        info = load(state_dir)
        if info is None or not local_stack.is_up(state_dir):
            raise TargetError(f"no running local stack in {state_dir}; start one with `batchline local up` "
                              f"or name a deployment with --project")
        return info.activate()
    fields = _from_outputs(stack_outputs) if stack_outputs else {}
    if project:
        fields["project"] = project
    if topic_prefix:
        fields["topic_prefix"] = topic_prefix
    known = set(Settings.__dataclass_fields__) - {"bigquery_emulator_host", "allow_faults"}
    for kv in settings or []:
        key, sep, value = kv.partition("=")
        if not sep or key not in known:
            raise TargetError(f"--setting {kv!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        fields[key] = value
    try:
        s = replace(Settings(), **fields)
        validated = from_env(s.as_env())
    except (SettingsError, TypeError) as exc:
        raise TargetError(str(exc)) from exc
    return Clients(validated)


def new_request_id(action: str, subject: str) -> str:
    """A fresh request id naming its action and subject; the subject is untrusted text (a batch id as
    typed), so anything the id allow-list refuses becomes "_" and the request's own validation names it."""
    safe = re.sub(r"[^A-Za-z0-9._:-]", "_", subject)
    return ctl.validate_request_id(f"{action}-{safe}"[:110] + f"-{uuid.uuid4().hex[:12]}")


class RequestIdReused(ValueError):
    """The request id already names a different request; exit code 2."""


def send(clients: Clients, req, timeout_s: float = 180.0, on_wait=None) -> dict:
    """Publish a control request and wait for its answer in `control_requests`. Returns the record
    (status done/refused/failed), or the last record seen with status 'timeout'."""
    attrs = {"action": req.action, "request_id": req.request_id}
    if getattr(req, "batch_id", None):
        attrs["batch_id"] = req.batch_id
    message_id = clients.publish("control", req.model_dump_json().encode(), **attrs)
    store = RequestStore(clients.fs)
    deadline = time.monotonic() + timeout_s
    record: dict | None = None
    while time.monotonic() < deadline:
        record = store.get(req.request_id)
        if record is not None:
            if record.get("request") != req.model_dump(mode="json"):
                raise RequestIdReused(f"request id {req.request_id} already names another request "
                                      f"({record.get('action')}, {record.get('status')})")
            if record["status"] in ANSWERED:
                return {**record, "message_id": message_id}
        if on_wait:
            on_wait(record)
        time.sleep(0.3)
    return {**(record or {"request_id": req.request_id, "action": req.action}), "status": "timeout",
            "message_id": message_id}
