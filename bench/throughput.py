"""Throughput of the local stack: items/s and where the time goes, for a few batch sizes and fault mixes.

    .venv/bin/python bench/throughput.py [--players 100 450] [--faults "" "staging_write=0.3"]

Prints one line per run: phases from batch state timestamps (dispatch, work until the consolidation
claim, consolidation), items/s, and the ledger's verdict. Figures depend on the machine; they are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time

import requests

from batchline.adapters.batch_store import BatchStore
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.flows.ledger import compute
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context


def one_run(info, clients, day: dt.date, players: int, faults: str | None) -> dict:
    seed_context(clients.bq, clients.settings, day, synthetic_context(day, players))
    t0 = time.monotonic()
    r = requests.post(info.url("coordinator") + "/start", json={"game_date": day.isoformat(), "faults": faults},
                      timeout=300)
    r.raise_for_status()
    batch_id = r.json()["batch_id"]
    store = BatchStore(clients.fs)
    while (b := store.get_batch(batch_id))["status"] not in TERMINAL_STATUSES:
        time.sleep(0.2)
    wall = time.monotonic() - t0
    ledger = compute(clients, batch_id, wall)

    def secs(a: str, z: str) -> float:
        return (b[z] - b[a]).total_seconds() if b.get(a) and b.get(z) else float("nan")

    return {
        "players": players, "faults": faults or "-", "wall_s": round(wall, 1),
        "dispatch_s": round(secs("created_at", "dispatched_at"), 1),
        "work_s": round(secs("dispatched_at", "consolidation_requested_at"), 1),
        "consolidate_s": round(secs("consolidation_requested_at", "consolidated_at"), 1),
        "items_per_s": round(players / wall, 1), "ok": ledger.ok, "dml": ledger.main_table_mutating_dml,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, nargs="+", default=[100, 450])
    ap.add_argument("--faults", nargs="+", default=["", "staging_write=0.3,completion_publish=0.1"])
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as state:
        info = local_stack.up(state, threads=args.threads, reuse=False)
        try:
            clients = info.activate()
            day = dt.date(2031, 1, 1)
            for players in args.players:
                for faults in args.faults:
                    print(one_run(info, clients, day, players, faults or None), flush=True)
                    day += dt.timedelta(days=1)
        finally:
            local_stack.down(state)


if __name__ == "__main__":
    main()
