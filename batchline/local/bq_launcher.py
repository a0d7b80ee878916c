"""Run bqemulator offline, with two small in-process patches.

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

Both patches live only inside the emulator process; the installed package is not modified.
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


def apply_patches() -> None:
    """Patch bqemulator (in this process only): offline extensions and ``*/*`` media parts."""
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


def main(argv: list[str] | None = None) -> None:
    apply_patches()
    from bqemulator.cli import main as bq_main

    bq_main(args=list(sys.argv[1:] if argv is None else argv), prog_name="bqemulator")


if __name__ == "__main__":
    main()
