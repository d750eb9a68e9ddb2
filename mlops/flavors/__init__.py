"""Model flavors: one uniform predictor over skops/pickle scikit-learn, ONNX, XGBoost,
LightGBM and any object with ``predict``; plus the model-file safety machinery: the exact
allow list of importable globals (:mod:`~mlops.flavors.allowlist`), enforced by the static
pickle scanner and the skops node check before loading, and by the restricted unpicklers
and state checks while loading; and the rules on what allowed objects may *hold*
(:mod:`~mlops.flavors.graph_policy`: no methods shadowed by state, only value functions
as stored callables, known method names, no file input, estimators in estimator slots),
checked on every loaded object and, where literal, by the scans."""

from __future__ import annotations

from mlops.flavors.base import LoadedModel, to_frame
from mlops.flavors.estimator import wrap_estimator
from mlops.flavors.files import FORMATS, SafetyReport, detect_format, load_bytes, safety_check
from mlops.flavors.pickle_scan import ScanResult, scan_pickle_bytes, scan_pickle_file

__all__ = [
    "FORMATS",
    "LoadedModel",
    "SafetyReport",
    "ScanResult",
    "detect_format",
    "load_bytes",
    "safety_check",
    "scan_pickle_bytes",
    "scan_pickle_file",
    "to_frame",
    "wrap_estimator",
]
