"""Table schemas, defined once.

The Pulumi program creates the tables from these definitions, the local stack creates the emulator's
tables from them, each batch's staging table is created from the main table's *live* schema (F5), and the
consolidation MERGE names these columns explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery standard SQL type name
    mode: str = "NULLABLE"  # NULLABLE | REQUIRED
    description: str = ""

    def as_bigquery_json(self) -> dict:
        """The column in the REST API's TableFieldSchema form (also what pulumi-gcp wants)."""
        return {"name": self.name, "type": self.type, "mode": self.mode, "description": self.description}


MAIN_TABLE_COLUMNS: tuple[Column, ...] = (
    Column("prediction_id", "STRING", "REQUIRED", "Deterministic id of (game_date, player, game, system)."),
    Column("game_date", "DATE", "REQUIRED", "Date of the game the prediction is for."),
    Column("game_id", "STRING", "REQUIRED", "Game identifier from the context table."),
    Column("player_lookup", "STRING", "REQUIRED", "Normalised player key; one work item per player."),
    Column("system_id", "STRING", "REQUIRED", "Prediction system that produced the row."),
    Column("prop_type", "STRING", "REQUIRED", "Statistic predicted, e.g. points."),
    Column("predicted_value", "FLOAT64", "REQUIRED", "Predicted statistic."),
    Column("confidence", "FLOAT64", "REQUIRED", "Model confidence in [0, 1]."),
    Column("line_value", "FLOAT64", "NULLABLE", "Bookmaker line the recommendation is against."),
    Column("recommendation", "STRING", "REQUIRED", "OVER, UNDER or PASS."),
    Column("batch_id", "STRING", "REQUIRED", "Batch run that last wrote the row."),
    Column("created_at", "TIMESTAMP", "REQUIRED", "When the row was first merged."),
    Column("updated_at", "TIMESTAMP", "REQUIRED", "When the row was last merged."),
    Column("is_active", "BOOL", "REQUIRED", "False once superseded."),
)

# The MERGE matches on this: a re-run of a date updates the same rows instead of duplicating them.
MAIN_TABLE_KEY: tuple[str, ...] = ("prediction_id",)
# Columns the MERGE keeps from the existing row on update (set once, on insert).
MAIN_TABLE_INSERT_ONLY: tuple[str, ...] = ("created_at",)
MAIN_TABLE_PARTITION_FIELD = "game_date"
MAIN_TABLE_CLUSTER_FIELDS: tuple[str, ...] = ("player_lookup", "system_id")

CONTEXT_TABLE_COLUMNS: tuple[Column, ...] = (
    Column("game_date", "DATE", "REQUIRED", "Date of the game."),
    Column("player_lookup", "STRING", "REQUIRED", "Player expected to get predictions."),
    Column("game_id", "STRING", "REQUIRED", "Game the player plays in."),
    # NULLABLE so that adding it to an existing table is a compatible change; a start treats a date
    # whose rows carry no load time as stale (batchline/adapters/freshness.py), so the loader must fill it.
    Column("loaded_at", "TIMESTAMP", "NULLABLE", "When the upstream load wrote the row; a start refuses stale dates."),
)
CONTEXT_TABLE_PARTITION_FIELD = "game_date"

# The pinned manifests of MERGE attempts (batchline/adapters/manifests.py): which write of each item a MERGE
# merges, and which items are on the batch's schedule. In the main dataset (no default expiration; the
# coordinator and reconcile, which MERGE into the main table, may write it; operators may read it).
MANIFEST_TABLE = "batchline_manifests"
MANIFEST_TABLE_COLUMNS: tuple[Column, ...] = (
    Column("manifest_batch_id", "STRING", "REQUIRED", "Batch whose MERGE attempt pinned the row."),
    Column("manifest_pin", "STRING", "REQUIRED", "The pin (one MERGE attempt's manifest) the row is part of."),
    Column("manifest_kind", "STRING", "REQUIRED", "merge: an item's write to merge; scheduled: an item scheduled."),
    Column("manifest_item_id", "STRING", "REQUIRED", "The item (player)."),
    Column("manifest_write_id", "STRING", "NULLABLE", "The staged write to merge (merge rows only)."),
    Column("manifest_recovered", "BOOL", "NULLABLE", "Merged from a write no recorded completion names."),
    Column("pinned_at", "TIMESTAMP", "REQUIRED", "When the manifest was pinned."),
)
MANIFEST_TABLE_PARTITION_FIELD = "pinned_at"
MANIFEST_TABLE_CLUSTER_FIELDS: tuple[str, ...] = ("manifest_batch_id", "manifest_pin")
MANIFEST_RETENTION_DAYS = 400  # a batch's audit names what its MERGE merged for this long

PREDICTION_SYSTEMS: tuple[str, ...] = (
    "moving_average",
    "zone_matchup",
    "similarity",
    "xgboost_v1",
    "ensemble",
)


# What each prediction system predicts. An item's work is complete with exactly one row per configured
# (system, prop): batchline/domain/item_shape.py checks it on the worker, the completion, the consolidation's
# choice of write and the reports (ledger, audit, reconcile).
PREDICTION_PROPS: tuple[str, ...] = ("points",)


def main_column_names() -> list[str]:
    return [c.name for c in MAIN_TABLE_COLUMNS]
