"""One real local stack per test session: the official Pub/Sub and Firestore emulators, bqemulator,
and the three functions under functions-framework, receiving real push deliveries. Started here and
stopped here; if an emulator is missing the session fails with the package to install."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from google.cloud import bigquery

from batchline.adapters import manifests, staging
from batchline.adapters import merge as consolidate
from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.messages import WorkMessage
from batchline.domain.predictor import SyntheticPredictor
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.flows.ledger import Ledger, compute
from batchline.flows.work import build_rows
from batchline.local import stack as local_stack
from batchline.local.preflight import problems
from batchline.local.provision import create_tables, seed_context, synthetic_context
from batchline.settings import Settings

WAIT_S = 240


@dataclass
class Stack:
    info: local_stack.StackInfo
    clients: Clients

    def url(self, function: str) -> str:
        return self.info.url(function)

    @property
    def store(self) -> BatchStore:
        return BatchStore(self.clients.fs)

    def seed(self, day: dt.date, players: int) -> None:
        seed_context(self.clients.bq, self.clients.settings, day, synthetic_context(day, players))

    def start(self, day: dt.date, *, faults: str | None = None, force: bool = False) -> requests.Response:
        return requests.post(self.url("coordinator") + "/start", timeout=120,
                             json={"game_date": day.isoformat(), "faults": faults, "force": force})

    def wait(self, batch_id: str, timeout_s: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.store.get_batch(batch_id)
            if batch and batch["status"] in TERMINAL_STATUSES:
                return batch
            time.sleep(0.3)
        raise AssertionError(f"batch {batch_id} not terminal after {timeout_s}s: {self.store.get_batch(batch_id)}")

    def wait_for(self, batch_id: str, status: str, timeout_s: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.store.get_batch(batch_id)
            if batch and batch["status"] == status:
                return batch
            time.sleep(0.3)
        raise AssertionError(f"batch {batch_id} not {status} after {timeout_s}s: {self.store.get_batch(batch_id)}")

    def stall_check(self, **body) -> list[dict]:
        r = requests.post(self.url("coordinator") + "/stall-check", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["stalled"]

    def stage(self, s: Settings, batch_id: str, day: dt.date, item: str, schema=None, rows: int | None = None) -> str:
        """Append one item's rows to the batch staging table as a worker would; returns the write id.
        The table is created if missing: from `schema` (main-table columns; the staging columns are
        added), else from the main table's live schema, as a dispatch does. `rows`: only the first
        that many of the item's rows (a buggy predictor's or writer's short write)."""
        bq = self.clients.bq
        table_id = s.staging_table_id(ids.batch_staging_table(batch_id))
        if schema is None:
            staging.create_batch_table(bq, s, batch_id)
        else:
            bq.create_table(bigquery.Table(table_id, schema=staging.staging_schema(list(schema))), exists_ok=True)
        table_schema = list(bq.get_table(table_id).schema)
        names = {f.name for f in table_schema}
        msg = WorkMessage(batch_id=batch_id, game_date=day, item_id=item, game_id="g1")
        built = build_rows(msg, SyntheticPredictor(), dt.datetime.now(dt.UTC))[:rows]
        write_id = ids.new_write_id()
        self.clients.appender.append(table_id, table_schema, [
            {**{k: v for k, v in r.items() if k in names}, staging.ITEM_COLUMN: item, staging.WRITE_COLUMN: write_id}
            for r in built])
        return write_id

    def merge_pinned(self, s: Settings, batch_id: str, day: dt.date, manifest: dict[str, str], **kw):
        """consolidate.merge_staging of `manifest` (item -> write id), pinned first as a consolidation
        pins it: the pin's rows in the manifest table, then the MERGE that joins them."""
        pin = ids.new_pin(0, 0)
        manifests.write(self.clients.bq, self.clients.appender, s, manifests.rows(
            batch_id, pin, manifest, (), sorted(manifest), dt.datetime.now(dt.UTC)))
        return consolidate.merge_staging(self.clients.bq, s, batch_id, day, pin, len(manifest), **kw)

    def merged_manifest(self, batch: dict) -> dict[str, str]:
        """item -> write id that the batch's recorded consolidation merged (its pin's rows in the
        manifest table, batchline/adapters/manifests.py)."""
        pin = batch["merge_result"]["pin"]
        return manifests.read(self.clients.bq, self.clients.settings, batch["batch_id"], [pin])[pin]

    def log_lines(self, function: str) -> list[dict]:
        """The JSON lines a function printed on stdout, as gunicorn captured them (F8)."""
        out = []
        for line in Path(self.info.handles[function].log_path).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def run(self, day: dt.date, players: int, *, faults: str | None = None, force: bool = False,
            seed: bool = True) -> tuple[dict, Ledger]:
        if seed:
            self.seed(day, players)
        resp = self.start(day, faults=faults, force=force)
        assert resp.status_code == 200, resp.text
        batch = self.wait(resp.json()["batch_id"])
        return batch, compute(self.clients, batch["batch_id"], 0.0)

    def push(self, function_path: str, payload: dict | bytes, *, message_id: str = "test-1") -> requests.Response:
        """A hand-made push delivery, shaped exactly like Pub/Sub's envelope."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        body = {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id, "attributes": {}},
                "subscription": "projects/batchline-test/subscriptions/manual"}
        function, _, path = function_path.partition("/")
        return requests.post(self.url(function) + "/" + path, json=body, timeout=60)


_days = itertools.count()


@pytest.fixture
def day() -> dt.date:
    """A game date of its own for each test, so tests never see each other's rows."""
    return dt.date(2030, 1, 1) + dt.timedelta(days=next(_days))


@pytest.fixture
def schema_settings(stack) -> Settings:
    """A main table of its own, so schema surgery cannot disturb the other tests."""
    s = Settings(**{**stack.clients.settings.__dict__, "main_dataset": "schema_test"})
    create_tables(stack.clients.bq, s)
    return s


@contextlib.contextmanager
def own_stack(state, settings: Settings, **up_kwargs) -> Iterator[Stack]:
    """A second local stack, for one test module: started, activated (its emulator hosts become this
    process's, `StackInfo.activate`), stopped, and the environment the session stack's clients read
    put back, so tests after it never talk to its stopped emulators."""
    env = dict(os.environ)
    info = local_stack.up(state, settings, reuse=False, **up_kwargs)
    try:
        yield Stack(info, info.activate())
    finally:
        try:
            local_stack.down(state)
        finally:
            os.environ.clear()
            os.environ.update(env)


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    missing = problems()
    if missing:
        pytest.fail("the local stack cannot start: " + "; ".join(missing), pytrace=False)
    state = tmp_path_factory.mktemp("stack")
    info = local_stack.up(state, Settings(project="batchline-test"), reuse=False)
    try:
        yield Stack(info, info.activate())
    finally:
        local_stack.down(state)
