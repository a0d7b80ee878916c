"""Does bqemulator 1.4.0 survive Storage Write API appends (gRPC) concurrent with REST jobs?

    PYTHONPATH=$PWD .venv/bin/python bench/bq_write_concurrency.py [--seconds 60] [--appenders 2] [--rest 2]

Starts a bqemulator of its own (temporary directory), creates one table, then for `--seconds` runs
`--appenders` threads doing default-stream appends of 5 rows (as bench/floor.py's handler does) and
`--rest` threads doing what the pipeline does over REST (a 5-row load job, then a COUNT query).
Every call has a deadline; the emulator counts as hung when its REST health check stops answering.
Prints and writes bench/results/bq-write-concurrency-<time>.json: calls done per kind, errors, and
whether and when it hung. The emulator is stopped at the end either way.
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
from pathlib import Path

from common import loadavg, machine, utc_now, write_json
from floor import DefaultStreamWriter, rows_for

from batchline.local import processes as procs
from batchline.local.provision import main_table_schema


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--appenders", type=int, default=2)
    ap.add_argument("--rest", type=int, default=2)
    ap.add_argument("--cursor-patch", action="store_true",
                    help="start bqemulator through bench/bq_launcher_cursor.py (experimental workaround)")
    args = ap.parse_args()
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    project, dataset = "bench-write", "bench"
    with tempfile.TemporaryDirectory(prefix="bq-write-") as tmp:
        h = procs.start_bigquery(tmp, project=project)
        if args.cursor_patch:
            procs.stop(h)
            argv = [a if not a.endswith("bq_launcher.py") else str(Path(__file__).with_name("bq_launcher_cursor.py"))
                    for a in h.argv]
            h = procs.start_process(procs.BIGQUERY, argv, tmp, {}, lambda: procs.bigquery_ready(h.host, project),
                                    60.0, port=h.port, extra_ports=h.extra_ports, project=project)
        try:
            bq = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=f"http://{h.host}"))
            bq.create_dataset(dataset)
            schema = main_table_schema()
            bq.create_table(bigquery.Table(f"{project}.{dataset}.batch", schema=schema))
            cols = [{"name": c.name, "type": c.field_type, "mode": c.mode} for c in schema]
            done: Counter = Counter()
            errors: list[str] = []
            stop = threading.Event()
            t_end = time.monotonic() + args.seconds

            def appender(k: int) -> None:
                w = DefaultStreamWriter(f"127.0.0.1:{h.extra_ports['grpc']}", project, dataset, "batch", cols)
                n = 0
                while not stop.is_set() and time.monotonic() < t_end:
                    try:
                        w.append(rows_for(f"a{k}_{n}", "2039-03-03", "b"))
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
                if not procs.bigquery_ready(h.host, project):
                    time.sleep(5)
                    if not procs.bigquery_ready(h.host, project):
                        hung_at = round(time.monotonic() - t0, 1)
                        break
            stop.set()
            out = {"kind": "bq_write_concurrency", "at": utc_now(), "machine": machine(), "loadavg_before": before,
                   "loadavg_after": loadavg(), "seconds": args.seconds, "appenders": args.appenders,
                   "rest_threads": args.rest, "cursor_patch": args.cursor_patch, "calls_done": dict(done),
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
