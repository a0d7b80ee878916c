"""The cost arithmetic, pure: bytes BigQuery bills for a statement (with its 10 MB minimums), the logical
size of a row, Pub/Sub's billable bytes (1,000 bytes minimum per request), and US dollars for every
service from bench/cost_prices.py. No I/O; tests/unit/test_cost_model.py checks each minimum and unit.

Units: BigQuery and Pub/Sub bill per TiB (2**40 bytes), Storage Write API and storage per GiB (2**30);
the 10 MB minimum is taken as 10 * 2**20 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from cost_prices import price

TIB = 2**40
GIB = 2**30
MIB = 2**20
SECONDS_PER_MONTH = 730 * 3600  # Google's pricing calculators use 730 hours a month

# BigQuery logical sizes per value (data size calculation, docs/cost.md): 8 bytes for the fixed-width
# numeric and time types, 1 for BOOL, 2 + the UTF-8 length for STRING and BYTES, 0 for NULL.
_FIXED = {"INT64": 8, "INTEGER": 8, "FLOAT64": 8, "FLOAT": 8, "DATE": 8, "DATETIME": 8, "TIME": 8,
          "TIMESTAMP": 8, "BOOL": 1, "BOOLEAN": 1, "NUMERIC": 16, "BIGNUMERIC": 32, "INTERVAL": 16}


def value_logical_bytes(bq_type: str, value) -> int:
    """BigQuery's logical size of one value of a column of `bq_type`."""
    if value is None:
        return 0
    t = bq_type.upper()
    if t in _FIXED:
        return _FIXED[t]
    if t == "STRING":
        return 2 + len(str(value).encode("utf-8"))
    if t == "BYTES":
        return 2 + len(value)
    raise ValueError(f"no logical size for type {bq_type!r}")


def row_logical_bytes(row: Mapping, types: Mapping[str, str]) -> dict[str, int]:
    """column -> logical bytes of that column's value in `row` (`types`: column -> BigQuery type)."""
    return {c: value_logical_bytes(t, row.get(c)) for c, t in types.items()}


def mean_column_bytes(rows: Iterable[Mapping], types: Mapping[str, str]) -> dict[str, float]:
    """The average logical bytes per value of each column over `rows` (0 for every column when empty)."""
    total = dict.fromkeys(types, 0)
    n = 0
    for row in rows:
        n += 1
        for c, b in row_logical_bytes(row, types).items():
            total[c] += b
    return {c: (v / n if n else 0.0) for c, v in total.items()}


def round_up_mib(nbytes: float) -> int:
    return int(math.ceil(nbytes / MIB)) * MIB


def billed_query_bytes(bytes_per_table: Mapping[str, float], *, min_per_table: float | None = None,
                       min_per_query: float | None = None) -> int:
    """Bytes billed on demand for a statement that processed `bytes_per_table` (table -> bytes read,
    DML's updated-partition bytes included): each referenced table at least the per-table minimum, the
    statement at least the per-query minimum, rounded up to a whole MB."""
    t_min = price("bq_min_bytes_per_table") if min_per_table is None else min_per_table
    q_min = price("bq_min_bytes_per_query") if min_per_query is None else min_per_query
    total = sum(max(t_min, b) for b in bytes_per_table.values())
    return round_up_mib(max(q_min, total))


def dml_bytes(scanned: float, updated_partitions: float, kind: str, only_inserts: bool = False) -> float:
    """Bytes processed by a DML statement (dml-syntax page): q = what it reads, t = the size of the
    partitions (or table) it updates before the change; INSERT, and a MERGE with only INSERT clauses,
    cost q; UPDATE, DELETE and a MERGE with an UPDATE or DELETE clause cost q + t."""
    if kind == "INSERT" or (kind == "MERGE" and only_inserts):
        return scanned
    if kind in ("UPDATE", "DELETE", "MERGE"):
        return scanned + updated_partitions
    return scanned


def on_demand_usd(billed_bytes: float) -> float:
    return billed_bytes / TIB * price("bq_on_demand_per_tib")


def growing_table_fills(n_queries: int) -> list[float]:
    """The fraction of a table's final rows present at each of `n_queries` queries spread evenly over
    the time it fills (the completion checks of a batch): (i + 0.5) / n."""
    return [(i + 0.5) / n_queries for i in range(n_queries)]


def write_api_usd(ingested_bytes: float) -> float:
    return ingested_bytes / GIB * price("bq_write_api_per_gib")


def storage_usd(nbytes: float, seconds: float) -> float:
    """Active storage of `nbytes` held for `seconds` (prorated per second)."""
    return nbytes / GIB * seconds / SECONDS_PER_MONTH * price("bq_active_storage_per_gib_month")


def pubsub_message_bytes(data_len: int, attributes: Mapping[str, str], message_id_len: int = 16,
                         ordering_key: str = "") -> int:
    """A message's billed volume: data + each attribute's key and value + 20 bytes for the timestamp +
    the message id (+ the ordering key, one of the 'additional fields')."""
    return (data_len + sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items()) + 20
            + message_id_len + len(ordering_key.encode()))


def pubsub_request_billable(message_bytes: Iterable[int]) -> int:
    """One publish, push or pull request's billed bytes: its messages, at least 1,000 bytes."""
    return max(int(price("ps_min_bytes_per_request")), sum(message_bytes))


def pubsub_usd(billable_bytes: float) -> float:
    return billable_bytes / TIB * price("ps_throughput_per_tib")


def firestore_usd(reads: float, writes: float, deletes: float) -> float:
    return (reads * price("fs_read_per_100k") + writes * price("fs_write_per_100k")
            + deletes * price("fs_delete_per_100k")) / 100_000


def billable_request_seconds(duration_s: float) -> float:
    """A request's billed time: rounded up to the next 100 ms."""
    g = price("run_billing_granularity_s")
    return math.ceil(round(duration_s / g, 9)) * g


def run_usd(vcpu_s: float, gib_s: float, requests: float) -> float:
    return (vcpu_s * price("run_vcpu_s") + gib_s * price("run_gib_s")
            + requests / 1e6 * price("run_per_million_requests"))


def memory_gib(setting: str) -> float:
    """A Cloud Run memory setting ("512Mi", "1Gi", "2G") in GiB."""
    units = {"Mi": 1 / 1024, "Gi": 1.0, "M": 1e6 / GIB, "G": 1e9 / GIB, "Ki": 1 / 2**20}
    for suffix in sorted(units, key=len, reverse=True):
        if setting.endswith(suffix):
            return float(setting[: -len(suffix)]) * units[suffix]
    return float(setting) / GIB


def beyond_free(used_per_period: float, free_per_period: float) -> float:
    """What a period's usage costs beyond its free allowance (never negative)."""
    return max(0.0, used_per_period - free_per_period)
