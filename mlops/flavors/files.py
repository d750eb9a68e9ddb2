"""Recognise a model file's format and load it safely into a :class:`LoadedModel`.

Formats: skops (preferred for scikit-learn), ONNX, XGBoost JSON/UBJSON, LightGBM text, and
pickle/joblib. Pickle, joblib and skops files are judged twice by the same exact allow list
(:mod:`mlops.flavors.allowlist`): statically before loading (:func:`safety_check`, see
:mod:`mlops.flavors.pickle_scan` and :mod:`mlops.flavors.skops_policy`), and while loading
(:mod:`mlops.flavors.restricted_unpickler`; skops with ``trusted=`` exactly the file's
allow-listed types), and the loaded object must satisfy the rules on what allowed objects
may hold (:mod:`mlops.flavors.graph_policy`; its top object must be an allow-listed
estimator). ``trust=True`` is the audited escape hatch: the caller records the
decision first, and the file is then loaded with the library's normal loader.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from mlops.errors import FlavorError, UnknownFlavor, UnsafeModel
from mlops.flavors.base import LoadedModel
from mlops.flavors.boosters import load_lightgbm, load_xgboost
from mlops.flavors.estimator import wrap_estimator
from mlops.flavors.graph_policy import check_model_root
from mlops.flavors.onnx import load_onnx
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.restricted_unpickler import load_restricted
from mlops.flavors.skops_policy import check_skops, load_skops

__all__ = [
    "FORMATS",
    "SafetyReport",
    "detect_format",
    "load_bytes",
    "load_skops_if_default_trusted",
    "safety_check",
    "unparseable",
]

#: The formats mlops reads, preferred first.
FORMATS = ("skops", "onnx", "xgboost", "lightgbm", "joblib", "pickle")

_PICKLE_EXT = {".pkl", ".pickle", ".joblib", ".jbl", ".sav"}
_COMPRESSED = (b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"ZF")


def detect_format(filename: str, data: bytes) -> str:
    """One of :data:`FORMATS`, by content first and file name second."""
    suffix = PurePath(filename).suffix.lower()
    head = data[:64]
    if head.startswith(b"PK") and _is_skops(data):
        return "skops"
    if suffix == ".skops":
        raise UnknownFlavor(f"{filename} has the .skops suffix but is not a skops archive.",
                            fix="Save it with skops.io.dump(model, path).", path=filename)
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return "lightgbm"
    if suffix in {".json", ".ubj"} and head.lstrip().startswith(b"{") and b"learner" in data[:4096]:
        return "xgboost"
    if suffix == ".onnx":
        return "onnx"
    if head[:1] == b"\x80" or suffix in _PICKLE_EXT or head.startswith(_COMPRESSED):
        if suffix == ".joblib" or head.startswith(_COMPRESSED) or b"joblib" in data[:2048]:
            return "joblib"
        return "pickle"
    if suffix in {".ubj", ".xgb", ".bst", ".model"}:
        return "xgboost"
    raise UnknownFlavor(
        f"Cannot tell what kind of model {filename} is.",
        fix="Use one of: .skops, .onnx, XGBoost .json/.ubj, LightGBM .txt, .pkl/.joblib.",
        path=filename,
    )


def _is_skops(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return "schema.json" in zf.namelist()
    except zipfile.BadZipFile:
        return False


@dataclass(frozen=True)
class SafetyReport:
    """What a load of this file would import, and what of that is not trusted."""

    format: str
    imports: tuple[str, ...]
    offending: tuple[str, ...]

    @property
    def safe(self) -> bool:
        return not self.offending


def safety_check(fmt: str, data: bytes) -> SafetyReport:
    """Scan pickle/joblib opcodes or skops nodes; other formats import no code.

    skops nodes are judged by the same allow list as pickle imports (every node, including
    those skops trusts by default), so a skops file cannot smuggle ``builtins.exec`` or
    ``operator.methodcaller`` into a pipeline step.
    """
    if fmt in {"pickle", "joblib"}:
        result = scan_pickle_bytes(data)
        return SafetyReport(fmt, tuple(result.imports), tuple(result.offending))
    if fmt == "skops":
        report = check_skops(data)
        return SafetyReport(fmt, report.types, report.offending)
    return SafetyReport(fmt, (), ())


def unparseable(report: SafetyReport) -> str | None:
    for problem in report.offending:
        if problem.startswith("<not a valid pickle stream"):
            return problem.strip("<>")
    return None


def load_bytes(data: bytes, filename: str, *, trust: bool = False, fmt: str | None = None,
               report: SafetyReport | None = None) -> tuple[LoadedModel, SafetyReport]:
    """Load a model file's bytes. Unsafe pickles/skops files raise :class:`UnsafeModel`
    unless ``trust`` is true; the caller must record that decision *before* calling this
    with ``trust=True`` (pass the ``report`` of :func:`safety_check` to avoid a rescan)."""
    fmt = fmt or detect_format(filename, data)
    if fmt == "skops" and report is None:
        fast = load_skops_if_default_trusted(data)
        if fast is not None:
            return fast, SafetyReport(fmt, (), ())
    report = report or safety_check(fmt, data)
    broken = unparseable(report)
    if broken:
        raise FlavorError(f"{filename} is not a readable {fmt} file ({broken}).",
                          fix="Check that the file is complete; save the model again.",
                          path=filename)
    if not report.safe and not trust:
        raise UnsafeModel(
            f"{filename} would import code that is not on the allow list: "
            f"{', '.join(report.offending)}.",
            offending=list(report.offending),
            fix="Save the model with skops or ONNX; if you wrote this file yourself and trust "
                "it, pass trust=True (recorded in the audit log).",
            path=filename,
        )
    if fmt == "onnx":
        model = load_onnx(data)
    elif fmt == "xgboost":
        model = load_xgboost(data)
    elif fmt == "lightgbm":
        model = load_lightgbm(data)
    else:
        # The library's own loader only for a file that needs the audited override; a file
        # that scans clean still goes through the restricted loaders.
        override = trust and not report.safe
        obj = load_skops(data, trust=override) if fmt == "skops" else \
            _unpickle(data, filename, trust=override)
        if not override:
            check_model_root(obj)
        model = wrap_estimator(obj)
    model.info.setdefault("format", fmt)
    return model, report


def _unpickle(data: bytes, filename: str, *, trust: bool) -> object:
    """The object of a pickle/joblib file: restricted unpickler, or joblib if trusted."""
    try:
        if trust:
            import joblib

            return joblib.load(io.BytesIO(data))
        return load_restricted(data)
    except FlavorError as exc:
        exc.context.setdefault("path", filename)
        raise
    except Exception as exc:
        raise FlavorError(f"Cannot unpickle {filename}: {type(exc).__name__}: {exc}.",
                          fix="Check the file and the library versions it was saved with.",
                          path=filename) from exc


def load_skops_if_default_trusted(data: bytes) -> LoadedModel | None:
    """Load a skops file whose every node is on the allow list (one check, one load);
    None when it holds anything the list does not allow (the caller then runs
    :func:`safety_check` and refuses it, or loads it with an audited ``trust=True``).

    Nothing skops trusts by default is trusted here unless the allow list has it too.
    """
    report = check_skops(data)
    if report.offending:
        return None
    obj = load_skops(data, report=report)
    check_model_root(obj)
    model = wrap_estimator(obj)
    model.info.setdefault("format", "skops")
    return model
