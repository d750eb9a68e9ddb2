"""ROC-AUC per arm in the step analysis, from logged class probabilities, kept as
class-conditional histograms instead of the rows."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from mlops.deployment.sketches import ScoreHistogram


def _scores(n: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(size=n))))
    return y, score


def test_auc_from_the_histogram_equals_sklearn() -> None:
    y, score = _scores(400, 1, 1.5)
    sketch = ScoreHistogram()
    half = len(y) // 2
    sketch.add(score[:half], y[:half] == 1)  # two ticks' worth of rows
    sketch.add(score[half:], y[half:] == 1)
    assert abs(sketch.auc() - roc_auc_score(y, score)) < 1e-3  # type: ignore[operator]


def test_auc_is_none_with_one_class() -> None:
    sketch = ScoreHistogram()
    sketch.add([0.2, 0.9], [True, True])
    assert sketch.auc() is None
