"""Run bqemulator offline, with three small in-process patches.

Usage: ``python -m batchline.local.bq_launcher start --rest-port P --grpc-port G ...`` (the same
arguments as ``bqemulator``; everything after the module name is passed to bqemulator's CLI).

Why a launcher instead of the ``bqemulator`` script:

* bqemulator 1.4.0 runs ``INSTALL spatial; LOAD spatial`` at start-up, and ``INSTALL`` downloads
  from extensions.duckdb.org. Offline this fails and the emulator refuses to start. The
  ``duckdb-extension-spatial`` / ``-avro`` wheels ship the extension binaries for our pinned DuckDB,
  so we ``LOAD`` them by file path instead: no network, nothing written to ``~/.duckdb``.
* The official google-cloud-bigquery client (``load_table_from_json`` and
  ``load_table_from_file`` without an explicit type) sends the media part of a multipart upload
  with ``Content-Type: */*``. Real BigQuery accepts it; bqemulator's whitelist rejects it with
  "multipart upload's second part has unsupported Content-Type '*/*'". We add ``*/*`` to the
  whitelist (the load job's ``sourceFormat`` decides how the bytes are parsed anyway).
* Storage Write API appends (gRPC) concurrent with REST jobs deadlock bqemulator 1.4.0 within
  seconds (bench/bq_write_concurrency.py reproduces it: ~9 s in, the REST health check stops
  answering). The write servicer's ``_flush_to_target`` runs its INSERT on the one DuckDB connection
  the REST side also uses, so a gRPC thread can hold that connection's lock while it waits for the
  GIL held by a REST thread waiting for the lock. We run the INSERT on a cursor of its own (a separate
  DuckDB connection to the same database, still under the servicer's write lock), then update the
  table's ``num_rows``, so ``tables.get`` and queries see the appended rows as soon as the append is
  acknowledged. The original also takes an AUTO time-travel snapshot per append (``CREATE TABLE AS``
  a full copy of the table, on the shared connection: a concurrent REST query then returned the CTAS's
  ``Count`` column instead of its own); we only publish ``TableDataChanged`` (query cache, views).
  So ``FOR SYSTEM_TIME AS OF`` does not see Storage Write API appends; batchline does not use it.

All patches live only inside the emulator process; the installed package is not modified.
"""

from __future__ import annotations

import importlib
import pathlib
import sys


def _extension_file(name: str, duckdb_version: str) -> pathlib.Path | None:
    """Path of the bundled ``<name>.duckdb_extension`` for this DuckDB version, if installed."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        return None
    base = pathlib.Path(module.__file__).parent / "extensions" / duckdb_version
    path = base / f"{name}.duckdb_extension"
    return path if path.is_file() else None


def _load_bundled(connection, name: str) -> None:
    """LOAD a bundled extension by path; raise a clear error if the wheel is missing."""
    version = connection.execute("PRAGMA version").fetchone()[0]
    path = _extension_file(name, version)
    if path is None:
        raise RuntimeError(
            f"DuckDB extension {name!r} for DuckDB {version} is not bundled: "
            f"pip install 'duckdb-extension-{name}=={version.lstrip('v')}'"
        )
    connection.execute(f"LOAD '{path}'")


def patch_write_servicer() -> None:
    """The write servicer's ``_flush_to_target`` on its own DuckDB cursor (see the module docstring)."""
    from uuid import uuid4

    from bqemulator.domain.events import TableDataChanged
    from bqemulator.grpc_api import write_servicer as ws
    from bqemulator.storage.sql_identifiers import quoted_table_ref, register_name

    def _flush_to_target(self, stream, rows) -> None:
        target_ref = quoted_table_ref(stream.project_id, stream.dataset_id, stream.table_id)
        reg_name = register_name(f"__bqemu_write_{uuid4().hex[:12]}")
        with self._write_lock:
            cur = self._ctx.engine.connection.cursor()
            try:
                cur.register(reg_name, rows)
                try:
                    cur.execute(f"INSERT INTO {target_ref} SELECT * FROM {reg_name}")
                finally:
                    cur.unregister(reg_name)
            finally:
                cur.close()
            meta = self._ctx.catalog.get_table(stream.project_id, stream.dataset_id, stream.table_id)
            if meta is not None:
                self._ctx.catalog.update_table(meta.model_copy(update={"num_rows": meta.num_rows + rows.num_rows}))
            # Not `snapshots.record_change`: its AUTO snapshot (a CREATE TABLE AS copy of the whole
            # table, per append) runs on the shared connection too, and crosses concurrent REST results.
            # Only the event: it invalidates the query cache and marks dependent views stale.
            self._ctx.snapshots._events.publish(
                TableDataChanged(stream.project_id, stream.dataset_id, stream.table_id))

    ws.BigQueryWriteHandler._flush_to_target = _flush_to_target


def apply_patches() -> None:
    """Patch bqemulator (in this process only): offline extensions, ``*/*`` media parts, and the
    Storage Write API's flush on its own DuckDB cursor."""
    from bqemulator.api.routes import upload
    from bqemulator.storage import engine

    def _load_spatial(self) -> None:
        _load_bundled(self._connection, "spatial")

    def _load_format_extensions(self) -> None:
        # Best effort, as in bqemulator itself: Avro loads fail per request if missing.
        try:
            _load_bundled(self._connection, "avro")
        except Exception as exc:  # noqa: BLE001
            print(f"bq_launcher: avro extension unavailable: {exc}", file=sys.stderr)

    engine.DuckDBEngine._load_spatial = _load_spatial
    engine.DuckDBEngine._load_format_extensions = _load_format_extensions
    if "*/*" not in upload._PERMITTED_MEDIA_CONTENT_TYPES:
        upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")
    patch_write_servicer()


def main(argv: list[str] | None = None) -> None:
    apply_patches()
    from bqemulator.cli import main as bq_main

    bq_main(args=list(sys.argv[1:] if argv is None else argv), prog_name="bqemulator")


if __name__ == "__main__":
    main()
