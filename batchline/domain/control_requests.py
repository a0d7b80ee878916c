"""Operator requests on the control topic: validated, versioned, idempotent.

An operator never calls the coordinator's URL (it is internal-only and invokable by the push and
scheduler service accounts alone). `batchline start/consolidate/reconcile/redispatch/dlq replay`
publish one of these messages to the `control` topic; its push subscription delivers it to the
coordinator's /control route like every other message (OIDC, retries, dead-letter topic). The local
stack uses exactly the same path.

Every request carries a `request_id` chosen by the operator (the CLI makes one up when none is given):
the coordinator records the outcome under it (`batchline.flows.control`), so the same request
delivered twice, or published twice, runs once and is answered from the record the second time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt, TypeAdapter, ValidationError

from batchline.domain import ids
from batchline.domain.errors import InvalidMessage
from batchline.domain.messages import BatchId, GameDate, ItemId, StrictModel, validation_errors

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REPLAY_SOURCES = ("work", "completions", "consolidation", "control")
MAX_REDISPATCH_ITEMS = 1000
MAX_REPLAY = 1000


def validate_request_id(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise ValueError(f"invalid request id: {value!r} (must match {_REQUEST_ID.pattern})")
    return value


def _unique(items: list[str]) -> list[str]:
    if len(set(items)) != len(items):
        raise ValueError("items must not repeat")
    return items


RequestId = Annotated[str, AfterValidator(validate_request_id)]


class _Control(StrictModel):
    v: Literal[1] = 1
    request_id: RequestId


class StartControl(_Control):
    """Start a batch run of a date; `force` supersedes a run still dispatching or running;
    `accept_stale_inputs` runs on context rows older than the freshness limit (batchline/adapters/freshness.py)."""

    action: Literal["start"]
    game_date: GameDate
    force: StrictBool = False
    accept_stale_inputs: StrictBool = False


class ConsolidateControl(_Control):
    """Consolidate a `consolidation_failed` batch again from its kept staging table."""

    action: Literal["consolidate"]
    batch_id: BatchId


class ReconcileControl(_Control):
    """Reconcile a date; `repair` re-dispatches a small gap as a batch of just those items."""

    action: Literal["reconcile"]
    game_date: GameDate
    repair: StrictBool = False


class RedispatchControl(_Control):
    """Run some items of a batch again, as a repair batch of just those items for its date."""

    action: Literal["redispatch"]
    batch_id: BatchId
    items: Annotated[list[ItemId], Field(min_length=1, max_length=MAX_REDISPATCH_ITEMS),
                     AfterValidator(_unique)]


class ReplayControl(_Control):
    """Replay dead letters of one source topic (optionally of one batch), at most `limit` of them."""

    action: Literal["replay_dead_letters"]
    source: Literal["work", "completions", "consolidation", "control"]
    batch_id: BatchId | None = None
    limit: StrictInt = Field(default=100, ge=1, le=MAX_REPLAY)


ControlRequest = Annotated[StartControl | ConsolidateControl | ReconcileControl | RedispatchControl | ReplayControl,
                           Field(discriminator="action")]
_ADAPTER: TypeAdapter = TypeAdapter(ControlRequest)
ACTIONS = ("start", "consolidate", "reconcile", "redispatch", "replay_dead_letters")


def parse_control(payload: object) -> StartControl | ConsolidateControl | ReconcileControl | RedispatchControl | \
        ReplayControl:
    """One control request from decoded JSON; InvalidMessage with the reasons otherwise."""
    if not isinstance(payload, dict):
        raise InvalidMessage(f"a control request must be a JSON object, got {type(payload).__name__}")
    try:
        return _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid control request: {validation_errors(exc)}") from exc


def request_doc_id(request_id: str) -> str:
    """The Firestore document id of a request (hashed, like rejected messages' ids)."""
    return ids.hashed_doc_id(validate_request_id(request_id))
