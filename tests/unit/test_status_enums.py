"""The statuses and decision results are StrEnum members: a document, a JSON answer or a log line holds
exactly the plain string it held when they were bare strings, and a value read back (a plain str)
compares equal to its member. Existing Firestore documents and every consumer of the JSON depend on it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document

from batchline.domain import claims
from batchline.domain import control_lifecycle as cl
from batchline.domain import lifecycle as lc
from batchline.domain.statuses import (
    ACTIVE_STATUSES,
    COMPLETED,
    CONSOLIDATED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCH_FAILED,
    DISPATCHING,
    FAILED,
    MERGED_UNRECORDED,
    PENDING,
    PERMANENT,
    REOPENED,
    RUNNING,
    SUPERSEDED,
    TERMINAL_STATUSES,
    TRANSIENT,
    BatchStatus,
    ClaimVerdict,
    CompletionResult,
    FailureKind,
    FailureResult,
    ItemStatus,
    LeaseVerdict,
)
from batchline.logs import log_event

# Every value as Firestore documents and JSON held it before the enums; written out on purpose.
VALUES = {
    BatchStatus: ["dispatching", "running", "consolidation_requested", "consolidating", "consolidated",
                     "consolidation_failed", "dispatch_failed", "superseded"],
    ItemStatus: ["pending", "completed", "failed"],
    FailureKind: ["transient", "permanent", "merged_unrecorded"],
    LeaseVerdict: ["run", "done", "busy"],
    CompletionResult: ["recorded", "late", "duplicate"],
    FailureResult: ["recorded", "already_completed", "duplicate"],
    ClaimVerdict: ["switch", "redispatch", "fail", "stale"],
    cl.RequestStatus: ["accepted", "done", "refused", "failed"],
    cl.ClaimResult: ["run", "retry", "recorded", "reused", "busy"],
    cl.HolderResult: ["lost", "renewed", "noted", "finished", "released"],
    cl.DeadLetterResult: ["recorded", "ignored"],
}
MEMBERS = [m for enum in VALUES for m in enum]


@pytest.mark.parametrize("enum", list(VALUES), ids=lambda e: e.__name__)
def test_the_values_are_the_strings_stored_before(enum):
    assert [m.value for m in enum] == VALUES[enum]


def test_the_module_level_names_are_the_members():
    assert (DISPATCHING, RUNNING, CONSOLIDATION_REQUESTED, CONSOLIDATING, CONSOLIDATED,
            CONSOLIDATION_FAILED, DISPATCH_FAILED, SUPERSEDED) == tuple(BatchStatus)
    assert (PENDING, COMPLETED, FAILED) == tuple(ItemStatus)
    assert (TRANSIENT, PERMANENT, MERGED_UNRECORDED) == tuple(FailureKind)
    assert (claims.SWITCH, claims.REDISPATCH, claims.FAIL) == tuple(ClaimVerdict)[:3]
    assert (cl.ACCEPTED, cl.DONE, cl.REFUSED, cl.FAILED) == tuple(cl.RequestStatus)
    assert all(isinstance(s, BatchStatus) for s in (*ACTIVE_STATUSES, *TERMINAL_STATUSES))
    assert REOPENED == "reopened"


@pytest.mark.parametrize("member", MEMBERS, ids=str)
def test_a_member_written_to_firestore_reads_back_as_the_plain_string(member):
    """What the Firestore client puts on the wire for a field, and what a read of it gives back."""
    wire = document.Document.serialize(document.Document(fields=_helpers.encode_dict({"status": member})))
    back = _helpers.decode_dict(document.Document.deserialize(wire).fields, None)["status"]
    assert type(back) is str and back == member.value
    assert back == member and back in {member}  # a status read back compares (and hashes) as its member
    assert wire == document.Document.serialize(document.Document(fields=_helpers.encode_dict(
        {"status": member.value})))


@pytest.mark.parametrize("member", MEMBERS, ids=str)
def test_a_member_in_json_and_text_is_the_plain_string(member):
    assert json.dumps({"status": member}) == json.dumps({"status": member.value})
    assert json.loads(json.dumps([member])) == [member.value]
    assert f"{member}" == str(member) == member.value and f"{member:>3}" == f"{member.value:>3}"


def test_a_log_line_holds_the_plain_string(capsys):
    log_event("t", status=CONSOLIDATED, result=CompletionResult.LATE)
    line = json.loads(capsys.readouterr().out)
    assert line["status"] == "consolidated" and line["result"] == "late"


def test_a_batch_document_decided_holds_the_same_bytes_as_with_plain_strings():
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    batch = {"batch_id": "20300101_abcdefabcdef", "game_date": "2030-01-01", "status": "running"}
    _, update = lc.decide_claim(batch, "r", "m1", now)
    plain = {k: (str.__str__(v) if isinstance(v, str) else v) for k, v in update.items()}
    assert type(plain["status"]) is str and type(update["status"]) is BatchStatus
    assert document.Document.serialize(document.Document(fields=_helpers.encode_dict(update))) == \
        document.Document.serialize(document.Document(fields=_helpers.encode_dict(plain)))
