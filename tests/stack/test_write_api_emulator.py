"""batchline.adapters.write_api against a bqemulator of its own (started through batchline.local.bq_launcher,
so with its write-servicer patch): acknowledged appends are visible at once to REST queries and in
`num_rows`, refused appends write nothing, and appends concurrent with REST jobs do not hang the
emulator (bqemulator 1.4.0 unpatched deadlocks ~9 s in). Every call has a deadline."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from batchline.adapters.write_api import StagingAppender, StagingWriteError
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.settings import Settings

PROJECT, DATASET = "write-api-test", "staging"
SCHEMA = [
    bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("game_date", "DATE", mode="REQUIRED"),
    bigquery.SchemaField("value", "FLOAT"),
    bigquery.SchemaField("n", "INTEGER"),
    bigquery.SchemaField("ok", "BOOLEAN"),
    bigquery.SchemaField("created_at", "TIMESTAMP"),
]
Q_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    h = emulators.start_bigquery(tmp_path_factory.mktemp("bq-write-api"), project=PROJECT)
    try:
        yield h
    finally:
        procs.stop(h)


@pytest.fixture(scope="module")
def bq(emulator) -> bigquery.Client:
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=f"http://{emulator.host}"))
    client.create_dataset(DATASET, timeout=Q_TIMEOUT_S)
    return client


@pytest.fixture(scope="module")
def appender(emulator) -> StagingAppender:
    return StagingAppender(Settings(project=PROJECT,
                                    bigquery_write_emulator_host=emulators.bigquery_write_host(emulator)))


@pytest.fixture
def table(bq) -> str:
    table_id = f"{PROJECT}.{DATASET}.t_{uuid.uuid4().hex[:8]}"
    bq.create_table(bigquery.Table(table_id, schema=SCHEMA), timeout=Q_TIMEOUT_S)
    return table_id


def rows(prefix: str, n: int = 5) -> list[dict]:
    now = dt.datetime(2039, 3, 3, 12, 0, 0, 250000, tzinfo=dt.UTC)
    return [{"id": f"{prefix}{k}", "game_date": "2039-03-03", "value": k + 0.5, "n": k, "ok": k % 2 == 0,
             "created_at": (now + dt.timedelta(seconds=k)).isoformat()} for k in range(n)]


def count(bq: bigquery.Client, table_id: str) -> int:
    job = bq.query(f"SELECT COUNT(*) AS n FROM `{table_id}`", timeout=Q_TIMEOUT_S)
    return next(iter(job.result(timeout=Q_TIMEOUT_S)))["n"]


def test_append_is_visible_to_queries_and_num_rows(bq, appender, table):
    assert appender.append(table, SCHEMA, rows("a")) == 5
    assert count(bq, table) == 5  # immediately, no streaming buffer to wait for
    assert bq.get_table(table, timeout=Q_TIMEOUT_S).num_rows == 5
    got = {r["id"]: r for r in bq.query(f"SELECT * FROM `{table}`", timeout=Q_TIMEOUT_S).result(timeout=Q_TIMEOUT_S)}
    assert got["a3"]["game_date"] == dt.date(2039, 3, 3)
    assert got["a3"]["created_at"] == dt.datetime(2039, 3, 3, 12, 0, 3, 250000, tzinfo=dt.UTC)
    assert (got["a3"]["value"], got["a3"]["n"], got["a3"]["ok"]) == (3.5, 3, False)
    assert appender.append(table, SCHEMA, rows("b")) == 5
    assert count(bq, table) == 10 and bq.get_table(table, timeout=Q_TIMEOUT_S).num_rows == 10


def test_refused_append_writes_nothing(bq, appender, table):
    bad = rows("c")
    del bad[2]["id"]  # a REQUIRED column missing in one row: the whole request is refused
    with pytest.raises(StagingWriteError):
        appender.append(table, SCHEMA, bad)
    extra = rows("d")
    extra[4]["surprise"] = "x"  # a key that is no column: refused, never dropped
    with pytest.raises(StagingWriteError, match="not columns"):
        appender.append(table, SCHEMA, extra)
    with pytest.raises(StagingWriteError, match="(?i)not found"):  # refused by the server
        appender.append(f"{PROJECT}.{DATASET}.no_such_table", SCHEMA, rows("e"))
    assert count(bq, table) == 0
    assert bq.get_table(table, timeout=Q_TIMEOUT_S).num_rows == 0


def test_appends_concurrent_with_rest_queries_do_not_hang(emulator, bq, table):
    seconds, done, errors = 10.0, {"append": 0, "query": 0}, []
    lock = threading.Lock()
    t_end = time.monotonic() + seconds

    def append_loop(k: int) -> None:
        a = StagingAppender(Settings(project=PROJECT,
                                     bigquery_write_emulator_host=emulators.bigquery_write_host(emulator)))
        n = 0
        while time.monotonic() < t_end:
            try:
                a.append(table, SCHEMA, rows(f"w{k}_{n}_"))
                with lock:
                    done["append"] += 1
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))
            n += 1

    def query_loop() -> None:
        while time.monotonic() < t_end:
            try:
                count(bq, table)
                with lock:
                    done["query"] += 1
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))

    threads = ([threading.Thread(target=append_loop, args=(k,), daemon=True) for k in range(2)]
               + [threading.Thread(target=query_loop, daemon=True) for _ in range(2)])
    for t in threads:
        t.start()
    for t in threads:  # each call has a 30 s deadline, so a live thread after this means a hang
        t.join(timeout=seconds + 2 * Q_TIMEOUT_S + 5)
    assert not any(t.is_alive() for t in threads), f"hung: {done}"
    assert not errors, errors[:3]
    assert done["append"] > 0 and done["query"] > 0
    assert emulators.bigquery_ready(emulator.host, PROJECT)
    assert count(bq, table) == 5 * done["append"]
    assert bq.get_table(table, timeout=Q_TIMEOUT_S).num_rows == 5 * done["append"]
