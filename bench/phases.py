"""Where an item's time goes in the batch table design, from the stack's own logs of one batch run.

    PYTHONPATH=$PWD .venv/bin/python bench/phases.py --state-dir /tmp/bench-new --run bench/results/sweep-450-...json

Reads the worker's and coordinator's JSON log lines of the run's batch (logs/worker.log,
logs/coordinator.log of the stack) and, per item, the times of `staging_write_succeeded` (the
AppendRows was acknowledged), `completion_published` (Pub/Sub accepted the completion) and the
coordinator's `item_completed` (the completion checked by `staging.count_writes` and recorded). Prints and
adds to the run JSON (`log_phases`): p50/p95 of append-acknowledged -> published and published ->
recorded, and the rate (items/s) at which each stage got through the batch, so one sees which side
(worker or coordinator) sets the pace. A redelivered item counts its last write. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from common import percentile, r


def _t(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def events(path: Path, batch_id: str, names: set[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    with open(path) as fh:
        for line in fh:
            if batch_id not in line:
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("batch_id") == batch_id and d.get("event") in names and d.get("item"):
                out[d["event"]][d["item"]] = _t(d["time"])  # the last one per item
    return out


def rate(times: list[float]) -> float | None:
    if len(times) < 2:
        return None
    ts = sorted(times)
    return r((len(ts) - 1) / (ts[-1] - ts[0]), 1) if ts[-1] > ts[0] else None


def analyse(state_dir: str, batch_id: str) -> dict:
    logs = Path(state_dir) / "logs"
    w = events(logs / "worker.log", batch_id, {"staging_write_succeeded", "completion_published"})
    c = events(logs / "coordinator.log", batch_id, {"item_completed"})
    wrote, pub, rec = w["staging_write_succeeded"], w["completion_published"], c["item_completed"]
    items = sorted(set(wrote) & set(pub) & set(rec))
    w2p = sorted(pub[i] - wrote[i] for i in items)
    p2r = sorted(rec[i] - pub[i] for i in items)
    return {
        "items": len(items),
        "append_ack_to_published_s": {"p50": r(percentile(w2p, 50)), "p95": r(percentile(w2p, 95))},
        "published_to_recorded_s": {"p50": r(percentile(p2r, 50)), "p95": r(percentile(p2r, 95)),
                                    "max": r(max(p2r, default=None))},
        "items_per_s": {"appends": rate(list(wrote.values())), "published": rate(list(pub.values())),
                        "recorded": rate(list(rec.values()))},
        "span_s": {"appends": r(max(wrote.values()) - min(wrote.values())) if wrote else None,
                   "recorded": r(max(rec.values()) - min(rec.values())) if rec else None,
                   "last_append_to_last_record": r(max(rec.values()) - max(wrote.values())) if rec and wrote
                   else None},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--run", nargs="+", required=True, help="sweep JSON file(s) of runs on that stack")
    args = ap.parse_args()
    for path in args.run:
        p = Path(path)
        run = json.loads(p.read_text())
        out = analyse(args.state_dir, run["batch_id"])
        run["log_phases"] = out
        p.write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")
        print(p.name, json.dumps(out))


if __name__ == "__main__":
    main()
