"""Drift over a window of logged traffic, each version against its own reference profile.

During a split (canary, A/B, bandit) an environment serves several versions at once; each
may have been trained on other data and so have another reference profile. Comparing the
mixed rows of all versions with one version's profile would call the mix "drift". So the
window's rows are read per version (:func:`~mlops.monitoring.window.read_windows_by_version`)
and every version with at least ``min_rows`` rows is tested against its own ``features`` and
``outputs`` profiles. The alert values of the window are the worst version's.

Besides the alert values, :meth:`WindowDrift.feature_observations` names the features that
drifted (metric ``drift:<feature>``, value 1.0), so that a retraining trigger on named
features can read them back from the snapshots. Only drifted features are recorded (a
window with no drift costs no row), at most :data:`MAX_FEATURE_SNAPSHOTS` of them; a
feature not recorded in a window that has a ``drift_share`` did not drift there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import MonitoringError, RegistryError
from mlops.monitoring.alerts import Observation
from mlops.monitoring.window import LoggedWindow, read_window, read_windows_by_version
from mlops.registry.service import ModelRegistry
from mlops.stats.drift import DriftReport, detect_drift

__all__ = ["FEATURE_DRIFT_PREFIX", "MAX_FEATURE_SNAPSHOTS", "MIN_DRIFT_ROWS", "VersionDrift",
           "WindowDrift", "feature_drift_metric", "outputs_frame", "window_drift"]

#: Smallest window sample of a version a drift test runs on (fewer rows: no verdict).
MIN_DRIFT_ROWS = 100
#: Snapshot metric of one drifted feature: ``drift:<feature>``.
FEATURE_DRIFT_PREFIX = "drift:"
#: The most drifted features recorded per window (the strongest effects first).
MAX_FEATURE_SNAPSHOTS = 100
_METRIC_LENGTH = 128  # the snapshot table's metric column


def feature_drift_metric(feature: str) -> str:
    """The snapshot metric that records that ``feature`` drifted in a window (names longer
    than the metric column are cut, the same way for the writer and every reader)."""
    return (FEATURE_DRIFT_PREFIX + feature)[:_METRIC_LENGTH]


@dataclass(frozen=True)
class VersionDrift:
    """One version's rows of the window against that version's reference profiles."""

    version: str
    n_rows: int                      # rows tested (the newest, up to the read limit)
    n_total: int                     # successful rows of the version in the window
    data: DriftReport | None         # inputs vs the features profile
    outputs: DriftReport | None      # predictions vs the outputs profile
    skipped: str | None = None       # why a test did not run

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "n_rows": self.n_rows, "n_total": self.n_total,
                "data": self.data.to_dict() if self.data else None,
                "outputs": self.outputs.to_dict() if self.outputs else None,
                "skipped": self.skipped}


@dataclass(frozen=True)
class WindowDrift:
    """Drift per version over one window of one environment."""

    start: datetime
    end: datetime
    environment: str | None
    versions: dict[str, VersionDrift] = field(default_factory=dict)

    def worst(self, version: str | None = None) -> VersionDrift | None:
        """``version``'s result when it was tested, else the version whose inputs drifted
        most (then whose outputs drifted), else ``None``."""
        if version is not None and version in self.versions:
            return self.versions[version]
        tested = [v for v in self.versions.values() if v.data or v.outputs]
        return max(tested, key=lambda v: (v.data.share_drifted if v.data else -1.0,
                                          bool(v.outputs and v.outputs.n_drifted)),
                   default=None)

    def observations(self) -> dict[str, Observation]:
        """The alert values: over the tested versions, the worst of each (``n`` = the rows
        of the version it comes from)."""
        out: dict[str, Observation] = {}

        def keep(name: str, value: float, n: int) -> None:
            if math.isfinite(value) and (name not in out or value > (out[name].value or 0)):
                out[name] = Observation(value, n)

        for v in self.versions.values():
            if v.data is not None:
                feats = v.data.features
                keep("drift_share", v.data.share_drifted, v.n_rows)
                keep("drift_max_effect", max(
                    (f.effect_size for f in feats
                     if f.effect_size is not None and math.isfinite(f.effect_size)),
                    default=0.0), v.n_rows)
                keep("missing_rate_excess", max(
                    (f.missing_rate_current - f.missing_rate_reference for f in feats),
                    default=0.0), v.n_rows)
                keep("missing_rate_max", max((f.missing_rate_current for f in feats),
                                             default=0.0), v.n_rows)
            if v.outputs is not None:
                keep("prediction_drift", float(v.outputs.n_drifted > 0), v.n_rows)
        return out

    def feature_observations(self, limit: int = MAX_FEATURE_SNAPSHOTS
                             ) -> dict[str, Observation]:
        """``drift:<feature>`` = 1.0 for each feature that drifted in a tested version (the
        ``limit`` with the largest effect sizes; ``n`` = the rows of that version)."""
        best: dict[str, tuple[float, int]] = {}
        for v in self.versions.values():
            for f in v.data.features if v.data is not None else ():
                if not f.drifted:
                    continue
                effect = f.effect_size if math.isfinite(f.effect_size) else 0.0
                if f.feature not in best or effect > best[f.feature][0]:
                    best[f.feature] = (effect, v.n_rows)
        strongest = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return {feature_drift_metric(name): Observation(1.0, n)
                for name, (_, n) in strongest}

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "environment": self.environment,
                "versions": {k: v.to_dict() for k, v in self.versions.items()}}


def outputs_frame(predictions: Iterable[Any], kind: str) -> pd.DataFrame:
    """Predictions as the one-column frame an ``outputs`` profile of ``kind`` tests."""
    values = np.asarray(list(predictions), dtype=object).ravel()
    if kind == "numeric":
        return pd.DataFrame({"prediction": pd.to_numeric(pd.Series(values), errors="coerce")})
    return pd.DataFrame({"prediction": pd.Series(values).astype(str)})


def _version_drift(registry: ModelRegistry, model: str, version: str, logged: LoggedWindow,
                   min_rows: int, fdr: float) -> VersionDrift:
    n = len(logged.inputs)
    if logged.n_total < min_rows:
        return VersionDrift(version, n, logged.n_total, None, None,
                            f"{logged.n_total} rows, fewer than {min_rows}")
    reasons = []
    data = outputs = None
    try:
        profile = registry.reference_profile(model, version, "features")
        if len(logged.inputs.columns):
            data = detect_drift(profile, logged.inputs, fdr=fdr)
        else:
            reasons.append("no logged inputs")
    except (MonitoringError, RegistryError) as exc:
        reasons.append(exc.message)
    try:
        out_profile = registry.reference_profile(model, version, "outputs")
        column = out_profile.columns["prediction"]
        outputs = detect_drift(out_profile, outputs_frame(logged.predictions, column.kind),
                               fdr=fdr)
    except (MonitoringError, RegistryError, KeyError) as exc:
        reasons.append(getattr(exc, "message", str(exc)))
    return VersionDrift(version, n, logged.n_total, data, outputs,
                        "; ".join(reasons) or None)


def window_drift(registry: ModelRegistry, model: str, *, start: datetime, end: datetime,
                 environment: str | None = None, version: str | None = None,
                 min_rows: int = MIN_DRIFT_ROWS, fdr: float = 0.05,
                 limit: int = 50_000) -> WindowDrift:
    """Drift of the window ``[start, end)`` of ``environment``, every version (or only
    ``version``) against its own profiles. A log that cannot be read raises
    :class:`MonitoringError`."""
    uri = registry.context.settings.artifacts_uri
    if version is not None:
        windows = {version: read_window(uri, model, start=start, end=end, version=version,
                                        environment=environment, limit=limit)}
    else:
        windows = read_windows_by_version(uri, model, start=start, end=end,
                                          environment=environment, limit=limit)
    return WindowDrift(start, end, environment, {
        v: _version_drift(registry, model, v, w, min_rows, fdr)
        for v, w in windows.items() if w.n_total or version is not None})
