"""Seeded fault injection, so a local run can prove that retries and dead letters lose nothing.

A spec such as `staging_write=0.3,completion_publish=0.1,poison=p001+p017,seed=7` is stored with the
batch (only when the function runs with BATCHLINE_ALLOW_FAULTS=1; production refuses it). Each
decision is a pure function of (seed, fault, item, delivery attempt): a redelivery draws anew, and the
same spec hits the same items on the same attempts in every batch, so a run is reproducible and a test
can predict which items a spec will exhaust (`exhausted_items`). The batch id is left out on purpose:
it is random, and folding it in made every run draw differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from batchline.domain import ids
from batchline.domain.bounds import parse_bounded

PROBABILITY_FAULTS = ("staging_write", "completion_publish")
FLAG_FAULTS = ("zero_merge",)
# Counted faults: `merge_transient=N` makes the first N MERGE attempts of a consolidation fail the way
# a passing BigQuery error does (the attempt's job finishes with an error, nothing changes).
# `pause_in_merge=S` / `pause_after_merge=S` hold the consolidation for S seconds after its MERGE job
# was submitted / after the verified result was recorded: a window in which a test kills the process.
# `record_fail=N` / `record_too_large=N`: the first N attempts to record a committed MERGE's result fail
# as Firestore would when it is unavailable (503) / when the document is too large or has too many
# index entries (400 InvalidArgument); the attempts are counted on the batch document, across deliveries.
COUNT_FAULTS = ("merge_transient", "pause_in_merge", "pause_after_merge", "record_fail", "record_too_large")


@dataclass(frozen=True)
class FaultSpec:
    staging_write: float = 0.0
    completion_publish: float = 0.0
    poison: tuple[str, ...] = ()
    zero_merge: bool = False
    merge_transient: int = 0
    pause_in_merge: int = 0
    pause_after_merge: int = 0
    record_fail: int = 0
    record_too_large: int = 0
    seed: int = 0

    def __bool__(self) -> bool:
        return self != FaultSpec(seed=self.seed)

    def to_spec(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in PROBABILITY_FAULTS if getattr(self, k)]
        if self.poison:
            parts.append("poison=" + "+".join(self.poison))
        if self.zero_merge:
            parts.append("zero_merge=1")
        parts += [f"{k}={getattr(self, k)}" for k in COUNT_FAULTS if getattr(self, k)]
        parts.append(f"seed={self.seed}")
        return ",".join(parts)

    def fires(self, fault: str, item: str, attempt: int) -> bool:
        """Whether `fault` hits this attempt. Poisoned items fail their staging write every time."""
        if fault == "staging_write" and item in self.poison:
            return True
        p = getattr(self, fault)
        if p <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}|{fault}|{item}|{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < p

    def fails_attempt(self, item: str, attempt: int) -> bool:
        """Whether a worker delivery fails: the staging write (poison included), or else the publish."""
        return any(self.fires(fault, item, attempt) for fault in PROBABILITY_FAULTS)

    def exhausted_items(self, items: list[str], max_attempts: int) -> list[str]:
        """The items whose every allowed delivery fails, i.e. the ones that must be dead-lettered."""
        return [i for i in items if all(self.fails_attempt(i, n) for n in range(1, max_attempts + 1))]


def unknown_items(spec: FaultSpec, items: Iterable[str]) -> list[str]:
    """The items a spec names (poison) that are not among the batch's `items`. A spec naming an item
    the batch does not have injects nothing there, and the run would report "OK: complete" for a
    fault that never happened, so a start refuses it (dispatch.start_batch, `batchline run`)."""
    known = set(items)
    return sorted(set(spec.poison) - known)


def check_items(spec: FaultSpec, items: Iterable[str], what: str) -> None:
    """Raise ValueError naming the spec's items that `what` (e.g. "the batch of 2026-01-01") lacks."""
    items = list(items)
    unknown = unknown_items(spec, items)
    if unknown:
        sample = ", ".join(sorted(items)[:3]) + (", ..." if len(items) > 3 else "")
        raise ValueError(f"fault poison names {len(unknown)} item(s) {what} does not have: "
                         f"{', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''} "
                         f"(it has {len(items)} items: {sample or 'none'})")


def parse(spec: str | None, seed: int = 0) -> FaultSpec:
    """Parse `key=value,...`; raises ValueError naming the bad part."""
    if not spec:
        return FaultSpec(seed=seed)
    values: dict[str, object] = {"seed": seed}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"fault {part!r} must be key=value")
        if key in PROBABILITY_FAULTS:
            values[key] = parse_bounded(raw, float, 0.0, 1.0, name=f"fault {key}", noun="a probability")
        elif key == "poison":
            try:
                values[key] = tuple(ids.validate_item_id(i) for i in raw.split("+") if i)
            except ValueError as exc:
                raise ValueError(f"fault poison: {exc}") from exc
        elif key in FLAG_FAULTS:
            flag = raw.strip().lower()
            if flag not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(f"fault {key} must be 1/true/yes or 0/false/no, got {raw!r}")
            values[key] = flag in ("1", "true", "yes")
        elif key in COUNT_FAULTS:
            values[key] = parse_bounded(raw, int, 0, 60, name=f"fault {key}", noun="a count")
        elif key == "seed":
            try:
                values[key] = int(raw)
            except ValueError as exc:
                raise ValueError(f"fault seed must be an integer, got {raw!r}") from exc
        else:
            known = ", ".join((*PROBABILITY_FAULTS, "poison", *FLAG_FAULTS, *COUNT_FAULTS, "seed"))
            raise ValueError(f"unknown fault {key!r}; known: {known}")
    return FaultSpec(**values)  # type: ignore[arg-type]
