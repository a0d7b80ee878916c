"""Retired. The experimental cursor patch that lived here (the Storage Write API's `_flush_to_target` on a
DuckDB cursor of its own, fixing the hang bench/bq_write_concurrency.py reproduced) is now part of
batchline.local.bq_launcher (`patch_write_servicer`, applied by `apply_patches()`), so every bqemulator
the stack or the bench starts has it. This module only forwards to the launcher."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchline.local import bq_launcher  # noqa: E402

if __name__ == "__main__":
    bq_launcher.main()
