"""How long `batchline dlq list --batch B` takes, and what concurrent readers see (issue 14).

One batch of `--players` players with `--dead` of them poisoned (dead-lettered after every delivery
attempt), then: `dlq list --batch B` (text and --json, and --json of the work source alone, `--repeat`
times each, as separate processes, the way an operator runs it; `cli_start` is `batchline --help`,
the start-up every figure includes) and `--readers` concurrent `dlq list --batch B --json`, each reporting how
many dead letters it saw (the right answer is `--dead`). Prints and writes
bench/results/dlq-list-<time>.json; asserts nothing.

    .venv/bin/python bench/dlq_list.py [--state-dir .batchline/local]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import common
import requests

import batchline
from batchline.adapters.batch_store import BatchStore
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.local.provision import seed_context, synthetic_context


def _cli(state_dir: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    tail = [] if args == ("--help",) else ["--state-dir", state_dir]
    done = subprocess.run([sys.executable, "-m", "batchline.ops.cli", *args, *tail],
                          capture_output=True, text=True, timeout=600, check=False)
    return time.monotonic() - t0, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--players", type=int, default=6)
    ap.add_argument("--dead", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--readers", type=int, default=4)
    args = ap.parse_args()
    quiet = common.wait_quiet()
    with common.stack(args.state_dir) as info:
        clients = info.activate()
        day = dt.date(2039, 1, 1) + dt.timedelta(days=random.randrange(3000))
        seed_context(clients.bq, clients.settings, day, synthetic_context(day, args.players))
        poison = "+".join(f"player_{n:04d}" for n in range(args.dead))
        r = requests.post(info.url("coordinator") + "/start", timeout=120,
                          json={"game_date": day.isoformat(), "faults": f"poison={poison}", "force": True})
        r.raise_for_status()
        batch_id = r.json()["batch_id"]
        store = BatchStore(clients.fs)
        while (store.get_batch(batch_id) or {}).get("status") not in TERMINAL_STATUSES:
            time.sleep(0.5)
        time.sleep(2.0)  # the last dead letter's push record and pull copy have both landed
        timings: dict[str, list[float]] = {"text": [], "json": [], "json_source_work": [], "cli_start": []}
        counts = []
        for _ in range(args.repeat):
            s, _done = _cli(info.state_dir, "--help")  # the CLI's own start-up, included in every figure
            timings["cli_start"].append(round(s, 2))
            s, _done = _cli(info.state_dir, "dlq", "list", "--source", "work", "--batch", batch_id, "--json")
            timings["json_source_work"].append(round(s, 2))
            s, _done = _cli(info.state_dir, "dlq", "list", "--batch", batch_id)
            timings["text"].append(round(s, 2))
            s, done = _cli(info.state_dir, "dlq", "list", "--batch", batch_id, "--json")
            timings["json"].append(round(s, 2))
            counts.append(json.loads(done.stdout)["count"])
        with ThreadPoolExecutor(args.readers) as pool:
            runs = list(pool.map(lambda _: _cli(info.state_dir, "dlq", "list", "--batch", batch_id, "--json"),
                                 range(args.readers)))
        concurrent = [json.loads(d.stdout)["count"] if d.returncode == 0 else f"exit {d.returncode}" for _, d in runs]
        result = {"when": common.utc_now(), "machine": common.machine(), "loadavg": common.loadavg(),
                  "batchline_source": batchline.__file__,
                  "wait_quiet": quiet, "batch_id": batch_id, "players": args.players, "dead": args.dead,
                  "seconds": timings, "counts_sequential": counts, "counts_concurrent": concurrent,
                  "concurrent_seconds": [round(s, 2) for s, _ in runs]}
    print(json.dumps(result, indent=2))
    path = common.write_json(f"dlq-list-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", result)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
