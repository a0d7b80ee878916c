"""The official Google Cloud clients, built once per process.

In production they use the function's service account. Locally the same classes talk to the
emulators: Pub/Sub and Firestore read PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST themselves, and
BigQuery is pointed at BIGQUERY_EMULATOR_HOST through `client_options` (it has no such variable), and
the Storage Write API appender at BIGQUERY_WRITE_EMULATOR_HOST (the emulator's gRPC port).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, firestore, pubsub_v1

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.control_records import RequestStore
from batchline.adapters.dead_letter_records import DeadLetterLog
from batchline.adapters.staging import BatchStagingTables
from batchline.adapters.write_api import StagingAppender
from batchline.settings import Settings, from_env
from batchline.topology import Topology, build_topology


def bigquery_client(settings: Settings) -> bigquery.Client:
    if settings.bigquery_emulator_host:
        return bigquery.Client(
            project=settings.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=f"http://{settings.bigquery_emulator_host}"),
            location=settings.bq_location,
        )
    return bigquery.Client(project=settings.project, location=settings.bq_location)


def firestore_client(settings: Settings) -> firestore.Client:
    """The batch-state database the settings name: "(default)" or a named one (the emulator keeps
    each named database apart too, so the local stack can run on one)."""
    return firestore.Client(project=settings.project, database=settings.firestore_database)


PUBLISH_MAX_LATENCY_S = 0.001


@dataclass
class Clients:
    """Lazily built clients sharing one Settings; safe to share across a function's threads."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _bq: bigquery.Client | None = None
    _fs: firestore.Client | None = None
    _pub: pubsub_v1.PublisherClient | None = None
    _appender: StagingAppender | None = None
    store: BatchStore | None = None  # the batch store; a test may hand in an in-memory one
    staging_tables: BatchStagingTables | None = None  # likewise the staging tables

    @cached_property
    def dead_letter_log(self) -> DeadLetterLog:
        """The dead-letter records (what each dead-lettered work message was, for replay)."""
        return DeadLetterLog(self.fs)

    @cached_property
    def requests(self) -> RequestStore:
        """The operators' control requests."""
        return RequestStore(self.fs)

    @property
    def staging(self) -> BatchStagingTables:
        if self.staging_tables is None:
            self.staging_tables = BatchStagingTables(self.bq, self.settings)
        return self.staging_tables

    @property
    def batches(self) -> BatchStore:
        """The ONE writer of batch state (batchline/adapters/batch_store/), on these clients' Firestore."""
        if self.store is None:
            fs = self.fs
            with self._lock:
                if self.store is None:
                    self.store = BatchStore(fs)
        return self.store

    @cached_property
    def topology(self) -> Topology:
        return build_topology(self.settings.topic_prefix)

    @property
    def bq(self) -> bigquery.Client:
        with self._lock:
            if self._bq is None:
                self._bq = bigquery_client(self.settings)
            return self._bq

    @property
    def fs(self) -> firestore.Client:
        with self._lock:
            if self._fs is None:
                self._fs = firestore_client(self.settings)
            return self._fs

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        with self._lock:
            if self._pub is None:
                # Every publish here is waited for before the caller answers (F1), so the client's
                # default 10 ms batching window is pure latency per item; 1 ms still batches a dispatch.
                self._pub = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(
                    max_latency=PUBLISH_MAX_LATENCY_S))
            return self._pub

    @property
    def appender(self) -> StagingAppender:
        """Staging appends over the Storage Write API (its gRPC client is built on the first append)."""
        with self._lock:
            if self._appender is None:
                self._appender = StagingAppender(self.settings)
            return self._appender

    def topic_path(self, key: str) -> str:
        return self.publisher.topic_path(self.settings.project, self.topology.topic(key).name)

    def publish(self, key: str, data: bytes, timeout_s: float = 30.0, **attributes: str) -> str:
        """Publish and wait until Pub/Sub has stored the message; returns its id. Raises otherwise,
        so no caller can report success for a message that was never accepted."""
        future = self.publisher.publish(self.topic_path(key), data, **attributes)
        return future.result(timeout=timeout_s)

    def publish_all(self, key: str, messages: list[tuple[bytes, dict[str, str]]], timeout_s: float = 60.0) -> list[str]:
        """Publish a chunk at once (the client batches it), then wait until Pub/Sub has stored every
        message; raises on the first that was not, so no caller reports a chunk it did not deliver."""
        path = self.topic_path(key)
        futures = [self.publisher.publish(path, data, **attributes) for data, attributes in messages]
        return [f.result(timeout=timeout_s) for f in futures]


_DEFAULT: Clients | None = None
_DEFAULT_LOCK = threading.Lock()


def default_clients() -> Clients:
    """The process-wide clients of a function, from its environment."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Clients(from_env())
        return _DEFAULT
