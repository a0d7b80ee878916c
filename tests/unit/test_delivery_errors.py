"""The last error of a failed work delivery (issue 14): what is recorded, how it reads, and that
recording it never changes the delivery's outcome."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from batchline.adapters import delivery_errors as de
from batchline.adapters.dead_letter_records import listed

NOW = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)


def test_the_record_names_class_message_and_the_first_line_of_the_cause():
    try:
        raise gexc.ServiceUnavailable("append failed") from OSError("connection reset\nat line 2\nat line 3")
    except gexc.ServiceUnavailable as exc:
        error = de.describe(exc, 3, NOW)
    assert error == {"type": "ServiceUnavailable", "message": "503 append failed",
                     "cause": "OSError: connection reset", "attempt": 3, "at": NOW}
    assert de.summary(error) == "ServiceUnavailable: 503 append failed (cause: OSError: connection reset)"
    assert de.describe(RuntimeError("x" * 2000), 0, NOW)["message"] == "x" * de.MAX_MESSAGE
    assert de.describe(RuntimeError("plain"), 0, NOW)["cause"] is None and de.describe(
        RuntimeError("plain"), 0, NOW)["attempt"] is None


def test_an_implicit_cause_counts_unless_suppressed():
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("while handling") from None
    except ValueError as suppressed:
        assert de.describe(suppressed, 1, NOW)["cause"] is None
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("while handling")  # noqa: B904 - the implicit context is what is tested
    except ValueError as implicit:
        assert de.describe(implicit, 1, NOW)["cause"] == "KeyError: 'k'"


def test_the_dead_letter_reason_carries_the_last_error_when_there_is_one():
    error = de.describe(RuntimeError("injected staging write failure"), 5, NOW)
    assert de.dead_letter_reason(5, error) == ("work message dead-lettered after 5 delivery attempts; "
                                               "last error: RuntimeError: injected staging write failure")
    assert de.dead_letter_reason("20", None) == "work message dead-lettered after 20 delivery attempts"
    assert de.summary(None) is None and de.summary({"message": "no type"}) is None


class _Ref:
    """An item document reference that records updates, or fails them (a focused double: the record's
    shape and its failure handling are what is tested here; the stack tests write real documents)."""

    def __init__(self, fail: Exception | None = None):
        self.fail, self.updates = fail, []

    def update(self, fields, timeout=None):
        if self.fail:
            raise self.fail
        self.updates.append((fields, timeout))


def test_a_failed_delivery_costs_one_write_with_the_error_and_a_counter():
    ref = _Ref()
    ctx = {"batch_id": "20300101_0123456789ab", "item": "p1", "attempt": 2, "write_id": "a" * 32}
    with pytest.raises(RuntimeError, match="boom"), de.recorded_on_failure(ref, ctx):
        raise RuntimeError("boom")
    ((fields, timeout),) = ref.updates
    assert set(fields) == {de.LAST_ERROR, de.FAILED_DELIVERIES} and timeout == de.RECORD_TIMEOUT_S
    assert fields[de.LAST_ERROR]["type"] == "RuntimeError" and fields[de.LAST_ERROR]["attempt"] == 2
    assert fields[de.LAST_ERROR]["write_id"] == "a" * 32
    assert isinstance(fields[de.FAILED_DELIVERIES], firestore.Increment)
    assert "updated_at" not in fields  # a failure is not progress for the stall check


def test_a_delivery_that_succeeds_writes_nothing():
    ref = _Ref()
    with de.recorded_on_failure(ref, {"attempt": 1}):
        pass
    assert ref.updates == []


def test_a_record_that_fails_neither_masks_the_error_nor_turns_it_into_a_success(capsys):
    ref = _Ref(fail=gexc.DeadlineExceeded("firestore slow"))
    with pytest.raises(ValueError, match="the delivery's own error"), de.recorded_on_failure(
            ref, {"batch_id": "20300101_0123456789ab", "item": "p1", "attempt": 4}):
        raise ValueError("the delivery's own error")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert line["event"] == "delivery_error_not_recorded" and line["severity"] == "ERROR"
    assert line["item"] == "p1" and "firestore slow" in line["error"]
    assert line["delivery_error"] == "ValueError: the delivery's own error"


def test_dlq_list_records_leave_replayed_ones_out_unless_asked():
    records = [{"item_id": "p2", "message_id": "m2", "delivery_attempts": "5", "attributes": {},
                "last_error": {"type": "X"}},
               {"item_id": "p1", "message_id": "m1", "delivery_attempts": "5",
                "attributes": {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}}]
    shown = listed("20300101_0123456789ab", records, {"p1": "20300101_ba9876543210", "p2": None},
                   include_replayed=False)
    assert [m["item_id"] for m in shown] == ["p2"] and shown[0]["last_error"] == {"type": "X"}
    assert shown[0]["attributes"] == {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}  # older records
    every = listed("20300101_0123456789ab", records, {"p1": "20300101_ba9876543210"}, include_replayed=True)
    assert [(m["item_id"], m["replayed_in"]) for m in every] == [("p1", "20300101_ba9876543210"), ("p2", None)]
