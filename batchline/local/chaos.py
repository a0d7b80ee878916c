"""Random fault schedules over small batches on the local stack, each judged independently.

A schedule draws, from one seeded generator, a batch size and a mix of every fault the stack can
inject: failed staging writes and completion publishes (per attempt), poisoned items, MERGE
attempts that fail transiently, duplicate work and completion deliveries published while the batch
runs, a late duplicate completion after it ended, one item's staged rows deleted before consolidation, and
a function process killed mid-batch and brought back on its port.

The verdict does not read the pipeline's own counts. It asks the systems of record: the main table
(whose rows exist, which are active), the work dead-letter subscription (what Pub/Sub gave up on),
BigQuery's job list (which MERGEs succeeded) and the staging dataset. Every expected item must be
merged, dead-lettered with a reason an operator can read, or named as missing by the batch; anything
else is LOST. Duplicates are active rows beyond one per (player, system, prop).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import asdict, dataclass, field

import requests
from google.cloud import bigquery

from batchline.adapters import staging
from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.domain import accounting, ids
from batchline.domain.messages import CompletionMessage, WorkMessage, encode
from batchline.domain.statuses import COMPLETED, TERMINAL_STATUSES
from batchline.flows import ledger
from batchline.local import processes as procs
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context
from batchline.local.stack_record import StackInfo, load

# A run's schedules use a block of consecutive game dates of its own, drawn inside these bounds: after
# every date a test uses (2030s) and up to the last date /start accepts (ids.LAST_GAME_DATE).
FIRST_DAY = dt.date(2040, 1, 1)
DAYS_AVAILABLE = (ids.LAST_GAME_DATE - FIRST_DAY).days + 1  # 22,281
MAX_SCHEDULES = 10_000  # `batchline chaos --schedules` at most: a block always fits, with room to move
assert MAX_SCHEDULES < DAYS_AVAILABLE


def block_start(rng: random.Random, schedules: int) -> int:
    """Where a run of `schedules` schedules starts its block of dates (days after FIRST_DAY), drawn
    from the run's generator so that its last date, FIRST_DAY + start + schedules - 1, is still a date
    /start accepts, whatever the seed."""
    if not 1 <= schedules <= MAX_SCHEDULES:
        raise ValueError(f"schedules must be between 1 and {MAX_SCHEDULES}, got {schedules}")
    return rng.randrange(0, DAYS_AVAILABLE - schedules + 1)


def schedule_day(n: int) -> dt.date:
    """The game date of schedule number `n` (block start included)."""
    return FIRST_DAY + dt.timedelta(days=n)


@dataclass(frozen=True)
class Schedule:
    n: int  # the schedule's game date is FIRST_DAY + n days
    players: int
    faults: str
    duplicates: int  # work + completion messages published again while the batch runs
    late_duplicate: bool  # a completion delivered again after the batch ended
    delete_staging: bool  # one completed item's staged rows deleted before consolidation
    kill: str | None  # a function killed mid-batch, back after a few seconds

    @property
    def kinds(self) -> list[str]:
        out = [part.split("=")[0] for part in self.faults.split(",") if part and not part.startswith("seed")]
        out += ["duplicates"] * bool(self.duplicates) + ["late_duplicate"] * self.late_duplicate
        out += ["delete_staging"] * self.delete_staging + ([f"kill_{self.kill}"] if self.kill else [])
        return out


def draw(rng: random.Random, n: int) -> Schedule:
    players = rng.randint(4, 12)
    parts = []
    if rng.random() < 0.6:
        parts.append(f"staging_write={rng.choice([0.1, 0.3, 0.5])}")
    if rng.random() < 0.5:
        parts.append(f"completion_publish={rng.choice([0.1, 0.3])}")
    if rng.random() < 0.25:
        parts.append(f"poison=player_{rng.randrange(players):04d}")
    if rng.random() < 0.3:
        parts.append(f"merge_transient={rng.randint(1, 2)}")
    parts.append(f"seed={rng.randrange(10**6)}")
    return Schedule(n=n, players=players, faults=",".join(parts), duplicates=rng.choice([0, 0, 2, 5]),
                    late_duplicate=rng.random() < 0.3, delete_staging=rng.random() < 0.2,
                    kill=rng.choice([None, None, None, "worker", "coordinator"]))


@dataclass
class Outcome:
    schedule: Schedule
    batch_id: str
    batch_status: str
    expected: int
    merged: list[str] = field(default_factory=list)
    dead_lettered: dict[str, str] = field(default_factory=dict)  # item -> reason
    reported_missing: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicate_rows: int = 0
    successful_merges: int = 0
    recovery_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "kinds": self.schedule.kinds}


def _kill_and_restore(state_dir: str, name: str, down_s: float) -> None:
    """Kill one function as a crash would (no goodbye), and let the supervisor's heal bring it back
    on its port after `down_s`, as `batchline local supervise` does."""
    info = load(state_dir)
    assert info is not None, f"no local stack in {state_dir}"
    procs.stop(info.handles[name])
    time.sleep(down_s)
    local_stack.up(state_dir)


def _inject_while_running(clients: Clients, info, sched: Schedule, batch_id: str, day: dt.date,
                          rng: random.Random) -> None:
    store = BatchStore(clients.fs)
    items = store.items(batch_id)
    for it in rng.sample(items, min(sched.duplicates, len(items))):
        clients.publish("work", encode(WorkMessage(batch_id=batch_id, game_date=day, item_id=it["item_id"],
                                                   game_id=it["game_id"])), batch_id=batch_id, item_id=it["item_id"])
    if sched.kill:
        _kill_and_restore(info.state_dir, sched.kill, down_s=rng.uniform(2.0, 6.0))
    if sched.delete_staging:
        done: list[dict] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [i for i in store.items(batch_id) if i["status"] == COMPLETED]
            batch = store.get_batch(batch_id) or {}
            if done or batch.get("status") in TERMINAL_STATUSES:
                break
            time.sleep(0.2)
        for it in done[:1]:
            delete_staged_item(clients, batch_id, it["item_id"])


def delete_staged_item_sql(settings, batch_id: str) -> str:
    """The delete_staging fault: one item's staged rows vanish before consolidation (a fault of the
    local stack only; nothing in production deletes staged rows)."""
    return (f"DELETE FROM `{settings.project}.{settings.staging_dataset}.{ids.batch_staging_table(batch_id)}` "
            f"WHERE {staging.ITEM_COLUMN} = @item_id")


def delete_staged_item(clients: Clients, batch_id: str, item_id: str) -> None:
    clients.bq.query(delete_staged_item_sql(clients.settings, batch_id), job_config=bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("item_id", "STRING", item_id)])).result()


def judge(clients: Clients, batch: dict, day: dt.date, expected: set[str], out: Outcome) -> None:
    """Fill `out` from the systems of record, never from the pipeline's own counts (module docstring)."""
    s = clients.settings
    params = [bigquery.ScalarQueryParameter("d", "DATE", day), bigquery.ScalarQueryParameter("b", "STRING",
                                                                                            out.batch_id)]
    rows = list(clients.bq.query(
        f"SELECT player_lookup, system_id, prop_type, batch_id FROM `{s.main_table_id}` "
        f"WHERE game_date = @d AND is_active", job_config=bigquery.QueryJobConfig(query_parameters=params)).result())
    keys: dict[tuple, int] = {}
    for r in rows:
        keys[(r["player_lookup"], r["system_id"], r["prop_type"])] = keys.get(
            (r["player_lookup"], r["system_id"], r["prop_type"]), 0) + 1
    out.duplicate_rows = sum(n - 1 for n in keys.values())
    merged = {r["player_lookup"] for r in rows if r["batch_id"] == out.batch_id}
    out.merged = sorted(merged & expected)
    dead = ledger.dead_letters_in_subscription(clients, out.batch_id) & expected  # Pub/Sub's own record
    store = BatchStore(clients.fs)
    for item in sorted(dead - merged):
        doc = store.get_item(out.batch_id, item) or {}
        out.dead_lettered[item] = str(doc.get("failure_reason") or "")
        if not out.dead_lettered[item]:
            out.problems.append(f"{item} dead-lettered without a readable reason")
    named = set(batch.get("missing_items") or []) | set(batch.get("completed_without_write") or [])
    rest = expected - merged - dead
    out.reported_missing = sorted(rest & named)
    out.lost = sorted(rest - named)
    prefix = accounting.merge_job_prefix(out.batch_id)
    out.successful_merges = sum(
        1 for j in clients.bq.list_jobs(all_users=True, max_results=5000)
        if j.job_id.startswith(prefix) and getattr(j, "statement_type", None) == "MERGE"
        and j.state == "DONE" and not j.error_result)
    if out.lost:
        out.problems.append(f"{len(out.lost)} items LOST silently: {out.lost}")
    if out.duplicate_rows:
        out.problems.append(f"{out.duplicate_rows} duplicate active rows")
    if out.successful_merges > 1:
        out.problems.append(f"{out.successful_merges} successful MERGEs")
    if out.batch_status not in TERMINAL_STATUSES:
        out.problems.append(f"batch still {out.batch_status}")


def run_schedule(info: StackInfo, clients: Clients, sched: Schedule, timeout_s: float = 300) -> Outcome:
    rng = random.Random(sched.faults)
    day = schedule_day(sched.n)
    schedule_rows = synthetic_context(day, sched.players)
    seed_context(clients.bq, clients.settings, day, schedule_rows)
    t0 = time.monotonic()
    r = requests.post(info.url("coordinator") + "/start", timeout=120,
                      json={"game_date": day.isoformat(), "faults": sched.faults, "force": True})
    r.raise_for_status()
    batch_id = r.json()["batch_id"]
    _inject_while_running(clients, info, sched, batch_id, day, rng)
    store = BatchStore(clients.fs)
    deadline = time.monotonic() + timeout_s
    batch = store.get_batch(batch_id) or {}
    checked = t0
    while batch.get("status") not in TERMINAL_STATUSES and time.monotonic() < deadline:
        if time.monotonic() - checked > 30:  # what the scheduled stall check does in production
            checked = time.monotonic()
            requests.post(info.url("coordinator") + "/stall-check", json={"stall_minutes": 1}, timeout=120)
        time.sleep(0.5)
        batch = store.get_batch(batch_id) or {}
    out = Outcome(sched, batch_id, str(batch.get("status")), len(schedule_rows),
                  recovery_s=round(time.monotonic() - t0, 1))
    if sched.late_duplicate and batch.get("status") in TERMINAL_STATUSES:
        done = [i for i in store.items(batch_id) if i["status"] == COMPLETED]
        for it in done[:1]:
            clients.publish("completions", encode(CompletionMessage(
                batch_id=batch_id, item_id=it["item_id"], staging_table=ids.batch_staging_table(batch_id),
                write_id=it["write_id"], row_count=int(it.get("row_count") or 0), write_status="ok", attempt=1)),
                batch_id=batch_id)
            time.sleep(2.0)
    judge(clients, batch, day, {r["player_lookup"] for r in schedule_rows}, out)
    return out


def summarize(outcomes: list[Outcome]) -> dict:
    kinds: dict[str, int] = {}
    for o in outcomes:
        for k in o.schedule.kinds:
            kinds[k] = kinds.get(k, 0) + 1
    return {
        "schedules": len(outcomes),
        "items": sum(o.expected for o in outcomes),
        "faults_by_kind": dict(sorted(kinds.items())),
        "merged": sum(len(o.merged) for o in outcomes),
        "dead_lettered_with_reason": sum(len(o.dead_lettered) for o in outcomes),
        "reported_missing": sum(len(o.reported_missing) for o in outcomes),
        "items_lost": sum(len(o.lost) for o in outcomes),
        "duplicate_rows": sum(o.duplicate_rows for o in outcomes),
        "max_successful_merges_per_batch": max((o.successful_merges for o in outcomes), default=0),
        "slowest_recovery_s": max((o.recovery_s for o in outcomes), default=0.0),
        "failed_schedules": [o.schedule.n for o in outcomes if o.problems],
    }
