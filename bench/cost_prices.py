"""Google's published prices and quotas the cost model uses, each with the page it was read from
(read 2026-12-06, through the stored copies the `search` tool reaches) and how sure the figure is.

`source` says where the figure came from: "google" (a copy of Google's own page showed it), "google-old"
(only an older copy of Google's page showed it; the current page renders its price table in a way the
stored copy did not contain), "third-party" (Google's page did not show it; a third-party summary did),
"unverified" (no stored page showed it; the figure is the one the author remembers from Google's page and
is printed with that warning). docs/cost.md repeats this table in prose. Change a figure here and every
figure of the report follows.
"""

from __future__ import annotations

from dataclasses import dataclass

READ = "read 2026-12-06"


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    url: str
    source: str  # google | google-old | third-party | unverified
    note: str = ""


BQ_PRICING = "https://cloud.google.com/bigquery/pricing"
BQ_DML = "https://cloud.google.com/bigquery/docs/reference/standard-sql/dml-syntax"
BQ_QUOTAS = "https://cloud.google.com/bigquery/quotas"
BQ_QUEUES = "https://cloud.google.com/bigquery/docs/query-queues"
FS_PRICING = "https://cloud.google.com/firestore/pricing"
FS_QUOTAS = "https://cloud.google.com/firestore/quotas"
FS_BEST = "https://cloud.google.com/firestore/docs/best-practices#updates_to_a_single_document"
PS_PRICING = "https://cloud.google.com/pubsub/pricing"
PS_QUOTAS = "https://cloud.google.com/pubsub/quotas"
RUN_PRICING = "https://cloud.google.com/run/pricing"
SCHED_PRICING = "https://cloud.google.com/scheduler/pricing"

PRICES: dict[str, Figure] = {
    "bq_on_demand_per_tib": Figure(6.25, "USD per TiB processed", BQ_PRICING, "third-party",
                                   "Google's current page names on-demand pricing per TiB but its price table was not "
                                   "in the stored copy; $6.25 from adriennevermorel.com and cloudwebschool.com"),
    "bq_on_demand_free_tib_month": Figure(1.0, "TiB per month per billing account", BQ_PRICING, "google"),
    "bq_min_bytes_per_query": Figure(10 * 2**20, "bytes (10 MB)", BQ_PRICING, "google-old",
                                     "'rounded to the nearest MB, with a minimum 10 MB data processed per table "
                                     "referenced by the query, and a minimum 10 MB data processed per query'"),
    "bq_min_bytes_per_table": Figure(10 * 2**20, "bytes (10 MB)", BQ_PRICING, "google-old"),
    "bq_active_storage_per_gib_month": Figure(0.02, "USD per GiB-month (active logical)", BQ_PRICING, "google-old",
                                              "first 10 GiB per month free; prorated per MB per second"),
    "bq_storage_free_gib_month": Figure(10.0, "GiB-month", BQ_PRICING, "google-old"),
    "bq_write_api_per_gib": Figure(0.025, "USD per GiB ingested", BQ_PRICING, "third-party",
                                   "Storage Write API; from help.nops.io (Google's page not in the stored copy)"),
    "bq_write_api_free_tib_month": Figure(2.0, "TiB per month per billing account", BQ_PRICING, "third-party"),
    "fs_read_per_100k": Figure(0.06, "USD per 100,000 document reads, nam5", FS_PRICING, "third-party",
                               "Google's 'Pricing by location' table is not in the stored copies; multi-region "
                               "figures from a copy of the old page (twblogs.net) and a wiki copy"),
    "fs_write_per_100k": Figure(0.18, "USD per 100,000 document writes, nam5", FS_PRICING, "third-party"),
    "fs_delete_per_100k": Figure(0.02, "USD per 100,000 document deletes, nam5", FS_PRICING, "third-party"),
    "fs_free_reads_day": Figure(50_000, "reads per day, (default) database only", FS_PRICING, "google"),
    "fs_free_writes_day": Figure(20_000, "writes per day", FS_PRICING, "google"),
    "fs_free_deletes_day": Figure(20_000, "deletes per day", FS_PRICING, "google"),
    "ps_throughput_per_tib": Figure(40.0, "USD per TiB (publish + delivery)", PS_PRICING, "google"),
    "ps_free_gib_month": Figure(10.0, "GiB per month", PS_PRICING, "google"),
    "ps_min_bytes_per_request": Figure(1000, "bytes per publish, push or pull request", PS_PRICING, "google"),
    "run_vcpu_s": Figure(0.000024, "USD per vCPU-second, Tier 1, CPU only during requests", RUN_PRICING, "google"),
    "run_gib_s": Figure(0.0000025, "USD per GiB-second, Tier 1, CPU only during requests", RUN_PRICING,
                        "third-party", "the stored copy of Google's table ends after the CPU column; "
                        "cloudwebschool.com, cloudchipr.com"),
    "run_per_million_requests": Figure(0.40, "USD per million requests", RUN_PRICING, "third-party"),
    "run_free_vcpu_s_month": Figure(180_000, "vCPU-seconds per month", RUN_PRICING, "google"),
    "run_free_gib_s_month": Figure(360_000, "GiB-seconds per month", RUN_PRICING, "google"),
    "run_free_requests_month": Figure(2_000_000, "requests per month", RUN_PRICING, "google"),
    "run_billing_granularity_s": Figure(0.1, "seconds (rounded up)", RUN_PRICING, "google"),
    "scheduler_per_job_month": Figure(0.10, "USD per job per month", SCHED_PRICING, "google",
                                      "3 jobs free per billing account"),
    "scheduler_free_jobs": Figure(3, "jobs per billing account", SCHED_PRICING, "google"),
}

QUOTAS: dict[str, Figure] = {
    "bq_interactive_queue": Figure(1000, "queued interactive queries per project per region", BQ_QUEUES, "google",
                                   "running concurrency is dynamic (the page's example: 202); beyond the queue, "
                                   "queries fail"),
    "bq_mutating_dml_running": Figure(2, "mutating DML running per table", BQ_QUOTAS +
                                      "#data-manipulation-language-statements", "google"),
    "bq_mutating_dml_queued": Figure(20, "mutating DML queued per table (further ones fail)", BQ_QUOTAS +
                                     "#data-manipulation-language-statements", "google"),
    "bq_load_jobs_day": Figure(100_000, "load jobs per project per day", BQ_QUOTAS + "#load_jobs", "google"),
    "bq_tables_per_query": Figure(1000, "tables referenced per query", BQ_QUOTAS, "google-old",
                                  "05d660d's consolidate.py cites it and chunks at 500"),
    "bq_write_connections": Figure(10_000, "Storage Write API concurrent connections, US multi-region",
                                   BQ_QUOTAS + "#write-api-limits", "unverified"),
    "bq_write_throughput_bps": Figure(3e9, "Storage Write API bytes/s per project, US multi-region",
                                      BQ_QUOTAS + "#write-api-limits", "unverified"),
    "fs_doc_writes_per_s": Figure(1.0, "sustained writes per second per document", FS_BEST, "google"),
    "fs_db_writes_per_s": Figure(10_000, "writes per second per database", FS_QUOTAS, "google-old",
                                 "a 2019 copy of the quotas page; the current page lists no such limit"),
    "ps_publish_bps": Figure(200e6, "publisher bytes/s per large region (us-central1)", PS_QUOTAS, "google",
                             "12,000,000 kB per minute"),
}


def price(key: str) -> float:
    return PRICES[key].value


def quota(key: str) -> float:
    return QUOTAS[key].value
