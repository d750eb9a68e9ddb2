"""Security gate: rescan the artifact, check its SHA-256 and judge its file format.

The file's format is recognised from its content (:func:`mlops.flavors.files.detect_format`)
and must agree with the declared ``ctx.artifact_format``. Pickle/joblib opcodes and skops
types are scanned statically (:func:`mlops.flavors.files.safety_check`); nothing is loaded.

Score (``actual["score"]``, 0-10, compared with ``min_score``):

* **10** - a format that imports no code, or only allow-listed types: skops, ONNX, XGBoost,
  LightGBM, scanned clean;
* **7** - a pickle/joblib file that scans clean: every load goes through the same exact
  allow list, but the consistency checks of objects whose native code trusts their state
  (tree and index bounds, dtype flags) run only when the file is loaded, not in this scan,
  so it passes with a warning;
* **0** - a file with untrusted imports, an unreadable stream, or a SHA-256 that differs
  from ``expected_sha256``.

The seed's ``security_score_threshold: 8.0`` therefore admits skops/ONNX/native boosters
only. An unsafe file fails unless ``ctx.trusted`` (registered with a trust override): then
it passes with a loud warning and keeps score 0, so a ``min_score`` above 0 still fails it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.errors import CIError, FlavorError
from mlops.flavors.files import SafetyReport, detect_format, safety_check, unparseable

__all__ = ["NAME", "PICKLE_FORMATS", "SAFE_FORMATS", "Config", "canonical_format", "run"]

NAME = "security"

#: Formats that import no code (or only allow-listed skops types): score 10 when clean.
SAFE_FORMATS = frozenset({"skops", "onnx", "xgboost", "lightgbm"})
#: Pickle-based formats: code runs only through the allow list, but state checks happen at
#: load time only; score 7 at best.
PICKLE_FORMATS = frozenset({"pickle", "joblib"})

_SCORE_SAFE, _SCORE_PICKLE, _SCORE_UNSAFE = 10.0, 7.0, 0.0


def canonical_format(name: str) -> str:
    """``xgboost-json`` -> ``xgboost``, ``lightgbm-text`` -> ``lightgbm``; lower case."""
    name = name.strip().lower()
    for family in ("xgboost", "lightgbm", "onnx", "skops", "joblib", "pickle"):
        if name.startswith(family):
            return family
    return name


class Config(GateConfig):
    """Format policy, the expected digest and the score floor (0-10)."""

    allow_pickle: bool = True
    require_formats: list[str] | None = None
    expected_sha256: str | None = None
    min_score: float = Field(default=0.0, ge=0, le=10)

    @field_validator("expected_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digest = value.strip().lower().removeprefix("sha256:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("expected_sha256 must be 64 hexadecimal characters")
        return digest


def _allowed_by(fmt: str, required: list[str]) -> bool:
    wanted = {canonical_format(r) for r in required}
    return fmt in wanted or (fmt == "joblib" and "pickle" in wanted)


def _scan(fmt: str, data: bytes) -> tuple[SafetyReport | None, str | None]:
    """(report, problem): problem names why the file could not be scanned."""
    try:
        report = safety_check(fmt, data)
    except FlavorError as exc:
        return None, exc.message
    return report, unparseable(report)


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Scan the artifact, verify its digest and judge its format."""
    path = Path(ctx.artifact_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CIError(f"Cannot read the model artifact {path}: {exc}.",
                      fix="Check that the artifact exists and is readable.",
                      path=str(path)) from exc
    sha = hashlib.sha256(data).hexdigest()
    threshold: dict[str, Any] = {"min_score": config.min_score,
                                 "allow_pickle": config.allow_pickle,
                                 "require_formats": config.require_formats,
                                 "expected_sha256": config.expected_sha256}
    failures: list[str] = []
    warnings: list[str] = []
    details: dict[str, Any] = {"path": str(path), "bytes": len(data), "sha256": sha,
                               "declared_format": ctx.artifact_format or None,
                               "trusted": ctx.trusted}
    try:
        fmt: str | None = detect_format(path.name, data)
    except FlavorError as exc:
        fmt = None
        failures.append(f"the file format is not recognised ({exc.message})")
    details["format"] = fmt
    declared = canonical_format(ctx.artifact_format) if ctx.artifact_format else None
    if fmt and declared and declared != fmt and {declared, fmt} != set(PICKLE_FORMATS):
        failures.append(f"declared format {ctx.artifact_format!r} but the file is {fmt}")

    score = _SCORE_UNSAFE
    offending: tuple[str, ...] = ()
    if fmt is not None:
        report, problem = _scan(fmt, data)
        if report is not None:
            offending = report.offending
            details["imports"] = list(report.imports)
        details["offending"] = list(offending)
        if problem:
            failures.append(f"the {fmt} file cannot be scanned: {problem}")
        elif offending and ctx.trusted:
            warnings.append(f"trusted override: {len(offending)} untrusted imports "
                            f"({', '.join(offending)}) accepted because the version was "
                            f"registered with trust")
        elif offending:
            failures.append(f"{len(offending)} untrusted import(s) in the {fmt} file: "
                            f"{', '.join(offending)}")
        else:
            score = _SCORE_SAFE if fmt in SAFE_FORMATS else _SCORE_PICKLE
        if fmt in PICKLE_FORMATS:
            if not config.allow_pickle:
                failures.append(f"{fmt} files are not allowed (allow_pickle=false)")
            elif not offending and not problem:
                warnings.append("pickle format: prefer skops or ONNX")
        if config.require_formats is not None and not _allowed_by(fmt, config.require_formats):
            failures.append(f"format {fmt} is not one of the required formats "
                            f"{config.require_formats}")

    digest_ok: bool | None = None
    if config.expected_sha256 is not None:
        digest_ok = sha == config.expected_sha256
        if not digest_ok:
            score = _SCORE_UNSAFE
            failures.append(f"SHA-256 {sha[:12]}... differs from the expected "
                            f"{config.expected_sha256[:12]}...")
    details["digest_matches"] = digest_ok
    if score < config.min_score:
        failures.append(f"security score {score:g}/10 < {config.min_score:g}")

    actual = {"score": score, "format": fmt, "sha256": sha, "offending": list(offending)}
    if failures:
        reason = "Rejected: " + "; ".join(failures) + "."
    else:
        how = "holds untrusted imports, accepted by trust override" if offending \
            else "scans clean"
        digest = ", SHA-256 matches" if digest_ok else ""
        reason = (f"The {fmt} file {how}{digest}; security score {score:g}/10 >= "
                  f"{config.min_score:g}.")
    return GateResult(NAME, not failures, actual, threshold, reason, details,
                      tuple(warnings))
