"""The loss ledger: what a batch was supposed to produce versus what landed, counted from the
systems of record, never from the pipeline's own claims (batchline/flows/batch_facts.py gathers them) and
judged by the one definition every report of a batch shares (batchline/domain/accounting.py), so the ledger
and `batchline audit` never disagree.

Every expected item falls in exactly one part (audit.STATES, asserted there):

expected        the date's players in the context table (a repair batch: its items of them), and every
                item the batch has a document for
merged          expected items whose rows in the main table carrying this batch id are complete (one per
                configured system x prop, item_shape.py), or that the batch's verified MERGE merged and a
                later run of the date updated since; recovered ones included
  recovered     the subset of merged that was dead-lettered first (its staged write was merged anyway)
dead-lettered   expected items whose work message was dead-lettered and that are NOT merged
incomplete      expected items with rows of this batch that are not complete: named, a problem
missing         the rest: the number that must be zero

duplicates      rows beyond one per prediction id for the date, plus active rows beyond one per
                (player, system, prop) (BigQuery)
staging left    the batch's staging table still present, asked by name; a problem only when nothing keeps
                it on purpose (accounting.kept_table_reason: late rows, a failed consolidation, ...)
mutating DML    successful MERGE jobs of this batch on the main table (by job id, accounting.merge_job_id),
                judged by kind: one per consolidation generation, orphan merges recorded on the batch;
                `main_table_mutating_dml_window` counts all DML on the main table since the batch began
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from batchline.adapters import merge_jobs
from batchline.adapters.clients import Clients
from batchline.domain import accounting
from batchline.flows import batch_facts

# The same readers, for callers that count one part themselves (batchline chaos, tests).
dead_letters_in_subscription = batch_facts.dead_letters_in_subscription


def replay_command(batch_id: str) -> str:
    return f"batchline dlq replay --batch {batch_id}"


@dataclass
class Ledger:
    batch_id: str
    game_date: str
    batch_status: str
    expected_items: int
    merged_items: int
    dead_lettered_items: int
    missing_items: list[str]
    duplicate_rows: int
    staging_tables_left: int
    main_table_mutating_dml: int
    merged_rows: int
    elapsed_s: float
    recovered_items: int = 0
    recovered_ids: list[str] = field(default_factory=list)
    dead_lettered_ids: list[str] = field(default_factory=list)
    # scheduled items this run did not merge whose rows from an earlier run of the date stay active
    kept_previous_ids: list[str] = field(default_factory=list)
    main_table_mutating_dml_window: int = 0
    coverage_pct: float = 0.0
    coverage_warning_pct: float = 0.0
    incomplete_ids: dict[str, str] = field(default_factory=dict)  # item -> what its rows lack
    staging_kept_reason: str | None = None  # why a staging table still there is kept on purpose
    main_table_merge_jobs: list[str] = field(default_factory=list)
    replay_blocked: str | None = None  # why `dlq replay` of its dead letters is refused now
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost silently and nothing duplicated: every item is merged or dead-lettered."""
        return not self.problems

    @property
    def complete(self) -> bool:
        return self.ok and self.dead_lettered_items == 0

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "NOT OK: " + "; ".join(self.problems)
        low = (f"; coverage {self.coverage_pct:.1f}% below the {self.coverage_warning_pct:g}% warning level"
               if self.coverage_pct < self.coverage_warning_pct else "")
        if self.complete:
            return "OK: complete" + low
        how = (f"replay with: {replay_command(self.batch_id)}" if not self.replay_blocked
               else f"replay refused for now: {self.replay_blocked}")
        return f"ACCOUNTED FOR but INCOMPLETE: {self.dead_lettered_items} dead-lettered ({how})" + low

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "complete": self.complete, "verdict": self.verdict}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def main_table_dml_since(clients: Clients, since) -> int:
    """All successful mutating DML on the main table since `since`, whichever batch ran it."""
    return merge_jobs.main_table_merges(clients.bq, clients.settings, since)[1]


def compute(clients: Clients, batch_id: str, elapsed_s: float) -> Ledger:
    facts = batch_facts.gather(clients, batch_id)
    j = accounting.judge(facts)
    batch, parts = facts.batch, j.parts
    merged = parts["merged"] + parts["recovered"]
    expected = len(j.expected)
    return Ledger(
        batch_id=batch_id, game_date=batch["game_date"], batch_status=batch["status"], expected_items=expected,
        merged_items=len(merged), dead_lettered_items=len(parts["dead_lettered"]), missing_items=parts["missing"],
        duplicate_rows=facts.duplicate_ids + facts.duplicate_active,
        staging_tables_left=int(facts.staging_table_exists),
        kept_previous_ids=sorted(batch.get("kept_previous_items") or {}),
        main_table_mutating_dml=len(facts.merge_jobs), merged_rows=sum(r.rows for r in facts.own_rows.values()),
        elapsed_s=round(elapsed_s, 2),
        recovered_items=len(parts["recovered"]), recovered_ids=parts["recovered"],
        dead_lettered_ids=parts["dead_lettered"], main_table_mutating_dml_window=facts.window_dml,
        coverage_pct=round(100.0 * len(merged) / expected, 2) if expected else 100.0,
        coverage_warning_pct=clients.settings.coverage_warning_pct, incomplete_ids=j.incomplete,
        staging_kept_reason=j.kept_table_reason, main_table_merge_jobs=facts.merge_jobs,
        replay_blocked=j.repair_blocked, problems=j.problems)
