"""Mergeable running summaries: what a rollout keeps instead of its rows.

- :class:`Moments`: count, mean and sum of squared deviations (Chan et al.'s parallel
  update), enough for means, variances and the mSPRT of a difference in means;
- :class:`LatencySketch`: a log-bucketed histogram whose quantiles are within 0.5% of the
  exact value (relative), in a few kilobytes whatever the number of requests;
- :class:`ScoreHistogram`: class-conditional histograms of a probability on 10,000 bins,
  from which ROC-AUC follows exactly up to ties inside a bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["LatencySketch", "Moments", "ScoreHistogram"]

_GAMMA = 1.01  # bucket i holds (GAMMA^(i-1), GAMMA^i]: half-width 0.5% around its middle
_LOG_GAMMA = math.log(_GAMMA)
_AUC_BINS = 10_000


@dataclass
class Moments:
    """Running count, mean and M2 (sum of squared deviations) of a sample."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: npt.ArrayLike) -> None:
        x = np.asarray(values, dtype=float)
        if not x.size:
            return
        n_b, mean_b = int(x.size), float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); NaN below two values."""
        return self.m2 / (self.n - 1) if self.n >= 2 else math.nan

    @property
    def mean_square(self) -> float:
        """Mean of the squared values (for an RMSE)."""
        return self.mean ** 2 + (self.m2 / self.n if self.n else 0.0)


@dataclass
class LatencySketch:
    """Quantiles of non-negative values within 0.5% (relative)."""

    buckets: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    n: int = 0

    def add(self, values: npt.ArrayLike) -> None:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        if not x.size:
            return
        positive = x[x > 0]
        self.zeros += int(x.size - positive.size)
        self.n += int(x.size)
        index, counts = np.unique(np.ceil(np.log(positive) / _LOG_GAMMA).astype(np.int64),
                                  return_counts=True)
        for i, c in zip(index.tolist(), counts.tolist(), strict=True):
            self.buckets[i] = self.buckets.get(i, 0) + c

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 for an empty sketch)."""
        if not self.n:
            return 0.0
        rank = q * (self.n - 1)  # as numpy's linear percentile: the value at this rank
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen > rank:
                return 2.0 * _GAMMA ** i / (1.0 + _GAMMA)  # middle of (GAMMA^(i-1), GAMMA^i]
        return _GAMMA ** max(self.buckets)


@dataclass
class ScoreHistogram:
    """Scores in [0, 1] of positive and negative examples, for ROC-AUC."""

    pos: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_AUC_BINS, np.int64))
    neg: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_AUC_BINS, np.int64))

    def add(self, scores: npt.ArrayLike, positive: npt.ArrayLike) -> None:
        s = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
        bins = np.minimum((s * _AUC_BINS).astype(np.int64), _AUC_BINS - 1)
        label = np.asarray(positive, dtype=bool)
        self.pos += np.bincount(bins[label], minlength=_AUC_BINS)
        self.neg += np.bincount(bins[~label], minlength=_AUC_BINS)

    def auc(self) -> float | None:
        """P(score of a positive > score of a negative), ties counted half; None without
        both classes."""
        p, n = int(self.pos.sum()), int(self.neg.sum())
        if not p or not n:
            return None
        below = np.cumsum(self.neg) - self.neg  # negatives in lower bins
        wins = float((self.pos * below).sum()) + 0.5 * float((self.pos * self.neg).sum())
        return wins / (p * n)
