"""The local stack's three functions restarted with the counting shim (bench/cost_counting.py), and the
counts they write read back: snapshots per process, merged per function, differences between phases.

The functions are restarted on their own ports (so the push subscriptions keep pointing at them) with
bench/cost_site first on PYTHONPATH and $BATCHLINE_COST_COUNT_DIR set; the same argv as
batchline.local.stack.start_function otherwise. `restore` restarts them without the shim.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from batchline import topology as topo
from batchline.local import function_servers
from batchline.local import processes as procs
from batchline.local import stack as local_stack
from batchline.local.stack_record import REPO_ROOT

SITE_DIR = Path(__file__).resolve().parent / "cost_site"
FIRST_LOOK_S = 1.5


def _start(info, name: str, port: int, extra_env: dict[str, str], pythonpath: str) -> procs.ServiceHandle:
    argv = [sys.executable, "-m", "functions_framework", "--target", name,
            "--source", str(function_servers.FUNCTION_SOURCES[name]), "--host", procs.LOOPBACK, "--port", str(port)]
    env = {**function_servers.function_env(info), "THREADS": str(info.threads), "PYTHONPATH": pythonpath,
           "PYTHONUNBUFFERED": "1", **extra_env}
    url = f"http://{procs.LOOPBACK}:{port}/"
    return procs.start_process(name, argv, Path(info.state_dir), env, lambda: procs.http_get(url) is not None,
                               60.0, port=port)


def restart_functions(info, count_dir: Path | None) -> None:
    """Restart worker, coordinator and reconcile, counting into `count_dir` (None: without the shim)."""
    repo = str(REPO_ROOT)
    with local_stack.exclusive(info.state_dir):
        for name in topo.FUNCTIONS:
            handle = info.handles[name]
            procs.stop(handle)
            if count_dir is None:
                new = _start(info, name, handle.port, {}, repo)
            else:
                count_dir.mkdir(parents=True, exist_ok=True)
                new = _start(info, name, handle.port, {"BATCHLINE_COST_COUNT_DIR": str(count_dir),
                                                       "BATCHLINE_COST_PROCESS": name}, f"{SITE_DIR}:{repo}")
            info.services[name] = new.to_dict()
            info.save()


def read_snapshots(count_dir: Path) -> list[dict]:
    out = []
    for p in sorted(count_dir.glob("*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def settle(count_dir: Path, quiet_s: float = 3.0, timeout_s: float = 180.0) -> list[dict]:
    """Wait until no process has rewritten its counts for `quiet_s` (longer than the shim's forced flush
    interval, so nothing counted is still unwritten) and none counted anything for as long; returns the
    snapshots."""
    deadline = time.monotonic() + timeout_s
    time.sleep(FIRST_LOOK_S)  # what was just counted is written within 0.5 s idle + a 0.25 s poll
    while True:
        snaps = read_snapshots(count_dir)
        now = time.time()
        last = max((max(s["last_activity"], s["written_at"]) for s in snaps), default=0.0)
        if now - last >= quiet_s or time.monotonic() > deadline:
            return snaps
        time.sleep(0.5)


def by_process(snaps: list[dict]) -> dict[str, dict]:
    """process name -> {"counts": summed counts, "peaks": max peaks, "texts", "hot_docs", "doc_templates"},
    over every pid of that process (gunicorn's master and worker, a restarted worker)."""
    out: dict[str, dict] = {}
    for s in snaps:
        agg = out.setdefault(s["process"], {"counts": Counter(), "peaks": {}, "texts": {}, "hot_docs": {},
                                            "doc_templates": {}, "pids": []})
        agg["pids"].append(s["pid"])
        agg["counts"].update(s["counts"])
        for k, v in s["peaks"].items():
            agg["peaks"][k] = max(agg["peaks"].get(k, 0), v)
        agg["texts"].update(s["texts"])
        for doc, ts in s["hot_docs"].items():
            agg["hot_docs"].setdefault(doc, []).extend(ts)
        for t, v in s["doc_templates"].items():
            cur = agg["doc_templates"].setdefault(t, {"writes": 0, "docs": 0})
            cur["writes"] += v["writes"]
            cur["docs"] += v["docs"]
    return out


def diff(after: dict[str, dict], before: dict[str, dict], t0: float, t1: float) -> dict[str, dict]:
    """What each process counted between two snapshots (counts subtracted; hot-document write times kept
    within [t0, t1]; document templates subtracted)."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {"counts": {}, "doc_templates": {}})
        counts = {k: v - b["counts"].get(k, 0) for k, v in a["counts"].items()}
        templates = {t: {k: v[k] - b["doc_templates"].get(t, {}).get(k, 0) for k in v}
                     for t, v in a["doc_templates"].items()}
        hot = {d: [x for x in ts if t0 <= x <= t1] for d, ts in a["hot_docs"].items()}
        out[name] = {"counts": {k: v for k, v in counts.items() if v}, "peaks": a["peaks"], "texts": a["texts"],
                     "hot_docs": {d: ts for d, ts in hot.items() if ts},
                     "doc_templates": {t: v for t, v in templates.items() if v["writes"]}}
    return out


def read_events(count_dir: Path, t0: float, t1: float) -> list[dict]:
    """Every timed event of every process within [t0, t1], in time order."""
    events = []
    for p in sorted(count_dir.glob("*.events.jsonl")):
        for line in p.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = e.get("t", e.get("t0", 0))
            if t0 <= t <= t1:
                events.append(e)
    return sorted(events, key=lambda e: e.get("t", e.get("t0", 0)))
