"""The read-only queries' answers where BigQuery says a table is not there (batchline/adapters/queries.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc

from batchline.adapters import queries
from batchline.domain.errors import MainTableMissing
from batchline.settings import Settings


class _NoMainTable:
    def query(self, sql, job_config=None, **_kw):
        raise gexc.NotFound(f"Not found: Table {sql.split('FROM ')[1].split()[0]}")


def test_a_missing_main_table_is_a_domain_error_the_reconciliation_can_name():
    with pytest.raises(MainTableMissing, match="Not found: Table"):
        queries.active_shapes(_NoMainTable(), Settings(), dt.date(2030, 1, 15))
