"""The local stack's life cycle on real processes: `up` reuses what answers and restarts only what
died (issue 6 item 11, issue 9), starting is exclusive (item 12), and runs share a stack."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.cloud import pubsub_v1
from typer.testing import CliRunner

from batchline.adapters.batch_store import BatchStore
from batchline.domain.runs import Item
from batchline.local import emulators as E
from batchline.local import heal
from batchline.local import processes as P
from batchline.local import stack as S
from batchline.local.preflight import problems
from batchline.local.provision import topology_of
from batchline.ops.cli import app
from batchline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
EMULATORS = (E.PUBSUB, E.FIRESTORE, E.BIGQUERY)


def _leaders_in(state_dir: Path) -> set[int]:
    """Live process-group leaders running in `state_dir` (every service of a stack is one)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        st = P.proc_stat(pid)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if st and st[0] not in ("Z", "X") and st[1] == pid and Path(cwd) == state_dir.resolve():
            found.add(pid)
    return found


def _pids(state_dir: Path) -> dict[str, int]:
    return {k: v["pid"] for k, v in json.loads((state_dir / S.STATE_FILE).read_text())["services"].items()}


def _kill(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while P.proc_stat(pid) and P.proc_stat(pid)[0] not in ("Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    P.reap(pid)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchline.ops.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    missing = problems()
    if missing:
        pytest.fail("the local stack cannot start: " + "; ".join(missing), pytrace=False)
    state = tmp_path_factory.mktemp("lifecycle")
    info = S.up(state, Settings(project="batchline-life"))
    try:
        yield state, info
    finally:
        S.down(state)
        assert _leaders_in(state) == set()


def test_run_restarts_only_a_crashed_function_and_keeps_emulator_state(running):
    state, info = running
    clients = info.activate()
    before = _pids(state)
    BatchStore(clients.fs).create_batch("20300101_aaaaaaaaaaaa", dt.date(2030, 1, 1), [Item("player_0000", "g1")],
                                        force=True, faults=None, dispatch_token="test")
    orphans = P.group_members(before["worker"])
    os.kill(before["worker"], signal.SIGKILL)  # the gunicorn master alone: its worker process is orphaned
    result = CliRunner().invoke(app, ["run", "--state-dir", str(state), "--players", "3", "--game-date", "2030-02-01"])
    assert result.exit_code == 0, result.output
    after = _pids(state)
    assert {k: after[k] for k in (*EMULATORS, "coordinator", "reconcile")} == \
        {k: before[k] for k in (*EMULATORS, "coordinator", "reconcile")}
    assert after["worker"] != before["worker"] and "restarted function worker (had died" in result.output
    assert len(orphans) > 1 and not any(P.proc_stat(p) and P.proc_stat(p)[0] not in "ZX" for p in orphans)
    assert S.load(state).handles["worker"].port == info.handles["worker"].port, "same port: pushes unchanged"
    assert BatchStore(info.activate().fs).get_batch("20300101_aaaaaaaaaaaa") is not None, "Firestore state kept"
    # the run did not start this stack, so it leaves it running (no --keep-stack needed)
    assert S.is_up(state) and _leaders_in(state) == set(after.values())


@pytest.mark.parametrize("emulator", [E.BIGQUERY, E.PUBSUB, E.FIRESTORE])
def test_a_dead_emulator_is_restarted_with_a_loud_warning_and_the_rest_is_kept(running, emulator):
    state, _ = running
    before = _pids(state)
    host_before = S.load(state).handles[emulator].host
    _kill(before[emulator])
    said: list[str] = []
    info, report = S.up_with_report(state, notify=said.append)
    after = _pids(state)
    assert report.restarted == [emulator] and report.state_lost == [emulator], said
    assert sorted(report.reused) == sorted(set(before) - {emulator})
    assert [m for m in said if m.startswith(f"WARNING: the {emulator} emulator") and "GONE" in m], said
    assert {k: v for k, v in after.items() if k != emulator} == {k: v for k, v in before.items() if k != emulator}
    assert info.handles[emulator].host == host_before, "restarted on its old address: clients keep working"
    # what the pipeline needs was provisioned again (tables, topics), so a batch still runs end to end
    day = {E.BIGQUERY: "2030-02-02", E.PUBSUB: "2030-02-05", E.FIRESTORE: "2030-02-06"}[emulator]
    result = CliRunner().invoke(app, ["run", "--state-dir", str(state), "--players", "3", "--game-date", day])
    assert result.exit_code == 0, result.output


def test_supervise_restarts_a_killed_function_on_its_port(running, tmp_path):
    state, info = running
    ran = CliRunner().invoke(app, ["run", "--state-dir", str(state), "--players", "2", "--game-date", "2030-02-07",
                                   "--json", str(tmp_path / "l.json")])
    assert ran.exit_code == 0, ran.output
    before = S.load(state).handles["coordinator"]
    _kill(before.pid)
    # the ledger needs only the emulators: it still works with a function down
    ledger = CliRunner().invoke(app, ["ledger", json.loads((tmp_path / "l.json").read_text())["batch_id"],
                                      "--state-dir", str(state)])
    assert ledger.exit_code == 0 and "OK: complete" in ledger.output, ledger.output
    said: list[str] = []
    assert heal.supervise(state, interval_s=0.1, notify=said.append, rounds=1) == 1
    now = S.load(state).handles["coordinator"]
    assert now.pid != before.pid and now.port == before.port and P.is_alive(now)
    assert any("restarted function coordinator" in m for m in said)
    assert S.is_up(state)
    # pushes reach it: a batch completes
    result = CliRunner().invoke(app, ["run", "--state-dir", str(state), "--players", "2", "--game-date", "2030-02-03"])
    assert result.exit_code == 0, result.output


def test_a_function_whose_port_was_taken_gets_a_new_one_and_the_pushes_follow(running):
    state, info = running
    before = S.load(state).handles["worker"]
    _kill(before.pid)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 30
    while True:  # the killed master's gunicorn worker holds the port until it notices it is orphaned
        try:
            squatter.bind((P.LOOPBACK, before.port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    squatter.listen()
    try:
        _, report = S.up_with_report(state, notify=lambda m: None)
    finally:
        squatter.close()
    now = S.load(state).handles["worker"]
    assert report.restarted == ["worker"] and now.port != before.port and P.is_alive(now)
    sub = pubsub_v1.SubscriberClient()
    try:
        work = sub.get_subscription(subscription=sub.subscription_path(
            info.settings_obj().project, topology_of(info).topic("work").subscriptions[0].name))
    finally:
        sub.close()
    assert work.push_config.push_endpoint.startswith(now.url), work.push_config.push_endpoint
    result = CliRunner().invoke(app, ["run", "--state-dir", str(state), "--players", "3", "--game-date", "2030-02-04"])
    assert result.exit_code == 0, result.output


def test_two_concurrent_ups_start_one_stack_and_all_of_it_is_recorded(tmp_path):
    state = tmp_path / "st"
    a, b = _cli("local", "up", "--state-dir", str(state)), _cli("local", "up", "--state-dir", str(state))
    try:
        outs = [p.communicate(timeout=240)[0] for p in (a, b)]
        assert [a.returncode, b.returncode] == [0, 0], outs
        recorded = set(_pids(state).values())
        assert len(recorded) == 7 and _leaders_in(state) == recorded  # `local up` runs the scheduler too
        assert sorted("started: pubsub" in o for o in outs) == [False, True], outs
        assert any("reused: pubsub, firestore, bigquery, worker, coordinator, reconcile, scheduler" in o
                   for o in outs), outs
    finally:
        S.down(state)
    assert _leaders_in(state) == set()


def test_two_concurrent_runs_share_one_stack_and_the_last_one_stops_it(tmp_path):
    state = tmp_path / "st"
    runs = [_cli("run", "--state-dir", str(state), "--players", "3", "--game-date", f"2030-03-0{n}")
            for n in (1, 2)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in runs]
        assert [p.returncode for p in runs] == [0, 0], outs
        assert sum("started: pubsub" in o for o in outs) == 1, outs
        assert sum("stopped the stack this run started" in o for o in outs) == 1, outs
        assert _leaders_in(state) == set() and S.load(state) is None
    finally:
        S.down(state)


def test_an_emulator_that_runs_but_does_not_answer_is_never_restarted(running, monkeypatch):
    state, info = running
    BatchStore(info.activate().fs).create_batch("20300102_bbbbbbbbbbbb", dt.date(2030, 1, 2),
                                                [Item("player_0000", "g1")], force=True, faults=None,
                                                dispatch_token="test")
    before = _pids(state)
    monkeypatch.setattr(heal, "EMULATOR_GRACE_S", 1.0)
    os.killpg(before[E.FIRESTORE], signal.SIGSTOP)
    try:
        with pytest.raises(heal.StackUnhealthy, match="firestore emulator .* running but has not answered"):
            S.up_with_report(state, notify=lambda m: None)
        said: list[str] = []
        assert heal.supervise(state, interval_s=0.1, notify=said.append, rounds=1) == 0
        assert any(m.startswith("WARNING: the firestore emulator") for m in said), said
    finally:
        os.killpg(before[E.FIRESTORE], signal.SIGCONT)
    assert _pids(state) == before
    assert BatchStore(info.activate().fs).get_batch("20300102_bbbbbbbbbbbb") is not None, "its state is intact"


def test_the_scheduler_is_a_service_of_the_stack_healed_changed_and_stopped_with_it(tmp_path):
    from batchline.local import schedule_config
    from batchline.local.stack_scheduler import SCHEDULER

    state = tmp_path / "st"
    quiet = {"start": "off", "reconcile": "off"}
    info = S.up(state, schedules=schedule_config.load("dev", {**quiet, "stall-check": "* * * * *"}))
    try:
        first = info.handles[SCHEDULER]
        assert P.is_alive(first) and (state / schedule_config.JOBS_FILE).exists()
        _kill(first.pid)
        _, report = S.up_with_report(state, notify=lambda m: None)  # KEEP: as `supervise` heals
        healed = S.load(state).handles[SCHEDULER]
        assert report.restarted == [SCHEDULER] and healed.pid != first.pid and P.is_alive(healed)
        other = schedule_config.load("dev", {**quiet, "stall-check": "*/5 * * * *"})
        _, report = S.up_with_report(state, notify=lambda m: None, schedules=other)
        assert report.restarted == [SCHEDULER] and SCHEDULER not in report.reused, "new jobs, new process"
        assert schedule_config.read(state) == other
        _, report = S.up_with_report(state, notify=lambda m: None, schedules=other)
        assert SCHEDULER in report.reused and not report.restarted, "same jobs: kept"
        _, report = S.up_with_report(state, notify=lambda m: None, schedules=None)
        assert report.stopped == [SCHEDULER] and SCHEDULER not in S.load(state).handles
        assert S.is_up(state), "a stack without a scheduler is whole"
    finally:
        S.down(state)
    assert _leaders_in(state) == set() and not (state / schedule_config.JOBS_FILE).exists()
