"""Unit tests for batchline.domain.faults: seeded, reproducible fault injection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline.domain import faults
from batchline.domain.errors import FaultInjected
from batchline.domain.faults import FaultSpec

FAST = settings(max_examples=200, deadline=None)


def test_parse_full_spec():
    spec = faults.parse("staging_write=0.3, completion_publish=0.1,poison=p001+p017,zero_merge=1,seed=7")
    assert spec == FaultSpec(staging_write=0.3, completion_publish=0.1, poison=("p001", "p017"),
                             zero_merge=True, seed=7)
    assert spec


@pytest.mark.parametrize("empty", [None, ""])
def test_parse_empty_is_no_faults_with_seed(empty):
    spec = faults.parse(empty, seed=5)
    assert spec == FaultSpec(seed=5)
    assert not spec


def test_seed_argument_is_overridden_by_spec():
    assert faults.parse("seed=9", seed=5).seed == 9
    assert faults.parse("staging_write=0.5", seed=5).seed == 5


def test_blank_parts_are_ignored():
    assert faults.parse(",staging_write=0.5,,") == FaultSpec(staging_write=0.5)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("yes", True), ("0", False),
                                               ("no", False)])
def test_zero_merge_flag_values(raw, expected):
    assert faults.parse(f"zero_merge={raw}").zero_merge is expected


def test_bool_ignores_seed_only():
    assert not FaultSpec(seed=42)
    assert FaultSpec(zero_merge=True)
    assert FaultSpec(poison=("a",))
    assert FaultSpec(completion_publish=0.01)


@pytest.mark.parametrize(("spec", "must_name"), [
    ("bogus=1", "bogus"),
    ("staging_write=1.5", "staging_write"),
    ("staging_write=-0.1", "staging_write"),
    ("completion_publish=2", "completion_publish"),
    ("completion_publish=nan", "completion_publish"),
    ("staging_write=inf", "staging_write"),
    ("staging_write=lots", "staging_write"),
    ("seed=abc", "seed"),
    ("seed=1.5", "seed"),
    ("staging_write", "staging_write"),  # no '='
    ("poison=P-1", "P-1"),
    ("poison=ok+bad;id", "bad;id"),
    ("poison=a`b", "a`b"),
])
def test_parse_rejects_with_named_part(spec, must_name):
    with pytest.raises(ValueError) as info:
        faults.parse(spec)
    assert must_name in str(info.value)


def test_unknown_key_lists_known_keys():
    with pytest.raises(ValueError, match="unknown fault 'nope'; known: .*staging_write.*poison.*seed"):
        faults.parse("nope=1")


@pytest.mark.parametrize("p", [0.0, 1.0, 0.5])
def test_probability_bounds_inclusive(p):
    assert faults.parse(f"staging_write={p}").staging_write == p


specs = st.builds(
    FaultSpec,
    staging_write=st.floats(0, 1, allow_nan=False),
    completion_publish=st.floats(0, 1, allow_nan=False),
    poison=st.lists(st.from_regex(r"[a-z0-9][a-z0-9_]{0,20}", fullmatch=True).filter(str.isascii),
                    max_size=4).map(tuple),
    zero_merge=st.booleans(),
    seed=st.integers(-(2**63), 2**63),
)


@FAST
@given(specs)
def test_to_spec_round_trips(spec):
    text = spec.to_spec()
    assert faults.parse(text) == spec
    # the seed passed separately must not leak into a spec that states its own
    assert faults.parse(text, seed=spec.seed + 1) == spec


def test_to_spec_example():
    assert FaultSpec(staging_write=0.3, poison=("a", "b"), zero_merge=True, seed=7).to_spec() == \
        "staging_write=0.3,poison=a+b,zero_merge=1,seed=7"
    assert FaultSpec().to_spec() == "seed=0"


# -- fires --------------------------------------------------------------------------------------
@FAST
@given(spec=specs, fault=st.sampled_from(faults.PROBABILITY_FAULTS), item=st.text(max_size=10),
       attempt=st.integers(0, 1000))
def test_fires_is_deterministic(spec, fault, item, attempt):
    first = spec.fires(fault, item, attempt)
    assert all(spec.fires(fault, item, attempt) is first for _ in range(3))
    assert FaultSpec(**spec.__dict__).fires(fault, item, attempt) is first


@pytest.mark.parametrize("fault", faults.PROBABILITY_FAULTS)
@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_fires_rate_across_attempts(fault, p):
    spec = FaultSpec(**{fault: p}, seed=7)
    hits = sum(spec.fires(fault, "item_a", attempt) for attempt in range(2000))
    assert p - 0.05 <= hits / 2000 <= p + 0.05


def test_fires_rate_across_items():
    spec = FaultSpec(staging_write=0.3, seed=1)
    hits = sum(spec.fires("staging_write", f"p{i}", 1) for i in range(2000))
    assert 0.25 <= hits / 2000 <= 0.35


def test_fires_depends_on_attempt_seed_and_fault():
    spec = FaultSpec(staging_write=0.5, completion_publish=0.5, seed=1)
    by_attempt = [spec.fires("staging_write", "a", n) for n in range(64)]
    assert len(set(by_attempt)) == 2  # a redelivery draws anew
    other_seed = FaultSpec(staging_write=0.5, seed=2)
    assert by_attempt != [other_seed.fires("staging_write", "a", n) for n in range(64)]
    assert by_attempt != [spec.fires("completion_publish", "a", n) for n in range(64)]


@FAST
@given(item=st.text(max_size=10), attempt=st.integers(0, 10**6), seed=st.integers())
def test_p_zero_never_fires(item, attempt, seed):
    spec = FaultSpec(seed=seed)
    for fault in faults.PROBABILITY_FAULTS:
        assert not spec.fires(fault, item, attempt)


@FAST
@given(attempt=st.integers(0, 10**6), seed=st.integers())
def test_p_one_always_fires(attempt, seed):
    spec = FaultSpec(staging_write=1.0, completion_publish=1.0, seed=seed)
    assert spec.fires("staging_write", "a", attempt)
    assert spec.fires("completion_publish", "a", attempt)


@FAST
@given(attempt=st.integers(0, 10**6), seed=st.integers())
def test_poison_fires_staging_write_only(attempt, seed):
    spec = faults.parse(f"poison=p001+p017,seed={seed}")
    assert spec.fires("staging_write", "p001", attempt)
    assert spec.fires("staging_write", "p017", attempt)
    assert not spec.fires("staging_write", "p002", attempt)
    assert not spec.fires("completion_publish", "p001", attempt)


def test_fault_injected_is_runtime_error():
    assert issubclass(FaultInjected, RuntimeError)


def test_draws_do_not_depend_on_the_batch():
    """Same spec, same item, same attempt: same decision in every batch, so a run is reproducible."""
    spec = FaultSpec(staging_write=0.5, seed=4)
    first = [spec.fires("staging_write", f"p{i}", n) for i in range(20) for n in range(1, 6)]
    again = [FaultSpec(staging_write=0.5, seed=4).fires("staging_write", f"p{i}", n)
             for i in range(20) for n in range(1, 6)]
    assert first == again


def test_exhausted_items_are_those_failing_every_allowed_attempt():
    spec = FaultSpec(staging_write=0.6, completion_publish=0.3, poison=("p3",), seed=9)
    items = [f"p{i}" for i in range(400)]
    doomed = spec.exhausted_items(items, 5)
    assert "p3" in doomed
    for item in items:
        every_attempt_fails = all(
            spec.fires("staging_write", item, n) or spec.fires("completion_publish", item, n)
            or item in spec.poison for n in range(1, 6))
        assert (item in doomed) == every_attempt_fails
    # 1 - (0.4 * 0.7) = 0.72 per attempt, 0.72**5 ~ 19%: some but not most items are exhausted.
    assert 30 < len(doomed) < 130


def test_no_faults_exhaust_nothing():
    assert FaultSpec(seed=3).exhausted_items([f"p{i}" for i in range(50)], 5) == []


def test_a_spec_naming_items_the_batch_lacks_is_refused_naming_them():
    spec = faults.parse("poison=p003+player_0001+zz", seed=1)
    assert faults.unknown_items(spec, ["player_0000", "player_0001"]) == ["p003", "zz"]
    with pytest.raises(ValueError, match=r"2 item\(s\) the batch of 2030-01-01 does not have: p003, zz") as exc:
        faults.check_items(spec, ["player_0000", "player_0001"], "the batch of 2030-01-01")
    assert "it has 2 items: player_0000, player_0001" in str(exc.value)
    faults.check_items(faults.parse("poison=player_0001"), ["player_0000", "player_0001"], "x")  # known: fine
    faults.check_items(faults.parse("staging_write=0.5"), [], "x")  # names no item: nothing to check
