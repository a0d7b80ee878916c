"""The local scheduler as a service of the local stack: `up` starts it with the stack's jobs, heal and
supervise restart it when it dies or stops answering, `down` stops it (before the functions, so it
never fires into a stack that is going away). Callers hold the stack lock (`stack_record.exclusive`).

It is stateless apart from the jobs it was given (`schedules.json`) and the record of what it ran
(`scheduler-state.json`), so a restart loses nothing but the executions in flight, which are marked
`interrupted`. Which jobs run is the stack's record: a stack started without a scheduler (the tests'
stacks, `batchline run`'s) keeps none until `batchline local up` asks for one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from batchline.local import processes as procs
from batchline.local import schedule_config
from batchline.local import scheduler_runs as runs
from batchline.local.stack_record import REPO_ROOT, SCHEDULER, StackInfo, UpReport

READY_TIMEOUT_S = 30.0


def answering(handle: procs.ServiceHandle) -> bool:
    """Its loop ticks (the health answer is 200, not 503)."""
    return _ticking(handle.url + "/")


def _ticking(url: str) -> bool:
    r = procs.http_get(url)
    return r is not None and r[0] == 200


def start(info: StackInfo) -> procs.ServiceHandle:
    state_dir = Path(info.state_dir)
    port = procs.free_port()
    argv = [sys.executable, "-m", "batchline.local.scheduler", "--state-dir", str(state_dir.resolve()),
            "--port", str(port)]
    env = {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    url = f"http://{procs.LOOPBACK}:{port}/"
    return procs.start_process(SCHEDULER, argv, state_dir, env, lambda: _ticking(url), READY_TIMEOUT_S, port=port)


def _restart(info: StackInfo, old: procs.ServiceHandle | None) -> procs.ServiceHandle:
    if old is not None:
        procs.stop(old)
    new = start(info)
    info.services[SCHEDULER] = new.to_dict()
    info.save()
    return new


def configure_locked(info: StackInfo, schedules: schedule_config.LocalSchedules | None,
                     report: UpReport, notify: Callable[[str], None]) -> None:
    """Make the stack's scheduler run `schedules` (None: no scheduler), restarting it only if its
    jobs changed or it does not answer."""
    state_dir = Path(info.state_dir)
    old = info.handles.get(SCHEDULER)
    if schedules is None:
        if old is not None:
            procs.stop(old)
            info.services.pop(SCHEDULER, None)
            info.save()
            report.stopped.append(SCHEDULER)
        schedule_config.remove(state_dir)
        return
    changed = schedule_config.read(state_dir) != schedules
    if changed:
        schedule_config.write(state_dir, schedules)
    if old is not None and not changed and procs.is_alive(old) and answering(old):
        if SCHEDULER not in report.restarted + report.reused:  # heal may have just restarted it
            report.reused.append(SCHEDULER)
        return
    new = _restart(info, old)
    if SCHEDULER in report.reused:  # heal found it alive; its jobs changed since
        report.reused.remove(SCHEDULER)
    if old is None:
        report.started.append(SCHEDULER)
    else:
        report.restarted.append(SCHEDULER)
        notify(f"restarted the scheduler ({'its jobs changed' if changed else 'it was not answering'}; "
               f"new pid {new.pid}): {schedule_config.describe(schedules)}")


def heal_locked(info: StackInfo, report: UpReport, notify: Callable[[str], None]) -> None:
    """Restart a recorded scheduler that died or stopped ticking (nothing if the stack has none)."""
    old = info.handles.get(SCHEDULER)
    if old is None and schedule_config.read(info.state_dir) is None:
        return
    if old is not None and procs.is_alive(old) and answering(old):
        report.reused.append(SCHEDULER)
        return
    why = "was not recorded" if old is None else "was not answering" if procs.is_alive(old) else "had died"
    new = _restart(info, old)
    report.restarted.append(SCHEDULER)
    notify(f"restarted the scheduler ({why}; old pid {old.pid if old else '-'}, new pid {new.pid})")


def forget(state_dir: Path) -> None:
    """After `down`: the jobs and their record belong to the stack that is gone."""
    schedule_config.remove(state_dir)
    (state_dir / runs.STATE_FILE).unlink(missing_ok=True)
