"""The shared AppendRows connection (batchline/adapters/write_stream.py) against a real bqemulator of its own,
through a small TCP proxy the test can cut: many threads appending through one appender use ONE
connection and each gets its own answer; a connection broken mid-way fails only appends that were not
acknowledged, every acknowledged append's rows are in the table, and the next append reconnects. On
the local stack, a whole batch opens at most one connection in the worker process."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from batchline.adapters.write_api import StagingAppender, StagingWriteError
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.settings import Settings

PROJECT, DATASET = "write-stream-test", "staging"
SCHEMA = [bigquery.SchemaField("id", "STRING", mode="REQUIRED"), bigquery.SchemaField("n", "INTEGER")]
Q_TIMEOUT_S = 30


class CuttableProxy:
    """host:port forwarding to `target`; cut() resets every connection it carries (a network break)."""

    def __init__(self, target: str) -> None:
        self.target = target.rsplit(":", 1)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pipes and ends the TCP connection under gRPC
                s.close()
            except OSError:
                pass


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    h = emulators.start_bigquery(tmp_path_factory.mktemp("bq-write-stream"), project=PROJECT)
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


def new_table(bq) -> str:
    table_id = f"{PROJECT}.{DATASET}.t_{uuid.uuid4().hex[:8]}"
    bq.create_table(bigquery.Table(table_id, schema=SCHEMA), timeout=Q_TIMEOUT_S)
    return table_id


def ids_in(bq, table_id: str) -> list[str]:
    job = bq.query(f"SELECT id FROM `{table_id}`", timeout=Q_TIMEOUT_S)
    return [r["id"] for r in job.result(timeout=Q_TIMEOUT_S)]


def rows(tag: str, n: int = 3) -> list[dict]:
    return [{"id": f"{tag}/{k}", "n": k} for k in range(n)]


def test_many_threads_share_one_connection_across_tables(emulator, bq):
    host = emulators.bigquery_write_host(emulator)
    appender = StagingAppender(Settings(project=PROJECT, bigquery_write_emulator_host=host))
    tables = [new_table(bq), new_table(bq)]
    tags = [f"w{k}" for k in range(120)]

    def one(k_tag):
        k, tag = k_tag
        bad = k % 10 == 3  # a REQUIRED column missing: refused by the server, only this caller fails
        batch = [{"n": 1}] if bad else rows(tag)
        try:
            return tag, appender.append(tables[k % 2], SCHEMA, batch)
        except StagingWriteError:
            return tag, "refused"

    with ThreadPoolExecutor(12) as pool:
        results = dict(pool.map(one, enumerate(tags)))
    assert appender.connections_opened == 1
    refused = {t for t, r in results.items() if r == "refused"}
    assert refused == {t for k, t in enumerate(tags) if k % 10 == 3}
    staged = sorted(ids_in(bq, tables[0]) + ids_in(bq, tables[1]))
    assert staged == sorted(f"{t}/{j}" for t in tags if t not in refused for j in range(3))


def test_a_connection_broken_mid_way_fails_only_unacknowledged_appends_and_reconnects(emulator, bq):
    proxy = CuttableProxy(emulators.bigquery_write_host(emulator))
    appender = StagingAppender(Settings(project=PROJECT, bigquery_write_emulator_host=proxy.host))
    table = new_table(bq)
    acked, failed, stop = [], [], threading.Event()

    def loop(w: int) -> None:
        n = 0
        while not stop.is_set():
            tag = f"b{w}_{n}"
            try:
                appender.append(table, SCHEMA, rows(tag))
                acked.append(tag)
            except StagingWriteError:
                failed.append(tag)
            n += 1

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    proxy.cut()  # the network drops every connection of the channel
    deadline = time.monotonic() + 2 * Q_TIMEOUT_S
    before = len(acked)
    while len(acked) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=2 * Q_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    assert len(acked) >= before + 20, "appends resumed after the break"
    assert appender.connections_opened >= 2
    staged = set(ids_in(bq, table))
    # every acknowledged append is in the table whole; a failed one may or may not be (at-least-once)
    assert all({f"{t}/{j}" for j in range(3)} <= staged for t in acked)
    assert staged <= {f"{t}/{j}" for t in acked + failed for j in range(3)}


def test_a_batch_opens_at_most_one_connection_in_the_worker_process(stack, day):
    before = sum(1 for line in stack.log_lines("worker") if line.get("event") == "write_connection_opened")
    batch, ledger = stack.run(day, 40)
    assert ledger.ok and batch["merged_items"] == 40
    lines = stack.log_lines("worker")
    opened = sum(1 for line in lines if line.get("event") == "write_connection_opened") - before
    appends = [line for line in lines if line.get("event") == "staging_write_succeeded"
               and line.get("batch_id") == batch["batch_id"]]
    assert len(appends) >= 40 and opened <= 1, (opened, len(appends))
    assert dt.date.fromisoformat(batch["game_date"]) == day
