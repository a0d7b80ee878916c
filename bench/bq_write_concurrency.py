"""Does bqemulator 1.4.0 survive Storage Write API appends (gRPC) concurrent with REST jobs?

    PYTHONPATH=$PWD .venv/bin/python bench/bq_write_concurrency.py [--seconds 60] [--appenders 2] [--rest 2]
        [--unpatched]

Starts a bqemulator of its own (temporary directory), creates one table, then for `--seconds` runs
`--appenders` threads doing default-stream appends of 5 rows (batchline.adapters.write_api.StagingAppender, one
client per thread as one per worker process, rows as bench/floor.py's handler makes them) and
`--rest` threads doing what the pipeline does over REST (a 5-row load job, then a COUNT query).
Every call has a deadline; the emulator counts as hung when its REST health check stops answering.
Prints and writes bench/results/bq-write-concurrency-<time>.json: calls done per kind, errors, and
whether and when it hung. The emulator is stopped at the end either way.

By default bqemulator runs through batchline.local.bq_launcher, whose `patch_write_servicer` fixes the
hang (the write servicer's flush on a DuckDB cursor of its own). `--unpatched` leaves that one patch
out (the offline/upload patches stay) to reproduce the bqemulator 1.4.0 deadlock (~9 s in).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import tempfile
import threading
import time
from collections import Counter

from common import loadavg, machine, utc_now, write_json
from floor import rows_for

from batchline.adapters.write_api import StagingAppender
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.local.provision import main_table_schema
from batchline.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--appenders", type=int, default=2)
    ap.add_argument("--rest", type=int, default=2)
    ap.add_argument("--unpatched", action="store_true",
                    help="start bqemulator without the launcher's write-servicer patch (reproduces the hang)")
    args = ap.parse_args()
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    project, dataset = "bench-write", "bench"
    with tempfile.TemporaryDirectory(prefix="bq-write-") as tmp:
        h = emulators.start_bigquery(tmp, project=project)
        if args.unpatched:
            procs.stop(h)
            code = ("import sys; from batchline.local import bq_launcher as b; b.patch_write_servicer = lambda: None; "
                    "b.main(sys.argv[1:])")
            i = h.argv.index(next(a for a in h.argv if a.endswith("bq_launcher.py")))
            argv = [*h.argv[:i], "-c", code, *h.argv[i + 1:]]
            h = procs.start_process(emulators.BIGQUERY, argv, tmp, {},
                                    lambda: emulators.bigquery_ready(h.host, project),
                                    60.0, port=h.port, extra_ports=h.extra_ports, project=project)
        try:
            bq = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=f"http://{h.host}"))
            bq.create_dataset(dataset)
            schema = main_table_schema()
            bq.create_table(bigquery.Table(f"{project}.{dataset}.batch", schema=schema))
            done: Counter = Counter()
            errors: list[str] = []
            stop = threading.Event()
            t_end = time.monotonic() + args.seconds

            def appender(k: int) -> None:
                w = StagingAppender(Settings(project=project,
                                             bigquery_write_emulator_host=emulators.bigquery_write_host(h)))
                n = 0
                while not stop.is_set() and time.monotonic() < t_end:
                    try:
                        w.append(f"{project}.{dataset}.batch", schema, rows_for(f"a{k}_{n}", "2039-03-03", "b"))
                        done["append"] += 1
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        errors.append(f"append: {exc!r}"[:300])
                    n += 1

            def rest(k: int) -> None:
                n = 0
                while not stop.is_set() and time.monotonic() < t_end:
                    table = f"{project}.{dataset}.stg_{k}_{n}"
                    payload = "".join(json.dumps(r) + "\n" for r in rows_for(f"r{k}_{n}", "2039-03-03", "b"))
                    try:
                        bq.load_table_from_file(io.BytesIO(payload.encode()), table, job_config=bigquery.LoadJobConfig(
                            schema=schema, source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON),
                            timeout=30).result(timeout=30)
                        list(bq.query(f"SELECT COUNT(*) AS n FROM `{table}`").result(timeout=30))
                        done["rest_load+count"] += 1
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        errors.append(f"rest: {exc!r}"[:300])
                    n += 1

            threads = ([threading.Thread(target=appender, args=(k,), daemon=True) for k in range(args.appenders)]
                       + [threading.Thread(target=rest, args=(k,), daemon=True) for k in range(args.rest)])
            before = loadavg()
            t0 = time.monotonic()
            for t in threads:
                t.start()
            hung_at = None
            while time.monotonic() < t_end:
                time.sleep(2)
                if not emulators.bigquery_ready(h.host, project):
                    time.sleep(5)
                    if not emulators.bigquery_ready(h.host, project):
                        hung_at = round(time.monotonic() - t0, 1)
                        break
            stop.set()
            out = {"kind": "bq_write_concurrency", "at": utc_now(), "machine": machine(), "loadavg_before": before,
                   "loadavg_after": loadavg(), "seconds": args.seconds, "appenders": args.appenders,
                   "rest_threads": args.rest, "write_patch": not args.unpatched, "calls_done": dict(done),
                   "errors": len(errors),
                   "error_samples": errors[:5], "hung": hung_at is not None, "hung_after_s": hung_at}
            if hung_at is None:  # every acknowledged append must be in the table, once
                row = list(bq.query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k "
                                    f"FROM `{project}.{dataset}.batch`").result(timeout=60))[0]
                out["batch_table_rows"] = {"expected": 5 * done["append"], "found": row["n"], "distinct": row["k"]}
            print(json.dumps(out, indent=1))
            write_json(f"bq-write-concurrency-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", out)
        finally:
            procs.stop(h)


if __name__ == "__main__":
    main()
