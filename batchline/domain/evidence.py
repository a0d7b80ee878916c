"""The evidence a consolidation merges: what the batch staging table holds (one StagedWrite per item
and write id) judged against batch state. The rows, not the events, are the evidence: an item's
recorded write when it is staged whole, else one complete write of its own (recovered); other writes
are never merged. Pure: adapters/staging.py reads the writes, adapters/merge.py merges the result."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from batchline.domain import item_shape
from batchline.domain.item_shape import Shape
from batchline.domain.statuses import COMPLETED, FAILED, PENDING


@dataclass(frozen=True)
class StagedWrite:
    item_id: str
    write_id: str
    rows: int
    keys: int
    pairs: frozenset[str] = frozenset()  # its system/prop pairs; none known is an incomplete shape

    @classmethod
    def of(cls, r) -> StagedWrite:
        """From a row of staging.writes_sql (item_id, write_id, n, k, pairs)."""
        return cls(r["item_id"], r["write_id"], int(r["n"]), int(r["k"]), frozenset(r["pairs"] or ()))

    @property
    def shape(self) -> Shape:
        return Shape(self.rows, self.keys, self.pairs)


Staged = dict[str, dict[str, StagedWrite]]  # item -> write id -> what that write staged


@dataclass
class Inventory:
    writes: dict[str, StagedWrite]  # item id -> the one write of it to merge (manifest or recovered)
    expected_completed: list[str]  # items batch state says completed
    missing_writes: list[str]  # completed items whose recorded write is not (or no longer) staged whole
    recovered: list[str]  # items merged from a write no recorded completion names
    failed_items: list[str]
    pending_items: list[str]
    staged_rows_total: int = 0  # every staged row, any write: cleanup keeps the table if more arrive
    abandoned_writes: int = 0  # writes of redelivered or abandoned attempts, never merged
    unknown_items: list[str] = field(default_factory=list)  # staged rows of items the batch does not have
    unmergeable: list[str] = field(default_factory=list)  # items no write of which is complete (item_shape.py)

    def manifest(self) -> dict[str, str]:
        return {item: w.write_id for item, w in sorted(self.writes.items())}


def take_inventory(staged: Staged, items: list[dict]) -> Inventory:
    """What the batch staging table holds (`staged`) against what batch state expects (`items`)."""
    by_status: dict[str, list[str]] = {}
    docs = {it["item_id"]: it for it in items}
    for it in items:
        by_status.setdefault(it["status"], []).append(it["item_id"])
    completed = sorted(by_status.get(COMPLETED, []))
    writes: dict[str, StagedWrite] = {}
    recovered: list[str] = []
    unmergeable: list[str] = []
    for item, candidates in sorted(staged.items()):
        if item in docs:
            chosen, was_recorded = choose_write(docs[item], candidates)
            if chosen is None:
                unmergeable.append(item)
                continue
            writes[item] = chosen
            if not was_recorded:
                recovered.append(item)
    missing = [i for i in completed if i not in writes or i in recovered]
    return Inventory(
        writes=writes, expected_completed=completed, missing_writes=missing, recovered=sorted(recovered),
        failed_items=sorted(by_status.get(FAILED, [])), pending_items=sorted(by_status.get(PENDING, [])),
        staged_rows_total=sum(w.rows for ws in staged.values() for w in ws.values()),
        abandoned_writes=sum(len(ws) for item, ws in staged.items() if item in docs) - len(writes),
        unknown_items=sorted(set(staged) - set(docs)), unmergeable=unmergeable,
    )


def choose_write(doc: dict, candidates: dict[str, StagedWrite]) -> tuple[StagedWrite | None, bool]:
    """The one write of an item to merge, and whether it is the write its completion recorded.

    Only a write of the item's complete shape may be merged (item_shape.py: one row per configured
    system x prop, no prediction id twice; a short write would be "merged" 2 predictions short, and a
    repeated id would make the MERGE write one row of two). The recorded write when it is staged
    whole (the manifest); otherwise one complete write of the item (an acknowledged append is all of
    its rows or none): the highest write id, so every caller picks the same one. None when no write of
    the item can be merged."""
    whole = {w.write_id: w for w in candidates.values() if item_shape.shape_problem(w.shape) is None}
    recorded = whole.get(doc.get("write_id") or "")
    if doc.get("status") == COMPLETED and recorded is not None and recorded.rows == doc.get("row_count"):
        return recorded, True
    if not whole:
        return None, False
    return max(whole.values(), key=lambda w: (w.rows, w.write_id)), False


# -- orphaned staged rows (the reconciliation, batchline/flows/orphans.py) ----------------------------
def classify(
    item: str | None,
    schedule: set[str],
    owners: set[str],
    batch_id: str,
    created_at: dt.datetime,
    created: dict[str, dt.datetime | None],
) -> tuple[str, str]:
    """What to do with batch `batch_id`'s orphaned staging table of `item`, given the batches whose rows
    are the item's active rows in the main table (`owners`) and when each batch was created:
    ("merge", ""), ("drop", the newer batch whose rows replace it) or ("keep", why)."""
    if item is None or item not in schedule:
        return "keep", "its player is not on the date's schedule"
    others = owners - {batch_id}
    newer = sorted(o for o in others if created.get(o) and created[o] > created_at)  # type: ignore[operator]
    if newer:
        return "drop", newer[0]
    undated = sorted(o for o in others if not created.get(o))
    if undated:
        return "keep", f"the player's active rows come from {undated[0]}, which no batch document dates"
    return "merge", ""  # a gap, this batch's own rows, or rows of older runs: this run is the newest


@dataclass
class OrphanVerdicts:
    merge: dict[str, str] = field(default_factory=dict)  # item -> the write id to merge
    drop: dict[str, str] = field(default_factory=dict)  # item -> why its rows may go (a newer run replaced them)
    kept: dict[str, str] = field(default_factory=dict)  # item -> why it is kept
    newer_batches: set[str] = field(default_factory=set)


def judge_orphans(staged: Staged, own: set[str], docs: dict[str, dict], schedule: set[str],
                  owners: dict[str, set[str]], batch_id: str, created_at: dt.datetime,
                  created: dict[str, dt.datetime | None]) -> OrphanVerdicts:
    """Every item of batch `batch_id`'s orphaned staging table, judged: `own` are the items its own
    verified MERGEs merged (their other writes are abandoned attempts), `docs` its item documents,
    `owners` the batches whose rows are each player's active rows, `created` when each was created."""
    v = OrphanVerdicts()
    for item, writes in sorted(staged.items()):
        if item in own:
            continue
        verdict, detail = classify(item if item in docs else None, schedule, owners.get(item, set()), batch_id,
                                   created_at, created)
        if verdict == "merge":
            chosen = choose_write(docs[item], writes)[0]
            if chosen is None:
                v.kept[item] = "no staged write of the item is complete (one row per system x prop, ids unique)"
                continue
            v.merge[item] = chosen.write_id
        elif verdict == "drop":
            v.drop[item] = f"the player's active rows come from the newer batch {detail}"
            v.newer_batches.add(detail)
        else:
            v.kept[item] = detail
    return v
