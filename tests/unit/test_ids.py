"""Unit tests for batchline.domain.ids: the allow-list every untrusted identifier passes."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchline.domain import ids

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SQL_DANGEROUS = set("`'\";\n ")

# (validator, its allow-list, one valid value, whether "-" is allowed, whether "." is allowed)
VALIDATORS = {
    "project": (ids.validate_project, ids._PROJECT, "my-project-1", True),
    "dataset": (ids.validate_dataset, ids._DATASET, "my_dataset", False),
    "table": (ids.validate_table_name, ids._TABLE, "my_table", False),
    "topic_prefix": (ids.validate_topic_prefix, ids._TOPIC_PREFIX, "batchline-dev", True),
    "location": (ids.validate_location, ids._LOCATION, "us-east1", True),
    "batch_id": (ids.validate_batch_id, ids._BATCH_ID, "20260115_0123456789ab", False),
    "item_id": (ids.validate_item_id, ids._ITEM_ID, "lebron_james", False),
    "game_id": (ids.validate_game_id, ids._GAME_ID, "G20260115_LAL", False),
    "write_id": (ids.validate_write_id, ids._WRITE_ID, "0123456789abcdef0123456789abcdef", False),
}
NAMES = sorted(VALIDATORS)

BATCH = "20260115_0123456789ab"


@pytest.mark.parametrize("name", NAMES)
def test_valid_example_is_returned_unchanged(name):
    fn, _, good, _ = VALIDATORS[name]
    assert fn(good) == good


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", ["`", "'", '"', ";", " ", ".", "\n", "\t", "\\", "/", "*", "$", "\x00"])
def test_validators_reject_dangerous_characters(name, bad):
    fn, _, good, _ = VALIDATORS[name]
    for candidate in (good + bad, bad + good, good[:2] + bad + good[2:]):
        with pytest.raises(ValueError, match="invalid"):
            fn(candidate)


@pytest.mark.parametrize("name", NAMES)
def test_dash_only_where_allowed(name):
    fn, _, good, dash_ok = VALIDATORS[name]
    candidate = good[:2] + "-" + good[2:]
    if dash_ok:
        assert fn(candidate) == candidate
    else:
        with pytest.raises(ValueError):
            fn(candidate)


@pytest.mark.parametrize("name", NAMES)
def test_trailing_newline_is_rejected(name):
    # re.match with `$` would accept "abc\n"; fullmatch must not.
    fn, _, good, _ = VALIDATORS[name]
    with pytest.raises(ValueError):
        fn(good + "\n")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lookalike", [
    "\u0430",  # Cyrillic a
    "\u0435",  # Cyrillic e
    "\uff41",  # fullwidth a
    "\u0661",  # Arabic-Indic digit one
    "\uff11",  # fullwidth digit one
    "\u200b",  # zero-width space
    "\u00e9",  # e acute
    "\uff3f",  # fullwidth low line
    "\u2010",  # unicode hyphen
])
def test_validators_reject_unicode_lookalikes(name, lookalike):
    fn, _, good, _ = VALIDATORS[name]
    with pytest.raises(ValueError):
        fn(good[:-1] + lookalike)


@pytest.mark.parametrize("name", NAMES)
def test_validators_reject_empty(name):
    fn = VALIDATORS[name][0]
    with pytest.raises(ValueError):
        fn("")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [None, 1, 1.5, b"abcdef", ["abcdef"], {"a": 1}, True])
def test_validators_reject_non_strings(name, value):
    fn = VALIDATORS[name][0]
    with pytest.raises(ValueError):
        fn(value)


@pytest.mark.parametrize(("name", "longest"), [
    ("project", 30), ("dataset", 128), ("table", 1024), ("topic_prefix", 40), ("location", 30),
    ("item_id", 64), ("game_id", 64),
])
def test_validators_length_limits(name, longest):
    fn = VALIDATORS[name][0]
    ok = "a" * longest
    assert fn(ok) == ok
    with pytest.raises(ValueError):
        fn("a" * (longest + 1))


def test_project_minimum_length_and_shape():
    assert ids.validate_project("abcdef") == "abcdef"
    for bad in ("abcde", "1abcdef", "abcdef-", "Abcdef", "my_project"):
        with pytest.raises(ValueError):
            ids.validate_project(bad)


def test_batch_id_exact_shape():
    for bad in ("2026011_0123456789ab", "20260115_0123456789a", "20260115_0123456789AB",
                "20260115-0123456789ab", "20260115_0123456789abc", "x20260115_0123456789ab"):
        with pytest.raises(ValueError):
            ids.validate_batch_id(bad)


def test_item_id_must_be_lowercase_and_not_start_with_underscore():
    for bad in ("Lebron", "_lebron", "le.bron"):
        with pytest.raises(ValueError):
            ids.validate_item_id(bad)


NEAR_MISS = st.text(alphabet="abcxyz019_-`'\";\n .\u0430\uff41\u0661", max_size=40)


@FAST
@given(name=st.sampled_from(NAMES), text=st.one_of(st.text(max_size=80), NEAR_MISS))
def test_any_text_is_rejected_or_safe(name, text):
    fn, pattern, _, _ = VALIDATORS[name]
    try:
        out = fn(text)
    except ValueError:
        return
    assert out == text
    assert pattern.fullmatch(out)
    assert not SQL_DANGEROUS & set(out)
    assert out.isascii()


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_any_allow_listed_string_is_accepted(name, data):
    fn, pattern, _, _ = VALIDATORS[name]
    value = data.draw(st.from_regex(pattern, fullmatch=True).filter(lambda s: s.isascii()))
    assert fn(value) == value


# -- the batch staging table and write ids ---------------------------------------------------------
def test_batch_staging_table_shape():
    name = ids.batch_staging_table(BATCH)
    assert name == f"stg_{BATCH}"
    assert ids.validate_table_name(name) == name


@pytest.mark.parametrize("bad", ["not-a-batch", f"{BATCH}`", f"{BATCH}; DROP", "", None])
def test_batch_staging_table_validates_the_batch_id(bad):
    with pytest.raises(ValueError):
        ids.batch_staging_table(bad)


batch_ids = st.builds(lambda d, h: f"{d:%Y%m%d}_{h}",
                      st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
                      st.from_regex(r"[0-9a-f]{12}", fullmatch=True))


@FAST
@given(b1=batch_ids, b2=batch_ids)
def test_batch_staging_table_is_injective(b1, b2):
    assert (ids.batch_staging_table(b1) == ids.batch_staging_table(b2)) == (b1 == b2)


def test_write_id_exact_shape():
    assert ids.validate_write_id("f" * 32) == "f" * 32
    for bad in ("f" * 31, "f" * 33, "F" * 32, "g" * 32, "0123456789abcdef-0123456789abcde"):
        with pytest.raises(ValueError):
            ids.validate_write_id(bad)


def test_new_write_ids_are_valid_and_fresh():
    made = {ids.new_write_id() for _ in range(200)}
    assert len(made) == 200
    assert all(ids.validate_write_id(w) == w for w in made)


# -- game dates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("2000-01-01", dt.date(2000, 1, 1)),
    ("2100-12-31", dt.date(2100, 12, 31)),
    ("2026-01-15", dt.date(2026, 1, 15)),
    ("2024-02-29", dt.date(2024, 2, 29)),
])
def test_parse_game_date_accepts(raw, expected):
    assert ids.parse_game_date(raw) == expected


def test_parse_game_date_accepts_date_objects():
    assert ids.parse_game_date(dt.date(2026, 1, 15)) == dt.date(2026, 1, 15)
    with pytest.raises(ValueError, match="outside"):
        ids.parse_game_date(dt.date(1999, 12, 31))


@pytest.mark.parametrize("raw", [
    "1999-12-31", "2101-01-01",  # out of bounds
    "2026-02-30", "2025-02-29", "2026-13-01", "2026-00-10", "2026-04-31",  # not real dates
    "20260115", "2026/01/15", "15-01-2026", "2026-1-15", "2026-01-15T00:00:00", " 2026-01-15",
    "2026-01-15\n", "2026-W03-4", "２０２６-01-15", "", "today",
    None, 20260115, b"2026-01-15",
])
def test_parse_game_date_rejects(raw):
    with pytest.raises(ValueError):
        ids.parse_game_date(raw)


@FAST
@given(st.text(max_size=20))
def test_parse_game_date_raises_only_value_error(text):
    try:
        day = ids.parse_game_date(text)
    except ValueError:
        return
    assert dt.date(2000, 1, 1) <= day <= dt.date(2100, 12, 31)
    assert day.isoformat() == text


def test_parse_game_date_datetime_input_is_value_error_or_date():
    try:
        out = ids.parse_game_date(dt.datetime(2026, 1, 15, 5, 0))
    except ValueError:
        return
    assert type(out) is dt.date


# -- batch ids ----------------------------------------------------------------------------------
def test_new_batch_id_validates_and_embeds_date():
    bid = ids.new_batch_id(dt.date(2026, 1, 15))
    assert ids.validate_batch_id(bid) == bid
    assert bid.startswith("20260115_")
    assert re.fullmatch(r"20260115_[0-9a-f]{12}", bid)


def test_new_batch_id_differs_between_calls():
    day = dt.date(2026, 1, 15)
    generated = {ids.new_batch_id(day) for _ in range(200)}
    assert len(generated) == 200


# -- hashed document ids: stored documents keep these ids, so the form is pinned to known values -------
# (computed once with `hashlib.sha256(text.encode()).hexdigest()`, written out here on purpose)
@pytest.mark.parametrize(("text", "digits", "doc_id"), [
    ("projects/p/msg-1", ids.MESSAGE_DOC_ID_HEX, "45c18e45c7132c893e81f4a51fca332eae3a6400"),
    ("req-2026-01-01", 64, "e57110c2ea90152c607ecc9fab2b525ce65bab028badbb4e3d02068df5bdd9ee"),
    ("a\udc80b", ids.MESSAGE_DOC_ID_HEX, "5991f63de2d620bcac02573ce3a67b46bc2b8f40"),  # a lone surrogate
])
def test_hashed_doc_id_is_pinned(text, digits, doc_id):
    assert ids.hashed_doc_id(text, digits) == doc_id


def test_message_doc_ids_are_40_hex_and_request_doc_ids_64():
    from batchline.domain.control_requests import request_doc_id

    assert ids.MESSAGE_DOC_ID_HEX == 40
    assert request_doc_id("req-2026-01-01") == "e57110c2ea90152c607ecc9fab2b525ce65bab028badbb4e3d02068df5bdd9ee"
    assert re.fullmatch(r"[0-9a-f]{40}", ids.hashed_doc_id("x/y", ids.MESSAGE_DOC_ID_HEX))


def test_merge_attempt_label_is_the_form_job_ids_manifests_and_pins_share():
    from batchline.domain.accounting import merge_job_id

    assert ids.merge_attempt_label(2, 13) == "g2_a13"
    assert merge_job_id(BATCH, 2, 13) == f"batchline_merge_{BATCH}_g2_a13"
    assert ids.validate_pin(ids.new_pin(2, 13)).startswith("g2_a13_")
