"""Compiling a loaded model to ONNX, and checking that the compiled graph is equal to it.

Pure: a :class:`~mlops.flavors.base.LoadedModel` in, ONNX bytes out (:func:`to_onnx`); two
predictors and the rows to compare them on in, an :class:`Equality` out
(:func:`check_equal`). No store, no clock. The registry stores and audits the result
(:mod:`mlops.registry.compile`); the gateway loads it with :func:`load_compiled`.

Converters: scikit-learn estimators and pipelines with ``skl2onnx``, XGBoost and LightGBM
with ``onnxmltools`` (the ``mlops[compile]`` extra). Classifiers are written without
ZipMap, so probabilities come out as one ``[N, classes]`` tensor; the graph has one
``[N, features]`` input, which is what the gateway feeds.

Precision, honestly:

* tree ensembles become ONNX ``TreeEnsemble*`` operators, which onnxruntime evaluates
  with float32 thresholds and leaf values (skl2onnx 1.20 and onnxmltools write no float64
  trees that onnxruntime runs). Those graphs take a **float32** input, which is what
  scikit-learn and XGBoost walk trees with too (skl2onnx moves each threshold so that a
  float32 value takes the branch scikit-learn takes): branches agree, and the sum of the
  leaf values is rounded to float32. Measured: 2e-7..8e-7 absolute on the probabilities of
  a 200-tree forest and of 100-round XGBoost/LightGBM, 5e-6 on gradient-boosting
  regression values of magnitude 10. LightGBM walks trees in float64: a value within a
  float32 rounding of a threshold can take the other branch, which the check catches on
  the rows it is given. Default tolerance: ``rtol 1e-5, atol 1e-5`` (about ten times what
  was measured; a hundred float32 steps of a probability).
* every other graph (linear models, scalers, pipelines of them) takes a **float64**
  input and computes in float64: differences are around 1e-16. Default tolerance:
  ``rtol 1e-7, atol 1e-9``.

The check: identical labels on every row for a classifier, and every probability or
regression value within ``|compiled - original| <= atol + rtol * |original|``. Regression
values near zero that are sums of large leaf values can exceed the float32 default: then
compiling is refused with the largest difference and its row, and the caller may pass a
wider ``atol``; the tolerance used is recorded with the runtime.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.errors import CompileRefused, MissingDependency
from mlops.flavors.base import LoadedModel
from mlops.flavors.onnx import load_onnx

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: CLI commands start sooner

__all__ = [
    "MIN_ROWS",
    "RUNTIMES",
    "TOLERANCE",
    "Compiled",
    "Equality",
    "check_equal",
    "check_rows",
    "load_compiled",
    "to_onnx",
]

#: The runtimes a version can be compiled to.
RUNTIMES = ("onnx",)
#: Default (rtol, atol) by the compiled graph's input (and arithmetic) precision.
TOLERANCE = {"float64": (1e-7, 1e-9), "float32": (1e-5, 1e-5)}
#: Fewer rows than this prove too little about a compiled model.
MIN_ROWS = 20
#: ONNX opsets written: 15 (the highest onnxmltools 1.16 writes) and ai.onnx.ml 3; both
#: load in every onnxruntime since 1.11.
TARGET_OPSET = 15
_ML_OPSET = 3
_FLAVORS = ("sklearn", "xgboost", "lightgbm")


@dataclass(frozen=True)
class Compiled:
    """An ONNX graph of a model: its bytes, the input precision, and who converted it."""

    data: bytes
    input_dtype: str  # "float32" (tree ensembles) or "float64"
    converter: dict[str, str]  # package -> version, onnxruntime included
    opset: int = TARGET_OPSET


@dataclass(frozen=True)
class Equality:
    """How a compiled model's outputs compare with the original's on the checked rows."""

    rows_checked: int
    rtol: float
    atol: float
    classifier: bool
    label_mismatches: int = 0
    first_label_mismatch: tuple[int, Any, Any] | None = None  # row, original, compiled
    max_abs_diff: float = 0.0
    max_diff_row: int | None = None
    max_diff_output: str | None = None  # "predict" or "predict_proba[:, k]"
    max_diff_values: tuple[float, float] | None = None  # original, compiled
    outside: int = 0  # values beyond the tolerance
    sources: dict[str, int] = field(default_factory=dict)  # where the rows came from

    @property
    def passed(self) -> bool:
        return self.label_mismatches == 0 and self.outside == 0

    def row_label(self, row: int | None) -> str:
        """``row index 3 of the data`` (from 0) for a row of the checked rows."""
        if row is None:
            return "-"
        start = 0
        for source, count in self.sources.items():
            if row < start + count:
                return f"row index {row - start} of the {source.replace('_', ' ')}"
            start += count
        return f"row index {row}"

    def payload(self) -> dict[str, Any]:
        """What the runtime record and the audit event keep."""
        return {"passed": self.passed, "rows_checked": self.rows_checked,
                "checked": dict(self.sources),
                "tolerance": {"rtol": self.rtol, "atol": self.atol},
                "labels_identical": self.label_mismatches == 0 if self.classifier else None,
                "label_mismatches": self.label_mismatches,
                "max_abs_diff": self.max_abs_diff,
                "max_diff_at": self.row_label(self.max_diff_row)
                if self.max_diff_row is not None else None,
                "values_outside_tolerance": self.outside}

    def refusal(self, what: str) -> CompileRefused:
        """The error for a check that failed, naming the largest difference and its row."""
        problems = []
        if self.label_mismatches:
            row, orig, comp = self.first_label_mismatch or (None, None, None)
            problems.append(f"{self.label_mismatches} of {self.rows_checked} labels differ "
                            f"(first at {self.row_label(row)}: original {orig!r}, compiled "
                            f"{comp!r})")
        if self.outside:
            orig_v, comp_v = self.max_diff_values or (float("nan"), float("nan"))
            problems.append(
                f"{self.outside} value(s) differ by more than atol {self.atol:g} + rtol "
                f"{self.rtol:g} x |original|; the largest difference is "
                f"{self.max_abs_diff:.3g} at {self.row_label(self.max_diff_row)} "
                f"({self.max_diff_output}: original {orig_v!r}, compiled {comp_v!r})")
        return CompileRefused(
            f"{what} converts inexactly, so it was not compiled: " + "; ".join(problems)
            + f" (checked on {self.rows_checked} rows). Nothing was stored.",
            fix="Keep serving the original runtime; or, if a difference of this size does "
                "not matter for this model, compile again with a wider --atol/--rtol (the "
                "tolerance is recorded with the runtime).")


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"Compiling to ONNX needs {module.split('.')[0]}, which is not installed.",
            fix="pip install 'mlops[compile]'  (skl2onnx, onnxmltools, onnx)") from exc


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def to_onnx(model: LoadedModel, n_features: int) -> Compiled:
    """Convert a scikit-learn, XGBoost or LightGBM model to an ONNX graph with one
    ``[N, n_features]`` input; raises :class:`CompileRefused` for anything else or for a
    model the converter cannot handle."""
    if model.flavor not in _FLAVORS:
        raise CompileRefused(
            f"{model.flavor} models cannot be compiled to ONNX"
            + (" (it is ONNX already)." if model.flavor == "onnx" else "."),
            fix="Compile scikit-learn, XGBoost or LightGBM models.",
            model=model.name, version=model.version)
    _require("onnx")
    classifier = model.classes is not None or model.has_proba
    try:
        if model.flavor == "sklearn":
            onx, dtype, converter = _sklearn(model.raw, n_features, classifier)
        else:
            onx, dtype, converter = _booster(model.flavor, model.raw, n_features)
    except (CompileRefused, MissingDependency):
        raise
    except Exception as exc:  # the converters raise many types for unsupported models
        raise CompileRefused(
            f"{_converter_name(model.flavor)} cannot convert this {model.flavor} model "
            f"({type(model.raw).__name__}): {type(exc).__name__}: {str(exc)[:300]}",
            fix="Keep serving the original runtime; the converter does not support it.",
            model=model.name, version=model.version) from exc
    _dynamic_batch(onx)
    converter.update(onnx=_version("onnx"), onnxruntime=_version("onnxruntime"))
    return Compiled(onx.SerializeToString(), dtype, converter)


def _converter_name(flavor: str) -> str:
    return "skl2onnx" if flavor == "sklearn" else "onnxmltools"


def _sklearn(raw: Any, n_features: int, classifier: bool) -> tuple[Any, str, dict[str, str]]:
    skl2onnx = _require("skl2onnx")
    types = _require("skl2onnx.common.data_types")
    options = {"zipmap": False} if classifier else None
    opset = {"": TARGET_OPSET, "ai.onnx.ml": _ML_OPSET}

    def convert(kind: Any) -> Any:
        return skl2onnx.convert_sklearn(raw, initial_types=[("input", kind([None, n_features]))],
                                        target_opset=opset, options=options)

    try:
        onx = convert(types.DoubleTensorType)
        dtype = "float32" if _has_trees(onx) else "float64"
    except Exception:  # some converters accept float32 input only
        dtype = "float32"
    if dtype == "float32":
        onx = convert(types.FloatTensorType)
    return onx, dtype, {"skl2onnx": skl2onnx.__version__, "scikit-learn": _version("scikit-learn")}


def _booster(flavor: str, raw: Any, n_features: int) -> tuple[Any, str, dict[str, str]]:
    onnxmltools = _require("onnxmltools")
    types = _require("onnxmltools.convert.common.data_types")
    initial = [("input", types.FloatTensorType([None, n_features]))]
    if flavor == "xgboost":
        # the converter reads feature indices from the tree dump (f0, f1, ...): drop the
        # names of a copy, the model's inputs are positional in the graph anyway
        raw = copy.deepcopy(raw)
        booster = raw.get_booster() if hasattr(raw, "get_booster") else raw
        booster.feature_names = None
        onx = onnxmltools.convert_xgboost(raw, initial_types=initial, target_opset=TARGET_OPSET)
    else:
        onx = onnxmltools.convert_lightgbm(raw, initial_types=initial, zipmap=False,
                                           target_opset=TARGET_OPSET)
    library = _require(flavor)
    return onx, "float32", {"onnxmltools": onnxmltools.__version__,
                            flavor: str(getattr(library, "__version__", "unknown"))}


def _has_trees(onx: Any) -> bool:
    return any(node.op_type.startswith("TreeEnsemble") for node in onx.graph.node)


def _dynamic_batch(onx: Any) -> None:
    """Declare every output's first dimension as the batch (some converters write 1)."""
    for output in onx.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


def load_compiled(data: bytes, *, classes: list[Any] | None, has_proba: bool,
                  input_columns: list[str] | None) -> LoadedModel:
    """A compiled graph as a predictor with the original's interface: the same classes,
    columns, and ``predict_proba`` only when the original has one."""
    model = load_onnx(data)
    if not has_proba:
        model.proba_fn = None
    model.classes = list(classes) if classes is not None else None
    model.input_columns = list(input_columns) if input_columns else None
    model.info["runtime"] = "onnx"
    return model


def check_rows(frames: dict[str, pd.DataFrame], columns: list[str] | None, what: str,
               fix: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows to check on: each frame's input columns, stacked; at least
    :data:`MIN_ROWS`, all numeric (the compiled graph takes one numeric tensor)."""
    import pandas as pd

    parts: list[pd.DataFrame] = []
    sources: dict[str, int] = {}
    for source, frame in frames.items():
        if frame is None or len(frame) == 0:
            continue
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise CompileRefused(
                    f"The {source.replace('_', ' ')} lacks the input column(s) {missing} "
                    f"of {what}.", fix=f"Give rows with the columns {columns}.")
            frame = frame[columns]
        parts.append(frame.reset_index(drop=True))
        sources[source] = len(frame)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(rows) < MIN_ROWS:
        held = ", ".join(f"{n} in the {s.replace('_', ' ')}" for s, n in sources.items())
        raise CompileRefused(
            f"Only {len(rows)} row(s) to check the compiled runtime of {what} on"
            f"{' (' + held + ')' if held else ''}; at least {MIN_ROWS} are needed to call "
            "it equal.",
            fix=fix or "Pass held-out rows with the model's input columns: --data FILE "
                       "(data=DataFrame in Python).")
    text = [c for c in rows.columns if rows[c].dtype.kind not in "biuf"]
    if text:
        raise CompileRefused(
            f"Input column(s) {text[:5]} of {what} are not numeric; a compiled graph takes "
            "one numeric [rows, features] tensor.",
            fix="Keep serving the original runtime, or encode the columns in the model.")
    return rows, sources


def check_equal(original: LoadedModel, compiled: LoadedModel, rows: pd.DataFrame, *,
                rtol: float | None = None, atol: float | None = None,
                precision: str = "float64", sources: dict[str, int] | None = None
                ) -> Equality:
    """Compare the two on ``rows``: labels (classifiers) must be identical, and
    probabilities (classifiers) or predictions (regressors) within the tolerance
    (:data:`TOLERANCE` of the graph's ``precision`` unless given)."""
    rtol = TOLERANCE[precision][0] if rtol is None else float(rtol)
    atol = TOLERANCE[precision][1] if atol is None else float(atol)
    if not (0 <= rtol < math.inf and 0 <= atol < math.inf):
        raise CompileRefused(f"Tolerances must be finite numbers >= 0, got rtol {rtol} and "
                             f"atol {atol}.", fix="Pass e.g. --rtol 1e-5 --atol 1e-6.")
    classifier = original.classes is not None or original.has_proba
    n = len(rows)
    base: dict[str, Any] = {"rows_checked": n, "rtol": rtol, "atol": atol,
                            "classifier": classifier, "sources": dict(sources or {"rows": n})}
    want = np.asarray(original.predict(rows))
    got = np.asarray(compiled.predict(rows))
    if want.shape[0] != got.shape[0]:
        raise CompileRefused(
            f"The compiled model answered {got.shape[0]} rows for {want.shape[0]}.",
            fix="Keep serving the original runtime.")
    if classifier:
        mismatch = [i for i, (a, b) in enumerate(zip(want.tolist(), got.tolist(), strict=True))
                    if a != b]
        if mismatch:
            i = mismatch[0]
            base.update(label_mismatches=len(mismatch),
                        first_label_mismatch=(i, want[i].item() if hasattr(want[i], "item")
                                              else want[i],
                                              got[i].item() if hasattr(got[i], "item")
                                              else got[i]))
        if not original.has_proba:
            return Equality(**base)
        want, got = (np.asarray(original.predict_proba(rows), dtype=np.float64),
                     np.asarray(compiled.predict_proba(rows), dtype=np.float64))
        output = "predict_proba"
    else:
        want, got = want.astype(np.float64), got.astype(np.float64)
        output = "predict"
    if want.shape != got.shape:
        raise CompileRefused(
            f"The compiled model's {output} has shape {list(got.shape)}, the original's "
            f"{list(want.shape)}.", fix="Keep serving the original runtime.")
    both_nan = np.isnan(want) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.abs(got - want))
    diff = np.where(np.isnan(diff), np.inf, diff)
    allowed = atol + rtol * np.abs(np.nan_to_num(want))
    outside = int(np.count_nonzero(diff > allowed))
    if diff.size:
        flat = int(np.argmax(diff))
        index = np.unravel_index(flat, diff.shape)
        row = int(index[0])
        label = output if diff.ndim == 1 else f"{output}[:, {int(index[1])}]"
        base.update(max_abs_diff=float(diff[index]), max_diff_row=row, max_diff_output=label,
                    max_diff_values=(float(want[index]), float(got[index])))
    return Equality(outside=outside, **base)
