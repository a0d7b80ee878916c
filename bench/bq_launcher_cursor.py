"""bench only: batchline's bqemulator launcher plus one experimental patch, to test a workaround for the
hang bench/bq_write_concurrency.py reproduces (not used by the stack; a candidate for the redesign).

The patch: the Storage Write API's `_flush_to_target` runs its DuckDB calls on a cursor of its own (a
separate DuckDB connection to the same database) instead of the connection the REST side uses, so the
gRPC thread never holds the shared connection's ClientContext lock while it needs the GIL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchline.local import bq_launcher  # noqa: E402


def patch_write_servicer() -> None:
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
            self._ctx.snapshots.record_change(stream.project_id, stream.dataset_id, stream.table_id)

    ws.BigQueryWriteHandler._flush_to_target = _flush_to_target


if __name__ == "__main__":
    patch_write_servicer()
    bq_launcher.main()
