"""Completion checks answered many per query (batchline/write_checks.py): each caller gets exactly its
own count (and shape) or the query's error, and checks waiting together share a query. BigQuery is an in-memory
double that answers `staging.write_counts_sql` slowly, as a real query would."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import bigquery

from batchline import staging
from batchline.settings import Settings
from batchline.write_checks import WriteChecks

S = Settings(project="batchline-test")
B1, B2 = "20300101_0123456789ab", "20300101_ba9876543210"


def _w(n: int) -> str:
    return f"{n:032x}"


class _SlowBigQuery:
    def __init__(self, staged: dict[str, dict[tuple[str, str], int]], delay_s: float = 0.05,
                 fail: Exception | None = None):
        self.staged = staged
        self.delay_s = delay_s
        self.fail = fail
        self.queries: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    def query_and_wait(self, sql, job_config=None, **_kw):
        params = {p.name: p for p in job_config.query_parameters}
        batch = next(b for b in self.staged if f"stg_{b}" in sql)
        if "pairs" in params:
            assert sql == staging.write_counts_sql(S, batch)
            asked = list(params["pairs"].values)
        else:  # a group of one: the single-write statement, which always answers one row
            assert sql == staging.write_count_sql(S, batch)
            asked = [f"{params['item_id'].value}/{params['write_id'].value}"]
        with self._lock:
            self.queries.append((batch, asked))
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        rows = [{"item_id": i, "write_id": w, "n": n, "k": n, "pairs": [f"s{j}/points" for j in range(n)]}
                for (i, w), n in self.staged[batch].items() if f"{i}/{w}" in set(asked)]
        if "pairs" not in params and not rows:
            item, write = asked[0].split("/")
            rows = [{"item_id": item, "write_id": write, "n": 0, "k": 0, "pairs": None}]
        return rows

    def get_table(self, table_id):
        return bigquery.Table(table_id)


def test_concurrent_checks_share_queries_and_each_gets_its_own_count():
    staged = {B1: {(f"p{n}", _w(n)): n + 1 for n in range(40)}}
    bq = _SlowBigQuery(staged)
    checks = WriteChecks(bq, S)
    with ThreadPoolExecutor(max_workers=40) as pool:
        futures = list(pool.map(lambda n: checks.count(B1, f"p{n}", _w(n)), range(40)))
        counts = [f.result(timeout=10).rows for f in futures]
    assert counts == [n + 1 for n in range(40)]
    assert len(bq.queries) < 40, "checks waiting together shared a query"
    assert sorted(p for _, pairs in bq.queries for p in pairs) == sorted(f"p{n}/{_w(n)}" for n in range(40))


def test_a_write_nothing_was_staged_under_counts_zero_and_batches_get_their_own_query():
    bq = _SlowBigQuery({B1: {("p1", _w(1)): 5}, B2: {("p1", _w(2)): 5}}, delay_s=0.2)
    checks = WriteChecks(bq, S)
    first = checks.count(B1, "p1", _w(1))  # occupies the query thread for 0.2 s
    time.sleep(0.05)
    a, b, forged = checks.count(B1, "p1", _w(9)), checks.count(B2, "p1", _w(2)), checks.count(B2, "p1", _w(1))
    assert tuple(f.result(5).rows for f in (first, a, b, forged)) == (5, 0, 5, 0)
    assert first.result(5).shape.keys == 5 and len(first.result(5).shape.pairs) == 5, "the shape with the count"
    assert sorted(batch for batch, _ in bq.queries) == [B1, B1, B2], "one query per batch table per group"


def test_a_failed_query_fails_every_check_waiting_on_it_and_the_next_check_still_runs():
    bq = _SlowBigQuery({B1: {("p1", _w(1)): 5}}, fail=staging.StagingTableMissing("gone"))
    checks = WriteChecks(bq, S)
    waiting = [checks.count(B1, "p1", _w(1)), checks.count(B1, "p2", _w(2))]
    for f in waiting:
        with pytest.raises(staging.StagingTableMissing):
            f.result(5)
    bq.fail = None
    assert checks.count(B1, "p1", _w(1)).result(5).rows == 5
