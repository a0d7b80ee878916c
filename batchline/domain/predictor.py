"""The pluggable predictor: turns one player's context into result rows.

A deterministic synthetic predictor ships so the pipeline runs end to end anywhere; users point
BATCHLINE_PREDICTOR at `module:attribute` of their own object with the same `predict` method.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import os
from dataclasses import dataclass
from typing import Protocol

from batchline.domain.schema import PREDICTION_SYSTEMS

ENV_PREDICTOR = "BATCHLINE_PREDICTOR"


@dataclass(frozen=True)
class PlayerContext:
    game_date: dt.date
    player_lookup: str
    game_id: str


class Predictor(Protocol):
    def predict(self, ctx: PlayerContext) -> list[dict]:
        """Rows with the main table's prediction columns (system_id, prop_type, predicted_value,
        confidence, line_value, recommendation); ids and bookkeeping columns are added by the worker."""


def prediction_id(ctx: PlayerContext, system_id: str, prop_type: str) -> str:
    """Stable across re-runs of a date, so the MERGE updates instead of duplicating."""
    key = f"{ctx.game_date.isoformat()}|{ctx.player_lookup}|{ctx.game_id}|{system_id}|{prop_type}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class SyntheticPredictor:
    """Deterministic pseudo-predictions: one points prediction per system per player."""

    def predict(self, ctx: PlayerContext) -> list[dict]:
        rows = []
        for system in PREDICTION_SYSTEMS:
            h = hashlib.sha256(f"{ctx.game_date}|{ctx.player_lookup}|{system}".encode()).digest()
            line = 5.5 + (h[0] % 50)
            predicted = round(line + ((h[1] - 128) / 16.0), 2)
            confidence = round(0.5 + (h[2] / 255.0) * 0.45, 3)
            edge = predicted - line
            recommendation = "PASS" if abs(edge) < 1.0 or confidence < 0.55 else (
                "OVER" if edge > 0 else "UNDER")
            rows.append({
                "system_id": system,
                "prop_type": "points",
                "predicted_value": predicted,
                "confidence": confidence,
                "line_value": line,
                "recommendation": recommendation,
            })
        return rows


def load_predictor(spec: str | None = None) -> Predictor:
    spec = spec if spec is not None else os.environ.get(ENV_PREDICTOR, "")
    if not spec:
        return SyntheticPredictor()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{ENV_PREDICTOR} must be 'module:attribute', got {spec!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    return obj() if isinstance(obj, type) else obj
