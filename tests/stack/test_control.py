"""The control path on the real local stack: operator requests published to the control topic,
pushed to the coordinator's /control route, answered in control_requests; and the operator commands
(`batchline start/status/audit/consolidate/reconcile/dlq`) through the CLI itself."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from batchline.adapters.dead_letter_subs import DeadLetterSubscription
from batchline.domain import control_requests as ctl
from batchline.flows.control import RequestStore
from batchline.flows.replay import describe
from batchline.ops.cli import app

START_KEYS = {"request_id", "action", "status", "result", "error", "attempts", "message_id"}
STATUS_KEYS = {"batch_id", "game_date", "status", "expected_items", "items", "dead_lettered_items", "timings_s",
               "times", "gaps", "consolidation", "next_steps", "needs_attention", "superseded_by", "repair_batch"}
AUDIT_KEYS = {"batch_id", "game_date", "batch_status", "expected_items", "counts", "sum", "merged_rows",
              "duplicate_rows", "duplicate_active_rows", "items", "problems", "ok", "unexpected_merged_items",
              "overwritten_by_later_runs", "staging_table", "main_table_merge_jobs"}


def cli(stack, *args: str):
    result = CliRunner().invoke(app, [*args, "--state-dir", stack.info.state_dir])
    try:
        parsed = json.loads(result.stdout) if "--json" in args else None
    except ValueError:
        parsed = None
    return result, parsed


def wide_cli(stack, *args: str):
    """The human form on a terminal wide enough that no table cell wraps (rich reads COLUMNS)."""
    return CliRunner().invoke(app, [*args, "--state-dir", stack.info.state_dir], env={"COLUMNS": "250"})


def _batches_of(stack, day) -> list[dict]:
    return [b for b in (s.to_dict() for s in stack.clients.fs.collection("batches").stream())
            if b["game_date"] == day.isoformat()]


def _dead_letters(stack, batch_id: str) -> list[dict]:
    with DeadLetterSubscription(stack.clients, "work") as subs:
        got = subs.pull_all()
        subs.release([r.ack_id for r in got])
        return [d for d in map(describe, got) if d["batch_id"] == batch_id]


def test_start_through_the_control_path_and_the_json_shapes_of_start_status_audit(stack, day):
    stack.seed(day, 6)
    result, out = cli(stack, "start", day.isoformat(), "--wait", "--json", "--request-id", f"t-start-{day}")
    assert result.exit_code == 0, result.output
    assert START_KEYS | {"batches"} <= set(out) and out["status"] == "done" and out["action"] == "start"
    batch_id = out["result"]["batch_id"]
    assert out["result"]["expected_items"] == 6 and out["batches"] == [
        {"batch_id": batch_id, "status": "consolidated", "error": None}]
    record = RequestStore(stack.clients.fs).get(f"t-start-{day}")
    assert record["status"] == "done" and record["result"]["batch_id"] == batch_id

    result, st = cli(stack, "status", "--date", day.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    assert STATUS_KEYS <= set(st) and st["batch_id"] == batch_id and st["status"] == "consolidated"
    assert st["items"] == {"pending": 0, "completed": 6, "failed": 0} and st["next_steps"] == []
    assert {"dispatch", "work", "consolidation", "total"} <= set(st["timings_s"])
    assert st["consolidation"]["merged_rows"] == 30 and st["consolidation"]["main_table_dml_jobs"] == 1

    result, au = cli(stack, "audit", batch_id, "--json")
    assert result.exit_code == 0, result.output
    assert AUDIT_KEYS <= set(au) and au["ok"] is True
    assert au["counts"] == {"merged": 6, "recovered": 0, "dead_lettered": 0, "incomplete": 0, "missing": 0}
    assert au["sum"] == 6
    assert au["merged_rows"] == 30 and au["duplicate_rows"] == 0
    assert {i["state"] for i in au["items"]} == {"merged"} and all(i["rows"] == 5 for i in au["items"])

    # the human form of the same commands
    result, _ = cli(stack, "audit", batch_id)
    assert result.exit_code == 0 and "every item accounted for" in result.stdout
    result, _ = cli(stack, "status", batch_id)
    assert result.exit_code == 0 and "consolidated" in result.stdout and "next: nothing to do" in result.stdout
    # a later run of the date updates these rows (batch id included): the first batch still merged them
    result, again = cli(stack, "start", day.isoformat(), "--wait", "--json")
    assert result.exit_code == 0, result.output
    second = again["result"]["batch_id"]
    result, au = cli(stack, "audit", batch_id, "--json")
    assert result.exit_code == 0 and au["counts"]["merged"] == 6 and au["merged_rows"] == 0
    assert au["overwritten_by_later_runs"] == 6 and {tuple(i["overwritten_by"]) for i in au["items"]} == {(second,)}
    assert all(i["rows"] == 5 for i in au["items"]) and au["duplicate_rows"] == 0
    # and the coordinator logged the answer as one structured line
    log = Path(stack.info.handles["coordinator"].log_path).read_text()
    lines = [json.loads(line) for line in log.splitlines() if f"t-start-{day}" in line and line.startswith("{")]
    assert [(x["event"], x["status"], x["batch_id"]) for x in lines] == [("control_request", "done", batch_id)]


def test_the_same_request_twice_starts_one_batch_and_is_answered_from_the_record(stack, day):
    stack.seed(day, 3)
    req = ctl.parse_control({"action": "start", "request_id": f"twice-{day}", "game_date": day.isoformat()})
    for _ in range(2):  # published twice: two deliveries of one request
        stack.clients.publish("control", req.model_dump_json().encode(), request_id=req.request_id)
    store = RequestStore(stack.clients.fs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (store.get(req.request_id) or {}).get("status") != "done":
        time.sleep(0.2)
    record = store.get(req.request_id)
    assert record["status"] == "done"
    stack.wait(record["result"]["batch_id"])
    # and once more as a hand-made push delivery: answered from the record, nothing started
    resp = stack.push("coordinator/control", req.model_dump(mode="json"), message_id="again-1")
    assert resp.status_code == 200 and resp.json()["from_record"] is True
    assert resp.json()["result"]["batch_id"] == record["result"]["batch_id"]
    assert [b["batch_id"] for b in _batches_of(stack, day)] == [record["result"]["batch_id"]]
    assert store.get(req.request_id)["attempts"] == 1
    # the same id for another request: not run, and the CLI says so (bad input)
    other = day.replace(year=2099)
    result, _ = cli(stack, "start", other.isoformat(), "--request-id", req.request_id)
    assert result.exit_code == 2 and "already names another request" in result.output
    assert _batches_of(stack, other) == [] and store.get(req.request_id)["request"]["game_date"] == day.isoformat()


def test_poison_item_refused_restart_then_dlq_replay_ends_merged(stack, day):
    stack.seed(day, 5)
    resp = stack.start(day, faults="poison=player_0002")
    assert resp.status_code == 200, resp.text
    first = resp.json()["batch_id"]

    # a start while the batch runs (the poison keeps it open ~20 s): refused, answered in state
    result, out = cli(stack, "start", day.isoformat(), "--json")
    assert result.exit_code == 1, result.output
    assert out["status"] == "refused" and out["result"]["conflicting_batch_id"] == first
    assert out["result"]["conflicting_status"] in ("dispatching", "running")
    assert RequestStore(stack.clients.fs).get(out["request_id"])["status"] == "refused"

    batch = stack.wait(first)
    assert batch["status"] == "consolidated" and batch["failed_items"] == ["player_0002"]
    result, st = cli(stack, "status", first, "--json")
    assert result.exit_code == 1 and st["dead_lettered_items"] == 1
    assert any(f"dlq replay --batch {first}" in s for s in st["next_steps"])
    result, au = cli(stack, "audit", first, "--json")
    assert result.exit_code == 0 and au["counts"] == {"merged": 4, "recovered": 0, "dead_lettered": 1, "incomplete": 0,
                                                "missing": 0}

    result, dl = cli(stack, "dlq", "list", "--source", "work", "--batch", first, "--json")
    assert result.exit_code == 0 and dl["count"] == 1
    (msg,) = dl["dead_letters"]
    assert msg["item_id"] == "player_0002" and msg["source"] == "work"
    assert int(msg["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"]) >= 5
    assert msg["attributes"]["CloudPubSubDeadLetterSourceSubscription"].endswith("-work-push")

    # the cause is fixed (the repair batch carries no faults): replay
    result, rp = cli(stack, "dlq", "replay", "--batch", first, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert rp["status"] == "done" and rp["result"]["not_replayed"] == []
    (repair,) = rp["result"]["repair_batches"]
    assert rp["batches"] == [{"batch_id": repair["batch_id"], "status": "consolidated", "error": None}]
    assert _dead_letters(stack, first) == []

    result, au = cli(stack, "audit", repair["batch_id"], "--json")
    assert result.exit_code == 0 and au["counts"]["merged"] == 1 and au["merged_rows"] == 5
    result, au = cli(stack, "audit", first, "--json")
    assert result.exit_code == 0 and au["duplicate_rows"] == 0 and au["duplicate_active_rows"] == 0
    (dead,) = [i for i in au["items"] if i["state"] == "dead_lettered"]
    assert dead["item_id"] == "player_0002" and dead["replayed_in"] == repair["batch_id"]
    assert dead["active_rows_from"] == [repair["batch_id"]]
    result, st = cli(stack, "status", first, "--json")
    (failed,) = st["gaps"]["failed_items"]
    assert result.exit_code == 0 and st["next_steps"] == [] and failed == {
        "item_id": "player_0002", "reason": failed["reason"], "dead_lettered": True, "replayed_in": repair["batch_id"],
        "last_error": failed["last_error"], "failed_deliveries": failed["failed_deliveries"]}
    # every player of the date now has its 5 active rows, once
    rows = list(stack.clients.bq.query(
        f"SELECT player_lookup, COUNT(*) AS n FROM `{stack.clients.settings.main_table_id}` "
        f"WHERE game_date = '{day.isoformat()}' AND is_active GROUP BY player_lookup").result())
    assert sorted((r["player_lookup"], r["n"]) for r in rows) == [(f"player_{i:04d}", 5) for i in range(5)]


def test_consolidate_again_after_a_failed_consolidation_and_refusals(stack, day):
    stack.seed(day, 3)
    resp = stack.start(day, faults="zero_merge=1")
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["batch_id"]
    assert stack.wait(batch_id)["status"] == "consolidation_failed"
    result, st = cli(stack, "status", batch_id, "--json")
    assert result.exit_code == 1 and any(f"batchline consolidate {batch_id}" in s for s in st["next_steps"])
    stack.store.set_batch_fields(batch_id, {"faults": None})  # the cause, fixed
    result, out = cli(stack, "consolidate", batch_id, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert out["status"] == "done" and out["batches"][0]["status"] == "consolidated"
    assert stack.store.get_batch(batch_id)["consolidation_generation"] == 1
    result, au = cli(stack, "audit", batch_id, "--json")
    assert result.exit_code == 0 and au["counts"]["merged"] == 3
    # consolidated now: consolidating again is refused, with the reason
    result, out = cli(stack, "consolidate", batch_id, "--json")
    assert result.exit_code == 1 and out["status"] == "refused" and "consolidated" in out["error"]
    result, out = cli(stack, "redispatch", batch_id, "player_0099", "--json")
    assert result.exit_code == 1 and out["status"] == "refused" and "player_0099" in out["error"]


def test_reconcile_through_the_control_path(stack, day):
    stack.seed(day, 4)
    result, out = cli(stack, "reconcile", day.isoformat(), "--json")
    assert result.exit_code == 1 and out["status"] == "done"
    assert out["result"]["incomplete_items"] == [f"player_{i:04d}" for i in range(4)]
    assert out["result"]["action"] == "reported" and out["result"]["redispatched_batch_id"] is None
    result, out = cli(stack, "reconcile", day.isoformat(), "--repair", "--wait", "--json")
    assert out["status"] == "done" and out["result"]["action"] == "redispatched"
    assert out["batches"][0]["status"] == "consolidated"
    result, out = cli(stack, "reconcile", day.isoformat(), "--json")
    assert out["result"]["incomplete_items"] == []


def test_bad_input_exits_2_and_sends_nothing(stack):
    for args in (["start", "2030-02-30"], ["consolidate", "nope"], ["status"], ["audit", "x"],
                 ["dlq", "replay", "--limit", "0"], ["dlq", "list", "--source", "summary"],
                 ["start", "2030-01-01", "--request-id", "a/b"]):
        result, _ = cli(stack, *args)
        assert result.exit_code == 2, (args, result.output)
    # a malformed request that reaches the route anyway: 400 (Pub/Sub retries, then dead-letters it),
    # and its dead letter ends as a visible rejected message
    r = stack.push("coordinator/control", {"action": "start", "request_id": "r", "game_date": "2030-02-30"})
    assert r.status_code == 400 and "game_date" in r.json()["error"]
    r = stack.push("coordinator/dead-letters/control", b"{not json", message_id="control-junk-1")
    assert r.status_code == 200 and r.json()["result"] == "rejected"


def test_a_dead_lettered_control_request_is_recorded_failed_and_dlq_replay_runs_it(stack, day):
    stack.seed(day, 2)
    req = ctl.parse_control({"action": "start", "request_id": f"dl-{day}", "game_date": day.isoformat()})
    # as Pub/Sub dead-letters it: onto the control dead-letter topic, read by its push and pull subscriptions
    topic = stack.clients.publisher.topic_path(stack.clients.settings.project,
                                               stack.clients.topology.topic("control").dead_letter_topic)
    stack.clients.publisher.publish(topic, req.model_dump_json().encode(), request_id=req.request_id,
                                    CloudPubSubDeadLetterSourceDeliveryCount="20").result(timeout=30)
    store = RequestStore(stack.clients.fs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (store.get(req.request_id) or {}).get("status") != "failed":
        time.sleep(0.2)
    record = store.get(req.request_id)
    assert record["status"] == "failed" and "20 delivery attempts" in record["error"]
    assert _batches_of(stack, day) == []

    result, out = cli(stack, "dlq", "list", "--source", "control", "--json")
    assert result.exit_code == 0 and [m["attributes"]["request_id"] for m in out["dead_letters"]] == [req.request_id]
    result, out = cli(stack, "dlq", "replay", "--source", "control", "--json")
    assert result.exit_code == 0, result.output
    assert out["status"] == "done" and len(out["result"]["replayed"]) == 1 and out["result"]["not_replayed"] == []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.get(req.request_id)["status"] != "done":
        time.sleep(0.2)
    record = store.get(req.request_id)
    assert record["status"] == "done" and record["attempts"] == 1
    stack.wait(record["result"]["batch_id"])
    assert [b["batch_id"] for b in _batches_of(stack, day)] == [record["result"]["batch_id"]]
    result, out = cli(stack, "dlq", "list", "--source", "control", "--json")
    assert out["count"] == 0


def test_replaying_a_consolidation_dead_letter_consolidates_its_batch_again(stack, day):
    stack.seed(day, 3)
    resp = stack.start(day, faults="zero_merge=1")
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["batch_id"]
    assert stack.wait(batch_id)["status"] == "consolidation_failed"
    # its consolidation request, dead-lettered as Pub/Sub does it (the push reader leaves a batch that
    # already failed as it is; the pull reader keeps the message for replay)
    c = stack.clients
    topic = c.publisher.topic_path(c.settings.project, c.topology.topic("consolidation").dead_letter_topic)
    c.publisher.publish(topic, json.dumps({"v": 1, "batch_id": batch_id, "reason": "all_items_terminal"}).encode(),
                        batch_id=batch_id, CloudPubSubDeadLetterSourceDeliveryCount="20").result(timeout=30)
    stack.store.set_batch_fields(batch_id, {"faults": None})  # the cause, fixed
    result, out = cli(stack, "dlq", "replay", "--source", "consolidation", "--batch", batch_id, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert [m["batch_id"] for m in out["result"]["replayed"]] == [batch_id]
    assert out["batches"] == [{"batch_id": batch_id, "status": "consolidated", "error": None}]
    batch = stack.store.get_batch(batch_id)
    assert batch["status"] == "consolidated" and batch["consolidation_generation"] == 1
    result, au = cli(stack, "audit", batch_id, "--json")
    assert result.exit_code == 0 and au["counts"]["merged"] == 3 and au["merged_rows"] == 15
    result, out = cli(stack, "dlq", "list", "--source", "consolidation", "--batch", batch_id, "--json")
    assert out["count"] == 0


def test_a_dead_lettered_item_says_why_in_status_audit_and_dlq_list(stack, day):
    """Issue 14: a dead-lettered item's reason was only "dead-lettered after N delivery attempts". Each
    failed delivery now records its error on the item; status, audit and dlq list (text and JSON) show
    it; dlq list --batch reads durable records, so a concurrent reader's lease hides nothing."""
    stack.seed(day, 4)
    resp = stack.start(day, faults="poison=player_0001")
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["batch_id"]
    assert stack.wait(batch_id)["status"] == "consolidated"
    item = stack.store.get_item(batch_id, "player_0001")
    assert item["last_error"]["type"] == "FaultInjected"
    assert item["last_error"]["message"] == "injected staging write failure"
    assert item["failed_deliveries"] == stack.info.max_delivery_attempts  # one write per failed delivery
    assert "failed_deliveries" not in stack.store.get_item(batch_id, "player_0000")  # none on success
    why = "FaultInjected: injected staging write failure"
    assert item["failure_reason"].endswith(f"; last error: {why}")

    result, st = cli(stack, "status", batch_id, "--json")
    (failed,) = st["gaps"]["failed_items"]
    assert why in failed["reason"] and failed["last_error"]["type"] == "FaultInjected"
    assert failed["failed_deliveries"] == stack.info.max_delivery_attempts
    result, au = cli(stack, "audit", batch_id, "--json")
    (dead,) = [i for i in au["items"] if i["state"] == "dead_lettered"]
    assert why in dead["reason"] and dead["last_error"]["message"] == "injected staging write failure"
    for command in (["status", batch_id], ["audit", batch_id], ["dlq", "list", "--batch", batch_id]):
        result = wide_cli(stack, *command)
        assert why in result.stdout, (command, result.stdout)

    # a concurrent reader holds a pull lease on every work dead letter: dlq list --batch still sees it
    subs = DeadLetterSubscription(stack.clients, "work")
    leased = subs.pull_all()
    try:
        assert any(describe(r)["batch_id"] == batch_id for r in leased)
        result, dl = cli(stack, "dlq", "list", "--batch", batch_id, "--json")
        assert result.exit_code == 0 and dl["count"] == 1, dl
        (msg,) = dl["dead_letters"]
        assert (msg["item_id"], msg["read_from"], msg["last_error"]["type"]) == ("player_0001", "record",
                                                                                 "FaultInjected")
        assert int(msg["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"]) == item["failed_deliveries"]
        assert msg["attributes"]["CloudPubSubDeadLetterSourceSubscription"].endswith("-work-push")
        assert msg["payload"]["game_date"] == day.isoformat() and msg["replayed_in"] is None
    finally:
        subs.release([r.ack_id for r in leased])
        subs.close()
    # without --batch the work source is pulled (and released); it names the item's last error too
    result, dl = cli(stack, "dlq", "list", "--source", "work", "--json")
    (pulled,) = [m for m in dl["dead_letters"] if m["batch_id"] == batch_id]
    assert pulled["read_from"] == "pull" and pulled["message_id"] == msg["message_id"]
    assert pulled["last_error"]["type"] == "FaultInjected" and pulled["replayed_in"] is None

    # replay: its table lists the replayed message as a row (no Python dict reprs), then the record
    # says where it was replayed and the default listing no longer shows it
    result = wide_cli(stack, "dlq", "replay", "--batch", batch_id, "--wait")
    assert result.exit_code == 0, result.output
    assert "{'" not in result.stdout and "(table below)" in result.stdout
    assert any("player_0001" in line and msg["message_id"] in line for line in result.stdout.splitlines())
    result, dl = cli(stack, "dlq", "list", "--batch", batch_id, "--json")
    assert dl["count"] == 0
    result, dl = cli(stack, "dlq", "list", "--batch", batch_id, "--include-replayed", "--json")
    (msg,) = dl["dead_letters"]
    assert msg["replayed_in"] == stack.store.get_item(batch_id, "player_0001")["replayed_in"] is not None
def test_a_stale_start_is_refused_with_its_reason_and_the_readme_override_works(stack, day):
    """Issue 17.7: a refusal of the control path is a terminal `refused` answer with the reason, and
    `accept_stale_inputs` (docs/operating.md) is reachable, as a CLI flag and as the control request's field."""
    from batchline.local.provision import seed_context, synthetic_context

    loaded = dt.datetime.now(dt.UTC) - dt.timedelta(hours=48)
    seed_context(stack.clients.bq, stack.clients.settings, day, synthetic_context(day, 2), loaded_at=loaded)
    result, out = cli(stack, "start", day.isoformat(), "--json")
    assert result.exit_code == 1, result.output
    assert out["status"] == "refused" and out["attempts"] == 1, out
    assert "stale" in out["error"] and "--accept-stale-inputs" in out["error"]
    assert out["result"]["newest_loaded_at"] == loaded.isoformat() and out["result"]["max_age_hours"] == 24
    assert _batches_of(stack, day) == []
    result, out = cli(stack, "start", day.isoformat(), "--accept-stale-inputs", "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert out["status"] == "done" and out["batches"][0]["status"] == "consolidated"
    req = ctl.parse_control({"action": "start", "request_id": f"stale-ok-{day}", "game_date": day.isoformat(),
                             "accept_stale_inputs": True, "force": True})
    assert req.accept_stale_inputs is True


def test_the_dead_letter_runbook_never_strands_a_failed_consolidations_rows(stack, day):
    """Issue 17.5: while a batch's consolidation has failed, a replay of its dead letters is refused
    with what to do first (a repair batch would become the date's newest run, after which the batch can
    never be re-consolidated); every next step the reports name then works, in order."""
    stack.seed(day, 4)
    resp = stack.start(day, faults="poison=player_0002,zero_merge=1")
    assert resp.status_code == 200, resp.text
    first = resp.json()["batch_id"]
    assert stack.wait(first)["status"] == "consolidation_failed"
    result, st = cli(stack, "status", first, "--json")
    steps = " ".join(st["next_steps"])
    assert f"batchline consolidate {first}" in steps and "after it consolidates" in steps, st["next_steps"]

    result, rp = cli(stack, "dlq", "replay", "--batch", first, "--wait", "--json")
    assert result.exit_code == 1 and rp["result"]["repair_batches"] == [], rp
    (refused,) = rp["result"]["not_replayed"]
    assert refused["item_id"] == "player_0002" and f"batchline consolidate {first}" in refused["error"]
    assert stack.store.active_batch_of(day) == first, "nothing replaced the failed batch"
    assert len(_dead_letters(stack, first)) == 1, "the dead letter stays for the replay"
    result, out = cli(stack, "redispatch", first, "player_0002", "--json")
    assert result.exit_code == 1 and out["status"] == "refused" and f"consolidate {first}" in out["error"]

    stack.store.set_batch_fields(first, {"faults": None})  # the cause, fixed
    result, out = cli(stack, "consolidate", first, "--wait", "--json")
    assert result.exit_code == 0 and out["batches"][0]["status"] == "consolidated", out
    result, rp = cli(stack, "dlq", "replay", "--batch", first, "--wait", "--json")
    assert result.exit_code == 0 and rp["batches"][0]["status"] == "consolidated", rp
    rows = list(stack.clients.bq.query(
        f"SELECT player_lookup, COUNT(*) AS n FROM `{stack.clients.settings.main_table_id}` "
        f"WHERE game_date = '{day.isoformat()}' AND is_active GROUP BY player_lookup").result())
    assert sorted((r["player_lookup"], r["n"]) for r in rows) == [(f"player_{i:04d}", 5) for i in range(4)]
