"""Unit tests for batchline.domain.messages: everything that arrives is untrusted."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchline.domain import messages as m
from batchline.domain.errors import InvalidMessage

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(FAST, max_examples=100)  # pydantic validation of nested JSON is the slowest part
BATCH = "20260115_0123456789ab"
MODELS = [m.WorkMessage, m.CompletionMessage, m.ConsolidationRequest, m.BatchSummary, m.StartRequest,
          m.StallCheckRequest, m.ReconcileRequest]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def work(**over) -> m.WorkMessage:
    fields = {"batch_id": BATCH, "game_date": "2026-01-15", "item_id": "lebron_james", "game_id": "G1"}
    fields.update(over)
    return m.WorkMessage.model_validate(fields)


def envelope_bytes(data: bytes | str, **extra) -> bytes:
    if isinstance(data, bytes):
        data = base64.b64encode(data).decode()
    body = {"message": {"data": data, "messageId": "123", "attributes": {"k": "v"}},
            "subscription": "projects/p/subscriptions/s", **extra}
    return json.dumps(body).encode()


def completion(**over) -> dict:
    fields = {"batch_id": BATCH, "item_id": "a", "staging_table": f"stg_{BATCH}",
              "write_id": "0123456789abcdef0123456789abcdef", "row_count": 5, "write_status": "ok", "attempt": 1}
    fields.update(over)
    return fields


# -- round trip ---------------------------------------------------------------------------------
def test_work_message_round_trips_through_push_envelope():
    msg = work()
    env = m.parse_envelope(envelope_bytes(m.encode(msg), deliveryAttempt=3))
    assert env.delivery_attempt == 3
    assert env.message.message_id == "123"
    assert env.message.attributes == {"k": "v"}
    payload = m.decode_data(env)
    back = m.parse_model(m.WorkMessage, payload)
    assert back == msg
    assert back.game_date == dt.date(2026, 1, 15)
    assert back.v == 1


@FAST
@given(item=st.from_regex(r"[a-z0-9][a-z0-9_]{0,63}", fullmatch=True).filter(str.isascii),
       day=st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
       attempt=st.none() | st.integers(0, m.MAX_DELIVERY_ATTEMPT))
def test_round_trip_property(item, day, attempt):
    msg = work(item_id=item, game_date=day.isoformat())
    extra = {} if attempt is None else {"deliveryAttempt": attempt}
    env = m.parse_envelope(envelope_bytes(m.encode(msg), **extra))
    assert env.delivery_attempt == attempt
    assert m.parse_model(m.WorkMessage, m.decode_data(env)) == msg


def test_delivery_attempt_absent_is_none():
    env = m.parse_envelope(envelope_bytes(m.encode(work())))
    assert env.delivery_attempt is None


def test_a_push_body_holding_a_message_at_the_data_limit_is_accepted():
    """A 48 KB message is a ~64 KB push body: the envelope limit must leave room for base64 of a full
    MAX_MESSAGE_BYTES payload (the old single limit made such a dead letter loop forever)."""
    data = b'{"pad": "' + b"x" * (m.MAX_MESSAGE_BYTES - 20) + b'"}'
    env = m.parse_envelope(envelope_bytes(data))
    assert m.decode_data(env)["pad"].startswith("x")


@pytest.mark.parametrize("attempt", [m.MAX_DELIVERY_ATTEMPT + 1, 5000, 10**30])
def test_delivery_attempt_beyond_what_a_completion_can_carry_is_rejected_upfront(attempt):
    with pytest.raises(InvalidMessage, match="deliveryAttempt"):
        m.parse_envelope(envelope_bytes(m.encode(work()), deliveryAttempt=attempt))
    env = m.parse_envelope(envelope_bytes(m.encode(work()), deliveryAttempt=m.MAX_DELIVERY_ATTEMPT))
    m.CompletionMessage(**{**completion(), "attempt": env.delivery_attempt})  # the bound is shared


def test_negative_delivery_attempt_rejected():
    with pytest.raises(InvalidMessage, match="deliveryAttempt"):
        m.parse_envelope(envelope_bytes(m.encode(work()), deliveryAttempt=-1))


def test_envelope_allows_unknown_pubsub_fields():
    env = m.parse_envelope(envelope_bytes(m.encode(work()), somethingNew=1))
    assert m.parse_model(m.WorkMessage, m.decode_data(env)) == work()


@pytest.mark.parametrize("body", [
    {"message": {"data": ""}, "subscription": "s"},  # no messageId
    {"message": {"data": "", "messageId": ""}, "subscription": "s"},  # empty messageId
    {"message": {"data": "", "messageId": "1"}},  # no subscription
    {"message": {"data": "", "messageId": "1"}, "subscription": ""},
    {"message": {"data": "", "messageId": "x" * 129}, "subscription": "s"},
    {"message": {"data": 5, "messageId": "1"}, "subscription": "s"},
    {"message": {"data": "", "messageId": "1", "attributes": {"a": 1}}, "subscription": "s"},
    {"message": "hello", "subscription": "s"},
    {"subscription": "s"},
])
def test_malformed_envelopes_rejected(body):
    with pytest.raises(InvalidMessage, match="not a Pub/Sub push envelope"):
        m.parse_envelope(json.dumps(body).encode())


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"42", b'"s"', b"null", b"\xff\xfe\x00",
                                  b"{\"a\": 1", b"\x00"])
def test_non_object_bodies_rejected(body):
    with pytest.raises(InvalidMessage):
        m.parse_envelope(body)


def test_max_push_body_bytes_enforced():
    body = envelope_bytes(m.encode(work()))
    padded = body[:-1] + b"," + b'"pad":"' + b"x" * m.MAX_PUSH_BODY_BYTES + b'"}'
    with pytest.raises(InvalidMessage, match="limit"):
        m.parse_envelope(padded)
    # exactly at the limit is still parsed (whitespace padding is valid JSON)
    at_limit = body + b" " * (m.MAX_PUSH_BODY_BYTES - len(body))
    assert len(at_limit) == m.MAX_PUSH_BODY_BYTES
    assert m.parse_envelope(at_limit).message.message_id == "123"
    with pytest.raises(InvalidMessage, match="limit"):
        m.parse_envelope(at_limit + b" ")


def test_max_message_bytes_enforced_on_decoded_data():
    data = b'{"pad": "' + b"x" * m.MAX_MESSAGE_BYTES + b'"}'
    env = m.PushEnvelope.model_validate(
        {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}, "subscription": "s"})
    with pytest.raises(InvalidMessage, match="message data .* limit"):
        m.decode_data(env)


@pytest.mark.parametrize("data", ["not base64!", "YQ", "abc\n", "Zm9v-_==", "\u00e9\u00e9\u00e9\u00e9"])
def test_decode_data_rejects_bad_base64(data):
    env = m.PushEnvelope.model_validate({"message": {"data": data, "messageId": "1"}, "subscription": "s"})
    with pytest.raises(InvalidMessage):
        m.decode_data(env)


@pytest.mark.parametrize("raw", [b"", b"[]", b"1", b"\xff", b"{"])
def test_decode_data_rejects_non_object_payloads(raw):
    env = m.parse_envelope(envelope_bytes(raw))
    with pytest.raises(InvalidMessage, match="message data"):
        m.decode_data(env)


# -- property: only InvalidMessage ever escapes -------------------------------------------------
@FAST
@given(st.binary(max_size=300))
def test_parse_envelope_arbitrary_bytes(body):
    try:
        m.parse_envelope(body)
    except InvalidMessage:
        pass


@MEDIUM
@given(json_values)
def test_parse_envelope_arbitrary_json(value):
    try:
        env = m.parse_envelope(json.dumps(value).encode())
    except InvalidMessage:
        return
    assert isinstance(value, dict) and env.message.message_id


@MEDIUM
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_data_arbitrary_payload(raw):
    env = m.parse_envelope(envelope_bytes(raw))
    try:
        out = m.decode_data(env)
    except InvalidMessage:
        return
    assert isinstance(out, dict)


@FAST
@given(st.text(max_size=60))
def test_decode_data_arbitrary_data_string(data):
    env = m.PushEnvelope.model_validate({"message": {"data": data, "messageId": "1"}, "subscription": "s"})
    try:
        m.decode_data(env)
    except InvalidMessage:
        pass


@MEDIUM
@given(model=st.sampled_from(MODELS), payload=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_parse_model_arbitrary_dict(model, payload):
    try:
        out = m.parse_model(model, payload)
    except InvalidMessage as exc:
        assert model.__name__ in str(exc)
        return
    assert isinstance(out, model)


@MEDIUM
@given(field=st.sampled_from(["batch_id", "item_id", "game_id", "game_date"]), value=json_values)
def test_parse_model_fuzzed_work_field(field, value):
    payload = json.loads(m.encode(work()))
    payload[field] = value
    try:
        out = m.parse_model(m.WorkMessage, payload)
    except InvalidMessage:
        return
    # whatever got through is still a valid identifier / in-range date
    assert m.parse_model(m.WorkMessage, json.loads(m.encode(out))) == out


@pytest.mark.parametrize("body", [
    pytest.param(b"[" * 5000, id="deeply-nested-array"),
    pytest.param(b'{"a":' + b"1" * 5000 + b"}", id="int-over-4300-digits"),
])
def test_pathological_json_raises_invalid_message(body):
    assert len(body) <= m.MAX_MESSAGE_BYTES
    try:
        m.parse_envelope(body)
    except InvalidMessage:
        return
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(exc).__name__} escaped parse_envelope")


# -- models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [m.WorkMessage, m.CompletionMessage, m.ConsolidationRequest, m.StartRequest,
                                   m.StallCheckRequest, m.ReconcileRequest])
def test_extra_fields_rejected(model):
    valid = {
        m.WorkMessage: json.loads(m.encode(work())),
        m.CompletionMessage: completion(),
        m.ConsolidationRequest: {"batch_id": BATCH, "reason": "manual"},
        m.StartRequest: {},
        m.StallCheckRequest: {},
        m.ReconcileRequest: {},
    }[model]
    m.parse_model(model, valid)
    with pytest.raises(InvalidMessage, match="surprise"):
        m.parse_model(model, {**valid, "surprise": 1})


@pytest.mark.parametrize(("row_count", "ok"), [(1, True), (100_000, True), (0, False), (-1, False), (100_001, False)])
def test_completion_row_count_bounds(row_count, ok):
    if ok:
        assert m.parse_model(m.CompletionMessage, completion(row_count=row_count)).row_count == row_count
    else:
        with pytest.raises(InvalidMessage, match="row_count"):
            m.parse_model(m.CompletionMessage, completion(row_count=row_count))


@pytest.mark.parametrize(("field", "value"), [
    ("attempt", -1), ("attempt", 1001), ("write_status", "failed"), ("staging_table", "a.b"),
    ("staging_table", "t`; DROP"), ("batch_id", "x"), ("item_id", "A"), ("v", 2),
    ("write_id", "0123456789ABCDEF0123456789ABCDEF"), ("write_id", "0123456789abcdef"), ("write_id", ""),
    ("write_id", "0123456789abcdef0123456789abcdef'"), ("write_id", None),
])
def test_completion_field_validation(field, value):
    with pytest.raises(InvalidMessage, match=field):
        m.parse_model(m.CompletionMessage, completion(**{field: value}))


@pytest.mark.parametrize(("field", "value"), [
    ("batch_id", "20260115_0123456789ab; DROP"), ("item_id", "a b"), ("game_id", "g`1"),
    ("game_date", "2026-02-30"), ("game_date", "1999-12-31"), ("v", 0),
])
def test_work_message_field_validation(field, value):
    with pytest.raises(InvalidMessage, match=field):
        m.parse_model(m.WorkMessage, json.loads(m.encode(work())) | {field: value})


def test_consolidation_reason_is_closed_set():
    assert m.parse_model(m.ConsolidationRequest, {"batch_id": BATCH, "reason": "stalled"}).reason == "stalled"
    with pytest.raises(InvalidMessage, match="reason"):
        m.parse_model(m.ConsolidationRequest, {"batch_id": BATCH, "reason": "whatever"})


@pytest.mark.parametrize(("payload", "ok"), [
    ({"stall_minutes": 1}, True), ({"stall_minutes": 1440}, True), ({"stall_minutes": 0}, False),
    ({"stall_minutes": 1441}, False), ({"min_completion_pct": 100}, True), ({"min_completion_pct": 100.5}, False),
    ({"min_completion_pct": -1}, False),
])
def test_stall_check_bounds(payload, ok):
    if ok:
        m.parse_model(m.StallCheckRequest, payload)
    else:
        with pytest.raises(InvalidMessage):
            m.parse_model(m.StallCheckRequest, payload)


def test_start_request_faults_length_limit():
    assert m.parse_model(m.StartRequest, {"faults": "x" * 1000}).faults == "x" * 1000
    with pytest.raises(InvalidMessage, match="faults"):
        m.parse_model(m.StartRequest, {"faults": "x" * 1001})


def test_models_are_frozen():
    msg = work()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen assignment
        msg.item_id = "other"  # type: ignore[misc]
    assert msg.item_id == "lebron_james"


# -- parse_json_body ----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t"])
def test_parse_json_body_empty_is_empty_object(body):
    assert m.parse_json_body(body) == {}


def test_parse_json_body_parses_object_and_rejects_others():
    assert m.parse_json_body(b'{"game_date": "2026-01-15"}') == {"game_date": "2026-01-15"}
    for bad in (b"[]", b"nope", b"1"):
        with pytest.raises(InvalidMessage, match="request body"):
            m.parse_json_body(bad)
    with pytest.raises(InvalidMessage, match="limit"):
        m.parse_json_body(b"{" + b" " * m.MAX_MESSAGE_BYTES + b"}")


def test_invalid_message_is_value_error():
    assert issubclass(InvalidMessage, ValueError)


# -- strict ISO dates on every model that takes one ---------------------------------------------
DATED = [(m.StartRequest, {}), (m.ReconcileRequest, {}),
         (m.WorkMessage, {"batch_id": BATCH, "item_id": "a", "game_id": "G1"})]


@pytest.mark.parametrize(("model", "rest"), DATED)
@pytest.mark.parametrize("raw", [
    1767225600, 1767225600.0, "1767225600",  # unix timestamps (pydantic's lax date parsing took these)
    "2026-01-15T00:00:00", "2026-01-15T00:00:00Z", "2026-01-15 00:00:00",  # midnight datetimes (same)
    "", " ", "2025-02-30", "20260115", True, [2026, 1, 15], {"y": 2026},
])
def test_game_dates_are_strict_iso_strings_everywhere(model, rest, raw):
    with pytest.raises(InvalidMessage, match="game_date"):
        m.parse_model(model, {**rest, "game_date": raw})


@pytest.mark.parametrize(("model", "rest"), DATED)
def test_an_iso_date_string_still_parses_to_a_date(model, rest):
    assert m.parse_model(model, {**rest, "game_date": "2026-01-15"}).game_date == dt.date(2026, 1, 15)


def test_reconcile_without_a_date_means_the_default_day():
    """The scheduler POSTs `{}`; reconcile then checks yesterday in the schedule's zone (reconcile.py)."""
    assert m.parse_model(m.ReconcileRequest, m.parse_json_body(b"")).game_date is None
    assert m.parse_model(m.ReconcileRequest, m.parse_json_body(b"{}")).game_date is None
