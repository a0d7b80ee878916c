"""How a batch is judged, defined once for every report of it (the ledger, `batchline audit`,
`batchline status`), so that two reports of the same batch can never disagree. Pure: the facts are
gathered from the systems of record by `batchline.flows.batch_facts`, and judged here.

- a MERGE job id names its batch, generation and attempt (`merge_job_id`, `parse_merge_job_id`):
  batch consolidations use generations 0, 1, ... (one per re-open), the reconciliation's orphan
  merges ORPHAN_GENERATION_BASE and up; "this batch's MERGEs" are judged by kind (`merge_problems`);
- a staging table is either kept on purpose (`kept_table_reason`) or left (`staging_problem`);
- an item counts as merged only when its rows in the main table are complete (item_shape.py), and
  every expected item is in exactly one of audit.STATES (`judge`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from batchline.domain import ids, item_shape
from batchline.domain.audit import partition
from batchline.domain.item_shape import Shape
from batchline.domain.runs import repair_blocked
from batchline.domain.statuses import (
    ACTIVE_STATUSES,
    CONSOLIDATED,
    CONSOLIDATION_FAILED,
    DISPATCH_FAILED,
    FAILED,
    SUPERSEDED,
)

MERGE_JOB_PREFIX = "batchline_merge_"
ORPHAN_GENERATION_BASE = 1000  # batch consolidations use generations 0, 1, 2, ... (re-opens)
_JOB = re.compile(rf"{MERGE_JOB_PREFIX}(?P<batch>[0-9]{{8}}_[0-9a-f]{{12}})_g(?P<g>[0-9]{{1,9}})_a(?P<a>[0-9]{{1,9}})")


def merge_job_id(batch_id: str, generation: int = 0, attempt: int = 0) -> str:
    """One job id per (generation, attempt): a redelivery waits for the job of the current attempt;
    only an attempt known to have failed is followed by the next one (lifecycle.decide_next_merge_attempt)."""
    return merge_job_prefix(batch_id) + ids.merge_attempt_label(generation, attempt)


def merge_job_prefix(batch_id: str) -> str:
    """Every MERGE job of a batch on the main table has a job id starting with this."""
    return f"{MERGE_JOB_PREFIX}{ids.validate_batch_id(batch_id)}_"


def parse_merge_job_id(job_id: str) -> tuple[str, int, int] | None:
    """(batch id, generation, attempt) of a MERGE job id, None for any other job."""
    m = _JOB.fullmatch(job_id)
    return (m["batch"], int(m["g"]), int(m["a"])) if m else None


def merge_problems(batch: dict, job_ids: Iterable[str]) -> list[str]:
    """What is wrong with this batch's successful MERGE jobs on the main table (`job_ids`), by kind:
    at most one per generation (F2), only generations the batch document knows (its consolidations
    up to `consolidation_generation`, its orphan merges up to `orphan_generation`), the consolidated
    batch's recorded MERGE among them, and every orphan MERGE recorded as verified (`orphans_merged`)."""
    batch_id = batch["batch_id"]
    per_generation: dict[int, list[str]] = {}
    for job_id in job_ids:
        parsed = parse_merge_job_id(job_id)
        if parsed is None or parsed[0] != batch_id:
            continue
        per_generation.setdefault(parsed[1], []).append(job_id)
    problems = [f"{len(jobs)} successful MERGE jobs of generation {g} ({', '.join(sorted(jobs))}); at most one each"
                for g, jobs in sorted(per_generation.items()) if len(jobs) > 1]
    consolidations = int(batch.get("consolidation_generation") or 0)
    orphans = int(batch.get("orphan_generation") or 0)
    unknown = sorted(g for g in per_generation
                     if (consolidations < g < ORPHAN_GENERATION_BASE) or g > max(orphans, ORPHAN_GENERATION_BASE - 1))
    if unknown:
        problems.append(f"MERGE jobs of generations {unknown} that the batch document does not know")
    found = {j for jobs in per_generation.values() for j in jobs}
    result = batch.get("merge_result") or {}
    recorded = result.get("job_id")
    if batch["status"] == CONSOLIDATED and result.get("verified_items") and recorded not in found:
        problems.append(f"the batch's recorded MERGE {recorded} is not among its successful jobs on the main table")
    verified = {r.get("job_id") for r in batch.get("orphans_merged") or []}
    unverified = sorted(j for g, jobs in per_generation.items() if g >= ORPHAN_GENERATION_BASE
                        for j in jobs if j not in verified)
    if unverified:
        problems.append(f"orphan MERGE jobs not recorded as verified: {', '.join(unverified)}")
    return problems


def kept_table_reason(batch: dict) -> str | None:
    """Why the batch's staging table is kept on purpose, None when nothing should keep it."""
    status = batch["status"]
    if status in ACTIVE_STATUSES:
        return f"the batch is still {status}"
    if status == CONSOLIDATION_FAILED:
        return "the evidence of a failed consolidation, kept for its re-consolidation or the reconciliation"
    if status == CONSOLIDATED and batch.get("staging_table_dropped") is False:
        return ("rows arrived after the consolidation's inventory (staging_kept_late_rows); the daily "
                "reconciliation finishes them per item")
    if status in (SUPERSEDED, DISPATCH_FAILED):
        return f"the batch ended {status}; the daily reconciliation finishes its staged rows per item"
    return None


def staging_problem(batch: dict, table_exists: bool) -> str | None:
    if table_exists and kept_table_reason(batch) is None:
        return "the batch staging table is left after consolidation, and nothing keeps it on purpose"
    return None


@dataclass
class BatchFacts:
    """What the systems of record hold about one batch (gathered by batchline.flows.batch_facts)."""

    batch: dict
    items: dict[str, dict]  # the batch's item documents
    schedule: set[str]  # the date's players in the context table (a repair batch: its items of them)
    own_rows: dict[str, Shape]  # player -> this batch's rows in the main table for the date
    other_batches: dict[str, dict[str, int]]  # player -> another batch with rows of the player -> its active rows
    active_from: dict[str, list[str]]  # player -> batches holding its active rows
    dead_lettered: set[str]
    duplicate_ids: int  # rows beyond one per prediction id for the date
    duplicate_active: int  # active rows beyond one per (player, system, prop)
    staging_table_exists: bool
    merge_jobs: list[str]  # this batch's successful MERGE jobs on the main table
    window_dml: int = 0  # all DML on the main table since the batch began
    newest: tuple[str | None, str | None] = (None, None)  # the date's newest run and its status
    merged_by_batch: set[str] = field(default_factory=set)  # items its own verified MERGEs merged (merged_pins)


@dataclass
class Judgement:
    expected: list[str]
    parts: dict[str, list[str]]  # audit.STATES -> items
    incomplete: dict[str, str]  # item -> what its rows lack
    overwritten: dict[str, list[str]]  # merged items whose rows a later run of the date updated since
    kept_table_reason: str | None
    problems: list[str] = field(default_factory=list)
    repair_blocked: str | None = None  # why a replay or repair of the batch's items is refused now


def merged_pins(batch: dict) -> list[str]:
    """The pins (batchline/adapters/manifests.py) of the batch's own verified MERGEs: its recorded consolidation's
    and its orphan merges'; the items they merged are those pins' rows in the manifest table."""
    pins = [(batch.get("merge_result") or {}).get("pin")] if batch["status"] == CONSOLIDATED else []
    return sorted(p for p in [*pins, *(r.get("pin") for r in batch.get("orphans_merged") or [])] if p)


def judge(f: BatchFacts) -> Judgement:
    """Every expected item in one state, and every problem of the batch, in words."""
    batch = f.batch
    expected = sorted(f.schedule | set(f.items))
    shape = {i: item_shape.shape_problem(s) for i, s in f.own_rows.items()}
    complete = {i for i, problem in shape.items() if problem is None}
    # A MERGE updates a matching row's batch id: rows this batch verified may since carry a later run's.
    overwritten = {i: sorted(f.other_batches[i]) for i in f.merged_by_batch - complete if f.other_batches.get(i)}
    incomplete = {i: str(shape[i]) for i in f.own_rows if i not in complete and i not in overwritten}
    # an item failed because its write was incomplete (completion.record_incomplete) is as short
    incomplete |= {i: str(d.get("failure_reason")) for i, d in f.items.items() if d.get("status") == FAILED
                   and str(d.get("failure_reason") or "").startswith(item_shape.INCOMPLETE_WRITE)
                   and i not in complete and i not in overwritten and i not in incomplete}
    parts = partition(expected, complete | set(overwritten), f.dead_lettered, incomplete)
    problems = []
    if batch["status"] != CONSOLIDATED:
        problems.append(f"batch ended {batch['status']}: {batch.get('error') or ''}".strip())
    if parts["missing"]:
        problems.append(f"{len(parts['missing'])} expected items neither merged nor dead-lettered")
    if parts["incomplete"]:
        named = "; ".join(f"{i} {incomplete[i]}" for i in parts["incomplete"][:5])
        problems.append(f"{len(parts['incomplete'])} items with incomplete rows in the main table ({named})")
    if f.duplicate_ids or f.duplicate_active:
        problems.append(f"{f.duplicate_ids + f.duplicate_active} duplicate rows in the main table "
                        f"({f.duplicate_active} active beyond one per player, system and prop)")
    staged = staging_problem(batch, f.staging_table_exists)
    problems += [staged] if staged else []
    problems += merge_problems(batch, f.merge_jobs)
    return Judgement(expected, parts, {i: incomplete[i] for i in parts["incomplete"]}, overwritten,
                     kept_table_reason(batch) if f.staging_table_exists else None, problems,
                     repair_blocked(*f.newest, batch["game_date"]))
