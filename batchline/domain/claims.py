"""Completion claims, verified in bulk: one query per batch instead of one per completion (issue 15).

A completion is recorded as a claim without asking BigQuery (F1, F3: the record is durable before the
2xx, and costs no query). When the batch's progress shards say it may be done, ONE GROUP BY over the
batch staging table (staging.staged_writes) is checked against every claim before the consolidation
is claimed (claim.request_consolidation_if_done). So a completion with nothing, too little, or another
item's write behind it never counts: its claim is rejected with the reason recorded on the item, and

- SWITCH: the item has another complete write staged (an attempt whose completion was not the one
  recorded): the claim moves to that write, nothing runs again;
- REDISPATCH: the item goes back to pending and its work is published again;
- FAIL: its claims were rejected MAX_REJECTED_CLAIMS times: the item fails with the reason (a bug in
  a predictor or writer, or a forger), where the operator sees it, instead of looping.

Pure: the store applies the verdicts (state.BatchStore.reject_claim), the gate publishes the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchline.domain import item_shape
from batchline.domain.evidence import Staged, StagedWrite
from batchline.domain.statuses import COMPLETED, ClaimVerdict

MAX_REJECTED_CLAIMS = 3
SWITCH, REDISPATCH, FAIL = ClaimVerdict.SWITCH, ClaimVerdict.REDISPATCH, ClaimVerdict.FAIL


@dataclass(frozen=True)
class Rejection:
    item_id: str
    write_id: str  # the claimed write
    row_count: int  # the claimed rows
    reason: str
    action: str  # SWITCH | REDISPATCH | FAIL
    switch_to: StagedWrite | None = None


def claim_problem(item: dict, staged: Staged, owners: dict[str, str]) -> str | None:
    """Why the item's claim is false, or None when its write is staged whole and is the item's complete
    work. `owners` maps each staged write id to the item whose rows it holds."""
    write_id, rows = item.get("write_id") or "", item.get("row_count")
    write = staged.get(item["item_id"], {}).get(write_id)
    if write is None:
        owner = owners.get(write_id)
        if owner is not None:
            return f"names write {write_id}, which holds the rows of item {owner}"
        return f"names write {write_id}, which the batch staging table does not hold"
    if write.rows != rows:
        return f"claims {rows} rows in write {write_id}; the batch staging table holds {write.rows}"
    problem = item_shape.shape_problem(write.shape)
    return f"write {write_id} {problem}" if problem else None


def complete_write(candidates: dict[str, StagedWrite], but: str) -> StagedWrite | None:
    """Another write of the item that may be merged instead (the highest write id, as consolidate.choose_write)."""
    whole = [w for w in candidates.values() if w.write_id != but and item_shape.shape_problem(w.shape) is None]
    return max(whole, key=lambda w: w.write_id) if whole else None


def judge(items: list[dict], staged: Staged) -> list[Rejection]:
    """The rejected claims among the completed items, with what to do about each."""
    owners = {w: item for item, writes in staged.items() for w in writes}
    out: list[Rejection] = []
    for item in sorted(items, key=lambda i: i["item_id"]):
        if item.get("status") != COMPLETED:
            continue
        problem = claim_problem(item, staged, owners)
        if problem is None:
            continue
        write_id, rows = item.get("write_id") or "", int(item.get("row_count") or 0)
        other = complete_write(staged.get(item["item_id"], {}), but=write_id)
        if other is not None:
            out.append(Rejection(item["item_id"], write_id, rows, problem, SWITCH, other))
        elif len(item.get("rejected_claims") or []) + 1 >= MAX_REJECTED_CLAIMS:
            out.append(Rejection(item["item_id"], write_id, rows, problem, FAIL))
        else:
            out.append(Rejection(item["item_id"], write_id, rows, problem, REDISPATCH))
    return out


def failure_reason(rejection: Rejection, rejected_before: int, batch_id: str) -> str:
    return (f"completion claims never verified ({rejected_before + 1} rejected, the last: {rejection.reason}); "
            f"fix the predictor or writer, then `batchline redispatch {batch_id} {rejection.item_id}`")
