"""Issue 17.1 and 17.2 on the real stack: the ledger and `batchline audit` judge a batch by one
definition (batchline/domain/accounting.py), so they agree on the designed late-rows path, before and after
the reconciliation finishes it; and an item whose rows are short is never counted as merged."""

from __future__ import annotations

import json
import time

from google.cloud import bigquery
from typer.testing import CliRunner

from batchline.adapters import manifests
from batchline.domain import ids
from batchline.domain.accounting import merged_pins
from batchline.domain.messages import CompletionMessage
from batchline.domain.statuses import CONSOLIDATED, RUNNING
from batchline.flows.ledger import compute
from batchline.ops.cli import app


def _audit(stack, batch_id: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["audit", batch_id, "--json", "--state-dir", stack.info.state_dir])
    return result.exit_code, json.loads(result.stdout)


def _status(stack, batch_id: str) -> dict:
    result = CliRunner().invoke(app, ["status", batch_id, "--json", "--state-dir", stack.info.state_dir])
    return json.loads(result.stdout)


def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not {what} after {timeout_s}s")


def _completion(batch_id: str, item: str, write_id: str, rows: int) -> dict:
    return CompletionMessage(batch_id=batch_id, item_id=item, staging_table=ids.batch_staging_table(batch_id),
                             write_id=write_id, row_count=rows, write_status="ok", attempt=1).model_dump(mode="json")


def _agree(stack, batch_id: str):
    ledger = compute(stack.clients, batch_id, 0.0)
    code, audit = _audit(stack, batch_id)
    assert (ledger.ok, ledger.problems) == (audit["ok"], audit["problems"]), (ledger.problems, audit["problems"])
    assert code == (0 if ledger.ok else 1)
    return ledger, audit


def test_ledger_and_audit_agree_on_the_late_rows_path_and_after_the_reconciliation(stack, day):
    stack.seed(day, 4)
    r = stack.start(day, faults="poison=player_0003,pause_in_merge=8")
    assert r.status_code == 200, r.text
    batch_id = r.json()["batch_id"]
    _until(lambda: any(j.job_id.startswith(f"batchline_merge_{batch_id}_")
                       for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)), 180, "MERGE submitted")
    # While the MERGE is held, the dead-lettered item's rows and completion arrive (after the inventory).
    write = stack.stage(stack.clients.settings, batch_id, day, "player_0003")
    late = stack.push("coordinator/completions", _completion(batch_id, "player_0003", write, 5),
                      message_id=f"late-{batch_id}")
    assert late.status_code == 200 and late.json()["result"] == "late", late.text
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["staging_table_dropped"] is False, "kept, as designed"

    ledger, audit = _agree(stack, batch_id)
    assert ledger.ok and ledger.staging_tables_left == 1 and "staging_kept_late_rows" in ledger.staging_kept_reason
    assert audit["staging_table"] == {"exists": True, "kept_reason": ledger.staging_kept_reason}
    assert _status(stack, batch_id)["staging_kept_reason"] == ledger.staging_kept_reason, "status says the same"

    rec = json.loads(CliRunner().invoke(app, ["reconcile", day.isoformat(), "--json", "--state-dir",
                                              stack.info.state_dir]).stdout)
    assert rec["result"]["orphans_merged"] == [f"{ids.batch_staging_table(batch_id)}/player_0003"], rec
    ledger, audit = _agree(stack, batch_id)
    assert ledger.ok and ledger.complete and ledger.recovered_ids == ["player_0003"], ledger.verdict
    assert ledger.staging_tables_left == 0 and ledger.main_table_mutating_dml == 2
    assert sorted(j.split("_g")[1] for j in ledger.main_table_merge_jobs) == ["0_a0", "1000_a0"], \
        "the batch's MERGE and the reconciliation's orphan MERGE, each recorded on the batch"
    assert audit["counts"]["recovered"] == 1 and audit["sum"] == 4
    assert stack.store.get_batch(batch_id)["staging_table_dropped"] is True
    assert _status(stack, batch_id)["staging_kept_reason"] is None


def _delete_rows(stack, day, player: str, systems: tuple[str, ...]) -> None:
    s = stack.clients.settings
    stack.clients.bq.query(
        f"DELETE FROM `{s.main_table_id}` WHERE game_date = @d AND player_lookup = @p AND system_id IN UNNEST(@s)",
        job_config=bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("d", "DATE", day), bigquery.ScalarQueryParameter("p", "STRING", player),
            bigquery.ArrayQueryParameter("s", "STRING", list(systems))])).result()


def test_an_item_with_fewer_rows_than_its_work_is_never_counted_merged(stack, day):
    stack.seed(day, 3)
    r = stack.start(day, faults="poison=player_0002")
    assert r.status_code == 200, r.text
    batch_id = r.json()["batch_id"]
    _until(lambda: stack.store.get_batch(batch_id)["status"] == RUNNING, 60, "running")
    # A buggy writer: 3 of the item's 5 predictions staged, and a completion that is true about them.
    write = stack.stage(stack.clients.settings, batch_id, day, "player_0002", rows=3)
    short = stack.push("coordinator/completions", _completion(batch_id, "player_0002", write, 3),
                       message_id=f"short-{batch_id}")
    assert short.status_code == 200 and short.json()["result"] == "incomplete", short.text
    item = stack.store.get_item(batch_id, "player_0002")
    assert item["status"] == "failed" and "claims 3 rows; the item's work is 5" in item["failure_reason"]
    batch = stack.wait(batch_id)
    merged = manifests.merged_items(stack.clients.bq, stack.clients.settings, batch_id, merged_pins(batch))
    assert batch["status"] == CONSOLIDATED and merged == {"player_0000", "player_0001"}, \
        "the short write is not recovered either"
    ledger, audit = _agree(stack, batch_id)
    assert not ledger.ok and ledger.merged_items == 2 and list(ledger.incomplete_ids) == ["player_0002"]
    assert "incomplete write" in ledger.incomplete_ids["player_0002"] and "player_0002" in ledger.verdict
    (entry,) = [i for i in audit["items"] if i["item_id"] == "player_0002"]
    assert entry["state"] == "incomplete" and "claims 3 rows" in entry["reason"]

    # Rows lost from the main table later: the reports name the item incomplete instead of merged.
    _delete_rows(stack, day, "player_0000", ("similarity", "ensemble"))
    ledger, audit = _agree(stack, batch_id)
    assert not ledger.ok and ledger.merged_items == 1
    assert sorted(ledger.incomplete_ids) == ["player_0000", "player_0002"]
    assert "lacks 2 of its 5" in ledger.incomplete_ids["player_0000"] and "player_0000" in ledger.verdict
    assert audit["counts"]["incomplete"] == 2 and audit["counts"]["merged"] == 1
