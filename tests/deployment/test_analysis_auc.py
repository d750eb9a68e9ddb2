"""ROC-AUC per arm in the step analysis, from logged class probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mlops.deployment.analysis import _auc


def _rows(n: int, seed: int, separation: float, with_proba: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    score = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(size=n))))
    return pd.DataFrame({"actual_num": y,
                         "proba": [[1 - s, s] for s in score] if with_proba else [None] * n})


def test_auc_per_arm_equals_sklearn() -> None:
    stable, candidate = _rows(400, 1, 1.5), _rows(400, 2, 0.2)
    out = _auc(stable, candidate)
    expected = roc_auc_score(stable.actual_num, [p[1] for p in stable.proba])
    assert out["auc_stable"] == expected
    assert out["auc_candidate"] < out["auc_stable"]


def test_auc_left_out_without_probabilities_or_with_one_class() -> None:
    one_class = _rows(50, 3, 1.0)
    one_class["actual_num"] = 1.0
    assert _auc(_rows(50, 4, 1.0, with_proba=False), one_class) == {}
