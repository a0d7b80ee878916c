"""One ZetaSQL analyzer server per session of tests/sql, started on a free loopback port and stopped
at the end (also when tests fail). Not installed is a failure naming the make target, never a skip."""

from __future__ import annotations

from collections.abc import Iterable

import bigquery_dialect as dialect
import pytest
from zetasql_service import ZetaSqlServer, ZetaSqlUnavailable, statement_kind

from batchline.settings import Settings


class Analyzer:
    def __init__(self, server: ZetaSqlServer):
        self.server = server

    def analyze(self, sql: str, params: Iterable = (), tables: dict[str, dialect.Schema] | None = None,
                settings: Settings | None = None) -> str:
        """Analyze one statement as BigQuery would; returns its kind ('merge', 'query', ...) or raises
        AnalysisError with ZetaSQL's message. The catalog holds the main and context tables, updated
        with `tables` (full table id -> schema)."""
        tables = dialect.batchline_tables(settings or Settings(), tables)
        request = dialect.analyze_request(self.server.protos, sql, params, tables)
        kind = statement_kind(self.server.analyze(request))
        return kind.removeprefix("resolved_").removesuffix("_stmt_node")


_unavailable: list[str] = []  # why the server could not start, so later tests fail at once


@pytest.fixture(scope="session")
def zetasql():
    server = None
    if not _unavailable:
        try:
            server = ZetaSqlServer().__enter__()  # stops what it started if it fails
        except ZetaSqlUnavailable as exc:
            _unavailable.append(str(exc))
    if server is None:
        pytest.fail(f"ZetaSQL analyzer unavailable: {_unavailable[0]}", pytrace=False)
    try:
        yield Analyzer(server)
    finally:
        server.stop()
