"""The messages that cross Pub/Sub and HTTP, validated on the way in.

Everything that arrives is untrusted: a push envelope, its base64 payload and the JSON inside. Each
model rejects unknown fields and checks every id against `batchline.domain.ids`, so a malformed message gets a
clear error instead of reaching BigQuery or Firestore.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from batchline.domain import ids
from batchline.domain.errors import InvalidMessage

BatchId = Annotated[str, AfterValidator(ids.validate_batch_id)]
ItemId = Annotated[str, AfterValidator(ids.validate_item_id)]
GameId = Annotated[str, AfterValidator(ids.validate_game_id)]
TableName = Annotated[str, AfterValidator(ids.validate_table_name)]
WriteId = Annotated[str, AfterValidator(ids.validate_write_id)]
# BeforeValidator, not AfterValidator: pydantic's own date parsing would first turn a unix timestamp or a
# midnight datetime string into a date; only a `YYYY-MM-DD` string (or a date object built in code) passes.
GameDate = Annotated[dt.date, BeforeValidator(ids.parse_game_date)]

MAX_MESSAGE_BYTES = 64 * 1024  # a message's data, and the JSON body of a scheduler/operator request
# A push body carries the data base64-encoded (4/3 of its size) plus the envelope and our few attributes;
# anything bigger cannot hold a message of ours, whatever Pub/Sub's own 10 MB limit allows.
MAX_PUSH_BODY_BYTES = 128 * 1024
# Pub/Sub counts deliveries from 1 and a dead-letter policy stops at 100; the bound is generous but shared
# by the envelope and the completion, so a delivery accepted upfront can always report its attempt.
MAX_DELIVERY_ATTEMPT = 1000
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class WorkMessage(StrictModel):
    """One work item: compute and stage one player's predictions for a batch run."""

    v: Literal[1] = 1
    batch_id: BatchId
    game_date: GameDate
    item_id: ItemId
    game_id: GameId


class CompletionMessage(StrictModel):
    """A worker's durable result: which write to the batch staging table holds how many rows (F9 layer 2)."""

    v: Literal[1] = 1
    batch_id: BatchId
    item_id: ItemId
    staging_table: TableName
    write_id: WriteId
    row_count: int = Field(ge=1, le=100_000)
    write_status: Literal["ok"]
    attempt: int = Field(ge=0, le=MAX_DELIVERY_ATTEMPT)


class ConsolidationRequest(StrictModel):
    v: Literal[1] = 1
    batch_id: BatchId
    reason: Literal["all_items_terminal", "stalled", "manual"]


class BatchSummary(StrictModel):
    v: Literal[1] = 1
    batch_id: BatchId
    game_date: GameDate
    status: str
    expected_items: int
    merged_items: int
    failed_items: list[str]
    missing_items: list[str]
    merged_rows: int
    coverage_pct: float


class StartRequest(StrictModel):
    """Body of the coordinator's /start: the scheduler's daily call or an operator's re-run."""

    game_date: GameDate | None = None
    force: bool = False
    faults: str | None = Field(default=None, max_length=1000)
    # An operator re-running a date whose context is known good but was loaded long ago.
    accept_stale_inputs: bool = False


class StallCheckRequest(StrictModel):
    stall_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    min_completion_pct: float | None = Field(default=None, ge=0, le=100)
    redispatch: bool = True


class ReconcileRequest(StrictModel):
    """No game_date (the scheduler POSTs `{}`, or an empty body) means yesterday in the schedule's time
    zone, explicitly (reconcile.py); any date given must be a `YYYY-MM-DD` string."""

    game_date: GameDate | None = None
    redispatch_max: int = Field(default=25, ge=0, le=1000)
    # Repair the gap even if its items were all repaired once already (an operator, after a fix).
    repair: bool = False


class PushMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(alias="messageId", min_length=1, max_length=128)


class PushEnvelope(BaseModel):
    """A Pub/Sub push request body. `deliveryAttempt` is only present on subscriptions with a
    dead-letter policy (and the Pub/Sub emulator never sends it); the CloudEvent conversion drops it,
    which is why we parse the envelope ourselves. A deliveryAttempt above MAX_DELIVERY_ATTEMPT is
    refused, not clamped: Pub/Sub never sends one (its dead-letter policy stops at 100), so the envelope
    is forged or corrupt, and refusing it upfront means no handler acts on it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    message: PushMessage
    subscription: str = Field(min_length=1, max_length=512)
    delivery_attempt: int | None = Field(default=None, alias="deliveryAttempt", ge=0, le=MAX_DELIVERY_ATTEMPT)


def _json_object(raw: bytes, what: str, limit: int = MAX_MESSAGE_BYTES) -> dict:
    if len(raw) > limit:
        raise InvalidMessage(f"{what} is {len(raw)} bytes; the limit is {limit}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting or integers
        raise InvalidMessage(f"{what} is not usable JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if not isinstance(value, dict):
        raise InvalidMessage(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_envelope(body: bytes) -> PushEnvelope:
    try:
        return PushEnvelope.model_validate(_json_object(body, "push body", MAX_PUSH_BODY_BYTES))
    except ValidationError as exc:
        raise InvalidMessage(f"not a Pub/Sub push envelope: {validation_errors(exc)}") from exc


def parse_json_body(body: bytes) -> dict:
    """An HTTP JSON body; an empty body is an empty object (Cloud Scheduler may send none)."""
    return _json_object(body, "request body") if body.strip() else {}


def decode_data(envelope: PushEnvelope) -> dict:
    try:
        raw = base64.b64decode(envelope.message.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessage(f"message data is not base64: {exc}") from exc
    return _json_object(raw, "message data")


def parse_model(model: type[M], payload: dict) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {model.__name__}: {validation_errors(exc)}") from exc


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def validation_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]
    )
