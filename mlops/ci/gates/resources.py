"""Resources gate: artifact size and the memory a model needs to load and predict.

Memory is measured in a fresh interpreter (:mod:`mlops.ci.gates._probe`) so that nothing
this process already holds is counted: the probe imports mlops, reads a sample of ``X``
(at most ``sample_rows`` rows, handed over as a temporary Parquet file), records the
resident-set high-water mark (``ru_maxrss``) as its *baseline*, then loads the artifact and
predicts the sample. The model's memory is the peak after predicting minus the baseline
(it includes the libraries the model imports, e.g. scikit-learn, as a server would pay
them); the absolute peak (``ru_maxrss``) is reported too. On Linux the probe resets the
kernel's high-water mark at the baseline, so a spike before it cannot hide the model's
memory; elsewhere the ``ru_maxrss`` difference is used (``details["memory_method"]``).
MB here are MiB (2**20 bytes).

The probe loads with ``trust=ctx.trusted``: an unsafe pickle is only ever loaded (in the
subprocess) when the version was registered with a trust override. A probe that crashes, cannot load the model or exceeds ``timeout_s`` fails the gate with
the tail of its stderr in ``details``; it never raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

import mlops
from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.errors import CIError

__all__ = ["NAME", "Config", "run"]

NAME = "resources"

_MIB = 1024 * 1024
_TAIL = 2000


class Config(GateConfig):
    """Size and memory limits (MB = MiB); ``None`` disables a limit."""

    max_artifact_mb: float | None = Field(default=None, gt=0)
    max_memory_mb: float | None = Field(default=2048.0, gt=0)
    max_peak_memory_mb: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    sample_rows: int = Field(default=1000, ge=1)


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-_TAIL:]


def _mb(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def _write_sample(X: pd.DataFrame, rows: int, path: Path) -> None:
    sample = X.iloc[:rows]
    if not all(isinstance(c, str) for c in sample.columns):
        sample = sample.rename(columns=str)
    try:
        sample.to_parquet(path, index=False)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        raise CIError(f"The test rows cannot be written to Parquet for the memory probe: "
                      f"{type(exc).__name__}: {exc}.",
                      fix="Give every column one plain type (numbers, strings, booleans, "
                          "datetimes).") from exc


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(mlops.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run_probe(ctx: GateContext, config: Config) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(measurement or None, probe details) from a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="mlops-probe-") as tmp:
        data_path = Path(tmp) / "sample.parquet"
        _write_sample(ctx.X, config.sample_rows, data_path)
        cmd = [sys.executable, "-m", "mlops.ci.gates._probe", str(ctx.artifact_path),
               str(data_path)]
        if ctx.trusted:
            cmd.append("--trust")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=config.timeout_s,
                                  env=_probe_env(), check=False)
        except subprocess.TimeoutExpired as exc:
            return None, {"error": f"the probe did not finish within {config.timeout_s:g} s",
                          "stderr_tail": _tail(exc.stderr)}
    info: dict[str, Any] = {"returncode": proc.returncode, "stderr_tail": _tail(proc.stderr)}
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        out = None
    if not isinstance(out, dict):
        info["error"] = f"the probe exited with status {proc.returncode} and no result"
        return None, info
    if proc.returncode != 0 or "error" in out:
        info["error"] = str(out.get("error") or f"the probe exited with status "
                                                 f"{proc.returncode}")
        return None, info
    return out, info


def _memory(measured: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """Fill ``actual`` memory numbers (MB) from the probe's KiB readings; return details."""
    hwm = "baseline_rss_kib" in measured and "after_predict_hwm_kib" in measured
    key = "_hwm_kib" if hwm else "_kib"
    base = measured["baseline_rss_kib" if hwm else "baseline_kib"] / 1024
    after_load = measured["after_load" + key] / 1024
    after_predict = measured["after_predict" + key] / 1024
    actual["memory_mb"] = max(after_predict - base, 0.0)
    actual["peak_memory_mb"] = max(measured["after_predict_kib"] / 1024, after_predict)
    return {"memory_method": "VmHWM reset at baseline" if hwm else "ru_maxrss",
            "baseline_mb": base, "load_memory_mb": max(after_load - base, 0.0),
            "predict_memory_mb": max(after_predict - after_load, 0.0),
            "ru_maxrss_mb": {k.removesuffix("_kib"): v / 1024 for k, v in measured.items()
                             if k in ("baseline_kib", "after_load_kib", "after_predict_kib")},
            "sample_rows": measured["rows"]}


def _check_lines(actual: dict[str, Any], config: Config) -> list[tuple[str, float, float]]:
    """(label, value, limit) for every enabled limit."""
    pairs = [("artifact size", actual["artifact_mb"], config.max_artifact_mb),
             ("model memory", actual.get("memory_mb"), config.max_memory_mb),
             ("peak memory", actual.get("peak_memory_mb"), config.max_peak_memory_mb)]
    return [(label, value, limit) for label, value, limit in pairs
            if limit is not None and value is not None]


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Measure artifact size and load+predict memory in a fresh subprocess."""
    threshold = {"max_artifact_mb": config.max_artifact_mb,
                 "max_memory_mb": config.max_memory_mb,
                 "max_peak_memory_mb": config.max_peak_memory_mb}
    try:
        size = Path(ctx.artifact_path).stat().st_size
    except OSError as exc:
        raise CIError(f"Cannot read the model artifact {ctx.artifact_path}: {exc}.",
                      fix="Check that the artifact exists and is readable.",
                      path=str(ctx.artifact_path)) from exc
    actual: dict[str, Any] = {"artifact_bytes": size, "artifact_mb": size / _MIB,
                              "memory_mb": None, "peak_memory_mb": None}
    if len(ctx.X) == 0:
        measured, probe = None, {"skipped": "no test rows to predict on"}
    else:
        measured, probe = _run_probe(ctx, config)
    details: dict[str, Any] = {"artifact_path": str(ctx.artifact_path), "probe": probe}
    if measured is not None:
        details.update(_memory(measured, actual))
    checks = _check_lines(actual, config)
    failed = [c for c in checks if c[1] > c[2]]
    details["checks"] = [{"check": label, "value": value, "limit": limit,
                          "passed": value <= limit} for label, value, limit in checks]
    parts = [f"{label} {_mb(value)} MB {'>' if value > limit else '<='} {limit:g} MB"
             for label, value, limit in (failed or checks)]
    if measured is None and len(ctx.X) > 0:
        reason = f"Memory could not be measured: {probe['error']}."
        if failed:
            reason += " Also " + "; ".join(parts) + "."
        return GateResult(NAME, False, actual, threshold, reason, details)
    warnings: tuple[str, ...] = ()
    if measured is None:
        warnings = ("memory not measured: the test data has no rows",)
    if failed:
        reason = "Over the limit: " + "; ".join(parts) + "."
    elif parts:
        reason = "Within limits: " + "; ".join(parts) + "."
    else:
        reason = (f"No resource limit set; artifact {_mb(actual['artifact_mb'])} MB, "
                  f"model memory {_mb(actual['memory_mb'] or 0.0)} MB.")
    return GateResult(NAME, not failed, actual, threshold, reason, details, warnings)
