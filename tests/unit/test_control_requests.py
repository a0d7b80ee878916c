"""Control requests (batchline.domain.control_requests): every action's valid shape parses, anything else is an
InvalidMessage naming the field; and the coordinator's /control route refuses what does not parse."""

from __future__ import annotations

import base64
import datetime as dt
import json
import string
from pathlib import Path

import functions_framework
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline.domain import control_requests as ctl
from batchline.domain.errors import InvalidMessage

REPO = Path(__file__).resolve().parents[2]
request_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", fullmatch=True)
dates = st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31))
batch_ids = st.from_regex(r"[0-9]{8}_[0-9a-f]{12}", fullmatch=True)
item_ids = st.from_regex(r"[a-z0-9][a-z0-9_]{0,63}", fullmatch=True)


def _valid(draw, action: str) -> dict:
    base = {"v": 1, "action": action, "request_id": draw(request_ids)}
    if action == "start":
        return {**base, "game_date": draw(dates).isoformat(), "force": draw(st.booleans()),
                "accept_stale_inputs": draw(st.booleans())}
    if action == "consolidate":
        return {**base, "batch_id": draw(batch_ids)}
    if action == "reconcile":
        return {**base, "game_date": draw(dates).isoformat(), "repair": draw(st.booleans())}
    if action == "redispatch":
        return {**base, "batch_id": draw(batch_ids),
                "items": draw(st.lists(item_ids, min_size=1, max_size=20, unique=True))}
    return {**base, "source": draw(st.sampled_from(ctl.REPLAY_SOURCES)),
            "batch_id": draw(st.none() | batch_ids), "limit": draw(st.integers(1, ctl.MAX_REPLAY))}


@st.composite
def valid_requests(draw) -> dict:
    return _valid(draw, draw(st.sampled_from(ctl.ACTIONS)))


@given(valid_requests())
@settings(max_examples=300)
def test_every_valid_request_parses_to_its_action_and_round_trips(payload):
    req = ctl.parse_control(payload)
    assert req.action == payload["action"] and req.request_id == payload["request_id"]
    assert ctl.parse_control(json.loads(req.model_dump_json())) == req
    assert len(ctl.request_doc_id(req.request_id)) == 64


@given(valid_requests(), st.text(string.ascii_letters, min_size=1, max_size=12), st.integers())
def test_extra_fields_are_refused(payload, key, value):
    if key in payload:
        return
    with pytest.raises(InvalidMessage, match=key):
        ctl.parse_control({**payload, key: value})


@given(valid_requests(), st.data())
def test_a_missing_required_field_is_refused(payload, data):
    required = {"start": ["game_date"], "consolidate": ["batch_id"], "reconcile": ["game_date"],
                "redispatch": ["batch_id", "items"], "replay_dead_letters": ["source"]}[payload["action"]]
    field = data.draw(st.sampled_from(["request_id", "action", *required]))
    with pytest.raises(InvalidMessage):
        ctl.parse_control({k: v for k, v in payload.items() if k != field})


BAD_REQUEST_IDS = ["", " x", "-lead", "a/b", "a b", "x" * 129, "é", "a\n", 7, None, ["a"]]


@pytest.mark.parametrize("bad", BAD_REQUEST_IDS)
def test_bad_request_ids_are_refused(bad):
    with pytest.raises(InvalidMessage, match="request_id"):
        ctl.parse_control({"v": 1, "action": "consolidate", "request_id": bad, "batch_id": "20300101_abcdefabcdef"})


@given(st.text(max_size=140))
def test_request_ids_follow_the_allow_list(text):
    ok = ctl._REQUEST_ID.fullmatch(text) is not None
    payload = {"action": "consolidate", "request_id": text, "batch_id": "20300101_abcdefabcdef"}
    if ok:
        assert ctl.parse_control(payload).request_id == text
    else:
        with pytest.raises(InvalidMessage):
            ctl.parse_control(payload)


@pytest.mark.parametrize("bad_date", ["2030-02-30", "1999-12-31", "2101-01-01", "20300101", "2030-1-1",
                                      20300101, None, "", "tomorrow"])
@pytest.mark.parametrize("action", ["start", "reconcile"])
def test_bad_dates_are_refused(action, bad_date):
    with pytest.raises(InvalidMessage, match="game_date"):
        ctl.parse_control({"action": action, "request_id": "r1", "game_date": bad_date})


@pytest.mark.parametrize("patch", [
    {"v": 2}, {"v": "1"}, {"action": "stop"}, {"action": "START"}, {"force": "true"}, {"force": 1},
])
def test_bad_versions_actions_and_loose_booleans_are_refused(patch):
    with pytest.raises(InvalidMessage):
        ctl.parse_control({"action": "start", "request_id": "r1", "game_date": "2030-01-01", **patch})


@pytest.mark.parametrize("patch", [
    {"items": []}, {"items": ["player_0001", "player_0001"]}, {"items": ["Player"]}, {"items": "player_0001"},
    {"items": [f"p{i}" for i in range(ctl.MAX_REDISPATCH_ITEMS + 1)]}, {"batch_id": "20300101_ABCDEFABCDEF"},
])
def test_bad_redispatch_requests_are_refused(patch):
    with pytest.raises(InvalidMessage):
        ctl.parse_control({"action": "redispatch", "request_id": "r1", "batch_id": "20300101_abcdefabcdef",
                           "items": ["player_0001"], **patch})


@pytest.mark.parametrize("patch", [
    {"source": "summary"}, {"source": "work-dlq"}, {"limit": 0}, {"limit": ctl.MAX_REPLAY + 1}, {"limit": "5"},
    {"limit": 1.5}, {"batch_id": "x"},
])
def test_bad_replay_requests_are_refused(patch):
    with pytest.raises(InvalidMessage):
        ctl.parse_control({"action": "replay_dead_letters", "request_id": "r1", "source": "work", **patch})


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                    max_leaves=20))
@settings(max_examples=300)
def test_random_json_never_parses_and_never_raises_anything_else(junk):
    with pytest.raises(InvalidMessage):
        ctl.parse_control(junk)


# -- the route, through functions-framework's app --------------------------------------------
@pytest.fixture(scope="module")
def client():
    app = functions_framework.create_app(target="coordinator", source=str(REPO / "functions/coordinator/main.py"))
    return app.test_client()


def _envelope(payload) -> dict:
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    return {"message": {"data": data, "messageId": "m1", "attributes": {}}, "subscription": "s"}


@pytest.mark.parametrize("payload", [
    {"action": "start", "request_id": "r1", "game_date": "2030-02-30"},
    {"action": "start", "request_id": "a/b", "game_date": "2030-01-01"},
    {"action": "start", "request_id": "r1", "game_date": "2030-01-01", "faults": "poison=x"},
    ["not", "an", "object"],
])
def test_control_route_answers_400_with_the_reason_before_touching_any_store(client, payload):
    resp = client.post("/control", json=_envelope(payload))
    assert resp.status_code == 400
    assert "invalid control request" in resp.get_json()["error"] or "JSON object" in resp.get_json()["error"]


def test_control_route_is_post_only(client):
    assert client.get("/control").status_code == 405


def test_every_refusal_of_the_control_path_keeps_its_reason_and_particulars():
    from batchline.domain.errors import BatchConflict, RepairAlreadyAttempted, StaleInputs
    from batchline.flows.control import REFUSALS, refusal

    loaded = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    stale = refusal(StaleInputs(dt.date(2030, 1, 3), loaded, 24, 7))
    assert "stale" in stale["error"] and "--accept-stale-inputs" in stale["error"]
    assert stale | {"error": None} == {"error": None, "game_date": "2030-01-03", "newest_loaded_at": loaded.isoformat(),
                                       "max_age_hours": 24, "context_rows": 7}
    conflict = refusal(BatchConflict("20300101_abcdefabcdef", "running"))
    assert conflict["conflicting_batch_id"] == "20300101_abcdefabcdef" and conflict["conflicting_status"] == "running"
    assert refusal(RepairAlreadyAttempted("b1", ["x"]))["repaired_by"] == "b1"
    assert refusal(InvalidMessage("nope")) == {"error": "nope"}
    assert StaleInputs in REFUSALS and BatchConflict in REFUSALS
