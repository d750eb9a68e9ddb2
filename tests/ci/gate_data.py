"""Crafted models and contexts for the quality-gate tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.ci.gates.base import GateContext
from mlops.flavors.base import LoadedModel

__all__ = ["fixed_model", "flip", "make_ctx", "rule_model"]


def fixed_model(pred: Sequence[Any] | np.ndarray, proba: np.ndarray | None = None,
                classes: list[Any] | None = None) -> LoadedModel:
    """A model that returns exactly ``pred`` (and ``proba``) for the test rows."""
    pred_arr = np.asarray(pred)
    proba_fn: Callable[[Any], np.ndarray] | None = None
    if proba is not None:
        proba_arr = np.asarray(proba)

        def proba_fn(_x: Any) -> np.ndarray:
            return proba_arr

    return LoadedModel(flavor="fixed", raw=None, predict_fn=lambda _x: pred_arr,
                       proba_fn=proba_fn, classes=classes)


def rule_model(fn: Callable[[pd.DataFrame], np.ndarray], columns: list[str]) -> LoadedModel:
    """A model computed from its input frame (reacts to shuffled columns)."""
    return LoadedModel(flavor="rule", raw=None, predict_fn=lambda x: np.asarray(fn(x)),
                       input_columns=columns, wants_frame=True)


def flip(y: np.ndarray, rows: np.ndarray | Sequence[int], labels: Sequence[Any] = (0, 1)
         ) -> np.ndarray:
    """``y`` with the given rows changed to the other binary label (wrong predictions)."""
    out = np.asarray(y).copy()
    a, b = labels
    idx = np.asarray(rows, dtype=int)
    out[idx] = np.where(out[idx] == a, b, a)
    return out


def make_ctx(model: LoadedModel, frame: pd.DataFrame, *, label: str | None = "y",
             features: list[str] | None = None, task: str = "classification",
             champion: LoadedModel | None = None, champion_version: str | None = None,
             sensitive: Sequence[str] = (), output_dir: Path | None = None, seed: int = 0,
             name: str = "churn") -> GateContext:
    """A gate context over ``frame`` (``label`` column as ``y``, the rest as features)."""
    cols = features if features is not None else [c for c in frame.columns if c != label]
    return GateContext(
        model=model, model_name=name, artifact_path=Path("model.pkl"), frame=frame,
        X=frame[cols], y=frame[label] if label is not None else None, task=task,
        version="2.0.0", champion=champion, champion_version=champion_version,
        sensitive=list(sensitive), output_dir=output_dir, seed=seed)
