"""Univariate drift of a current window against a reference profile: the decision.

Each column present in both is scored by :mod:`mlops.stats.drift_univariate` (numeric: KS
p-value, Wasserstein effect in reference SDs; categorical: chi-square p-value, JS effect).

Decision: a column drifts when its Benjamini-Hochberg adjusted p-value (over all tested
columns) is ``<= fdr`` **and** its effect size is ``>= min_effect`` (defaults: 0.1 reference
SDs for numeric, JS distance 0.1 for categorical). BH keeps the expected share of false
alarms among flagged columns at ``fdr``; the floor keeps huge windows from flagging shifts
too small to matter (at 1M rows a 0.01-SD shift has a tiny p-value). The floor only removes
flags, so the FDR guarantee stands.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlops.stats._checks import check_alpha, check_probability, fail
from mlops.stats.drift_univariate import (
    KS_METHODS,
    KSMethod,
    Scores,
    categorical_scores,
    numeric_scores,
)
from mlops.stats.multiple import benjamini_hochberg
from mlops.stats.profile import (
    NumericProfile,
    ReferenceProfile,
    as_columns,
    build_profile,
)

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_MIN_EFFECT",
    "EFFECT_METRICS",
    "METHODS",
    "DriftReport",
    "FeatureDrift",
    "detect_drift",
    "detect_drift_frames",
]

#: Scores ``detect_drift`` can compute; the p-value test and the effect metric always run.
METHODS = ("ks", "psi", "wasserstein", "js", "energy", "chi2")
DEFAULT_METHODS = ("ks", "psi", "wasserstein", "js", "chi2")
#: Effect-size floor per column kind (numeric: reference SDs; categorical: JS distance).
DEFAULT_MIN_EFFECT = {"numeric": 0.1, "categorical": 0.1}
EFFECT_METRICS = {"numeric": "wasserstein_norm", "categorical": "js"}
#: Severity of a drifted column: (lower bound of "medium", lower bound of "high").
SEVERITY_BANDS = {"numeric": (0.25, 0.5), "categorical": (0.2, 0.3)}
_THREAD_MIN_CELLS = 200_000  # below this many current values, threads cost more than they save


# ---------------------------------------------------------------------- detect_drift
@dataclass(frozen=True)
class FeatureDrift:
    """Drift verdict and scores of one column (``p_value`` NaN: column not testable)."""

    feature: str
    kind: str
    method: str
    statistic: float
    p_value: float
    p_adjusted: float
    effect_size: float
    effect_metric: str
    drifted: bool
    severity: str
    n_reference: int
    n_current: int
    missing_rate_reference: float
    missing_rate_current: float
    scores: dict[str, float] = field(default_factory=dict)
    unseen_categories: tuple[str, ...] = ()
    note: str = ""

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become ``None``)."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift verdicts with BH control at ``fdr`` and the effect floors."""

    features: tuple[FeatureDrift, ...]
    fdr: float
    min_effect: dict[str, float]
    dataset_share: float
    n_features: int
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    missing_columns: tuple[str, ...]
    extra_columns: tuple[str, ...]
    n_current_rows: int

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        fail(f"No feature {name!r} in this report.", "pick one of report.features.",
             feature=name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become ``None``)."""
        out = _jsonable({k: v for k, v in asdict(self).items() if k != "features"})
        out["features"] = [f.to_dict() for f in self.features]
        out["drifted_features"] = list(self.drifted_features)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value



def _floors(min_effect: float | Mapping[str, float] | None) -> dict[str, float]:
    floors = dict(DEFAULT_MIN_EFFECT)
    if min_effect is None:
        return floors
    given = min_effect if isinstance(min_effect, Mapping) else dict.fromkeys(floors, min_effect)
    for kind, value in given.items():
        if kind not in floors:
            fail(f"min_effect has an unknown column kind {kind!r}.",
                 "use the keys 'numeric' and/or 'categorical'.")
        v = float(value)
        if not math.isfinite(v) or v < 0:
            fail(f"min_effect[{kind!r}]={value!r} must be a finite number >= 0.",
                 "use 0 to decide on the p-value alone, or e.g. 0.1.")
        floors[kind] = v
    return floors


def _methods(methods: Collection[str] | None) -> frozenset[str]:
    if methods is None:
        return frozenset(DEFAULT_METHODS)
    if isinstance(methods, str):
        methods = (methods,)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        fail(f"methods has unknown names {unknown}.", f"choose from {METHODS}.")
    return frozenset(methods)


def _severity(kind: str, effect: float, drifted: bool) -> str:
    if not drifted:
        return "none"
    medium, high = SEVERITY_BANDS[kind]
    return "high" if effect >= high else "medium" if effect >= medium else "low"


def _n_threads(threads: int | None, n_columns: int, n_rows: int) -> int:
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            fail(f"threads={threads!r} must be a whole number >= 1.",
                 "use threads=None to choose automatically.")
        return min(threads, max(n_columns, 1))
    if n_columns < 2 or n_columns * n_rows < _THREAD_MIN_CELLS:
        return 1
    return min(n_columns, os.cpu_count() or 1)


def detect_drift(profile: ReferenceProfile, current: pd.DataFrame | Mapping[str, Any], *,
                 fdr: float = 0.05, min_effect: float | Mapping[str, float] | None = None,
                 methods: Collection[str] | None = None, threads: int | None = None,
                 dataset_share: float = 0.5, ks_method: KSMethod = "auto") -> DriftReport:
    """Test every profiled column of ``current`` for drift (see the module docstring).

    ``min_effect``: one floor for both kinds or ``{"numeric": ..., "categorical": ...}``.
    ``methods``: extra scores (``psi``, ``js``, ``energy``); the p-value test and the
    effect metric always run. ``dataset_drift`` is True when at least one column drifted
    and the drifted share is ``>= dataset_share`` (0.5, Evidently's rule; pass a tiny
    share to alarm on any drifted column). Columns missing from ``current`` are listed in
    ``missing_columns``, unprofiled ones in ``extra_columns``; neither is an error.
    """
    if not isinstance(profile, ReferenceProfile):
        fail(f"profile must be a ReferenceProfile, got {type(profile).__name__}.",
             "build one with mlops.stats.build_profile(reference_frame).")
    fdr = check_alpha(fdr, "fdr")
    floors = _floors(min_effect)
    wanted = _methods(methods)
    dataset_share = check_probability(dataset_share, "dataset_share")
    if ks_method not in KS_METHODS:
        fail(f"ks_method={ks_method!r} is not one of {KS_METHODS}.", "use 'auto'.")
    columns = as_columns(current, "current")
    n_rows = len(next(iter(columns.values())))
    common = [name for name in profile.columns if name in columns]
    tasks: list[Callable[[], Scores]] = []
    for name in common:
        col, values = profile.columns[name], columns[name]
        if isinstance(col, NumericProfile):
            tasks.append(partial(numeric_scores, col, values, wanted, ks_method))
        else:
            tasks.append(partial(categorical_scores, col, values, wanted))
    n_threads = _n_threads(threads, len(tasks), n_rows)
    if n_threads > 1:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            raw = list(pool.map(lambda task: task(), tasks))
    else:
        raw = [task() for task in tasks]
    tested = [i for i, r in enumerate(raw) if not math.isnan(r.p_value)]
    bh = benjamini_hochberg([raw[i].p_value for i in tested], fdr)
    adjusted = dict(zip(tested, bh.p_adjusted, strict=True))
    rejected = dict(zip(tested, bh.reject, strict=True))
    features = []
    for i, (name, r) in enumerate(zip(common, raw, strict=True)):
        drifted = rejected.get(i, False) and r.effect >= floors[r.kind]
        features.append(FeatureDrift(
            feature=name, kind=r.kind, method=r.method, statistic=r.statistic,
            p_value=r.p_value, p_adjusted=adjusted.get(i, float("nan")),
            effect_size=r.effect, effect_metric=EFFECT_METRICS[r.kind], drifted=drifted,
            severity=_severity(r.kind, r.effect, drifted), n_reference=r.n_reference,
            n_current=r.n_current, missing_rate_reference=r.missing_reference,
            missing_rate_current=r.missing_current, scores=r.scores,
            unseen_categories=r.unseen, note=r.note))
    n_drifted = sum(f.drifted for f in features)
    share = n_drifted / len(features) if features else 0.0
    return DriftReport(
        features=tuple(features), fdr=fdr, min_effect=floors, dataset_share=dataset_share,
        n_features=len(features), n_drifted=n_drifted, share_drifted=share,
        dataset_drift=n_drifted > 0 and share >= dataset_share,
        missing_columns=tuple(n for n in profile.columns if n not in columns),
        extra_columns=tuple(n for n in columns if n not in profile.columns),
        n_current_rows=n_rows)


def detect_drift_frames(reference: pd.DataFrame | Mapping[str, Any],
                        current: pd.DataFrame | Mapping[str, Any], *,
                        sample_cap: int = 100_000, n_bins: int = 10, seed: int = 0,
                        categorical: Collection[str] | None = None, **kwargs: Any
                        ) -> DriftReport:
    """``detect_drift(build_profile(reference, ...), current, **kwargs)`` in one call."""
    profile = build_profile(reference, sample_cap=sample_cap, n_bins=n_bins, seed=seed,
                            categorical=list(categorical) if categorical else None)
    return detect_drift(profile, current, **kwargs)
