"""The human form of the four reports (loss ledger, status, audit, dead letters): tables on stdout,
from the values the reports compute, with no I/O of their own. `--json` prints those values instead."""

from __future__ import annotations

from rich.table import Table

from batchline.adapters.delivery_errors import summary
from batchline.flows.ledger import Ledger
from batchline.ops import render


def _ids(ids_: list[str], limit: int = 10) -> str:
    return "" if not ids_ else " " + ", ".join(ids_[:limit]) + (" ..." if len(ids_) > limit else "")


def _readable_errors(rows: list[dict]) -> list[dict]:
    """Rows whose `last_error` record becomes one line (`Type: message (cause: ...)`)."""
    return [{**r, "last_error": summary(r.get("last_error"))} for r in rows]


def print_ledger(ledger: Ledger) -> None:
    table = Table(title=f"loss ledger - batch {ledger.batch_id} ({ledger.game_date})", show_header=False)
    parts = ledger.merged_items + ledger.dead_lettered_items + len(ledger.incomplete_ids) + len(ledger.missing_items)
    colour = "red" if not ledger.ok else "green" if ledger.complete else "yellow"
    rows = [
        ("batch status", ledger.batch_status),
        ("expected items", ledger.expected_items),
        ("merged items", ledger.merged_items),
        ("  of which recovered", f"{ledger.recovered_items}{_ids(ledger.recovered_ids)}"),
        ("dead-lettered items (not merged)", f"{ledger.dead_lettered_items}{_ids(ledger.dead_lettered_ids)}"),
        ("incomplete items (rows short)", f"{len(ledger.incomplete_ids)}{_ids(sorted(ledger.incomplete_ids))}"),
        ("missing items", f"{len(ledger.missing_items)}{_ids(ledger.missing_items, 20)}"),
        ("merged + dead-lettered + incomplete + missing", f"{parts} (= expected)"),
        ("coverage", f"{ledger.coverage_pct:.1f} % (warning below {ledger.coverage_warning_pct:g} %)"),
        ("merged rows", ledger.merged_rows),
        ("duplicate rows", ledger.duplicate_rows),
        ("staging table left", f"{ledger.staging_tables_left}" + (
            f" (kept on purpose: {ledger.staging_kept_reason})" if ledger.staging_kept_reason else "")),
        ("this batch's DML on main table", ledger.main_table_mutating_dml),
        ("all DML on main table meanwhile", ledger.main_table_mutating_dml_window),
        ("elapsed", f"{ledger.elapsed_s:.1f} s"),
        ("verdict", f"[{colour}]{ledger.verdict}"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    render.out.print(table)


def print_status(v: dict) -> None:
    """batchline.ops.views.status as tables, then its next steps."""
    render.key_values(f"batch {v['batch_id']} ({v['game_date']}): {v['status']}", {
        "expected items": v["expected_items"], "items by state": v["items"],
        "dead-lettered items": v["dead_lettered_items"], "timings (s)": v["timings_s"], **v["consolidation"],
        "missing items": v["gaps"]["missing_items"], "staging gap": v["gaps"]["staging_gap"]})
    render.records("failed items", ["item_id", "reason", "last_error", "failed_deliveries", "dead_lettered",
                                    "replayed_in"], _readable_errors(v["gaps"]["failed_items"]))
    for step in v["next_steps"] or ["nothing to do"]:
        render.out.print(f"next: {step}")


def print_audit(a: dict) -> None:
    """batchline.ops.views.audit as tables: the counts and verdict, then every item not simply merged."""
    render.key_values(f"audit of batch {a['batch_id']} ({a['game_date']}, {a['batch_status']})", {
        "expected items": a["expected_items"], **a["counts"], "sum": a["sum"], "merged rows": a["merged_rows"],
        "merged, rows since updated by a later run": a["overwritten_by_later_runs"],
        "duplicate rows": a["duplicate_rows"],
        "verdict": "OK: every item accounted for" if a["ok"] else "; ".join(a["problems"])})
    render.records("items not simply merged", ["item_id", "state", "rows", "reason", "last_error",
                                               "failed_deliveries", "replayed_in", "active_rows_from"],
                   _readable_errors([i for i in a["items"] if i["state"] != "merged"]))


def print_dead_letters(found: list[dict]) -> None:
    """batchline.flows.replay.listed_dead_letters as one table, a row per dead letter."""
    rows = _readable_errors([{**m, "attempts": m["attributes"].get("CloudPubSubDeadLetterSourceDeliveryCount")}
                             for m in found])
    render.records("dead letters", ["source", "batch_id", "item_id", "attempts", "last_error", "replayed_in",
                                    "message_id", "publish_time", "payload_error"], rows)
