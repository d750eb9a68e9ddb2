"""Latency gate: single-row predict latency percentiles and batch throughput, in process.

Single-row latency: ``warmup`` untimed calls, then ``n_single`` timed calls of
``model.predict`` on one row each (rows of ``X`` cycled, sliced before timing), reported
as p50/p95/p99 in milliseconds (``numpy.percentile``, linear interpolation). Throughput:
one batch of ``batch_size`` rows (the first ``min(batch_size, len(X))`` rows repeated to
reach ``batch_size``) predicted ``n_batches`` times; the median rows per second is reported.
Times come from :func:`time.perf_counter_ns` and include the model's input preparation,
as a served request would.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed

__all__ = ["NAME", "Config", "run"]

NAME = "latency"

_NS_PER_MS = 1_000_000


class Config(GateConfig):
    """Latency thresholds (ms) and the measurement plan; ``None`` disables a threshold."""

    max_p50_ms: float | None = Field(default=None, gt=0)
    max_p95_ms: float | None = Field(default=None, gt=0)
    max_p99_ms: float | None = Field(default=100.0, gt=0)
    min_throughput_rps: float | None = Field(default=None, gt=0)
    n_single: int = Field(default=200, ge=1)
    warmup: int = Field(default=20, ge=0)
    batch_size: int = Field(default=1000, ge=1)
    n_batches: int = Field(default=5, ge=1)


def _single_rows(X: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    n = min(len(X), count)
    return [X.iloc[[i]] for i in range(n)]


def _single_latencies(ctx: GateContext, config: Config) -> np.ndarray:
    rows = _single_rows(ctx.X, config.n_single)
    predict = ctx.model.predict
    for i in range(config.warmup):
        predict(rows[i % len(rows)])
    out = np.empty(config.n_single, dtype=np.float64)
    for i in range(config.n_single):
        row = rows[i % len(rows)]
        start = time.perf_counter_ns()
        predict(row)
        out[i] = (time.perf_counter_ns() - start) / _NS_PER_MS
    return out


def _batch(X: pd.DataFrame, size: int) -> pd.DataFrame:
    base = X.iloc[: min(size, len(X))]
    reps = -(-size // len(base))
    batch = pd.concat([base] * reps, ignore_index=True) if reps > 1 else base
    return batch.iloc[:size]


def _throughputs(ctx: GateContext, config: Config) -> np.ndarray:
    batch = _batch(ctx.X, config.batch_size)
    out = np.empty(config.n_batches, dtype=np.float64)
    for i in range(config.n_batches):
        start = time.perf_counter_ns()
        ctx.model.predict(batch)
        elapsed_s = max(time.perf_counter_ns() - start, 1) / 1e9
        out[i] = len(batch) / elapsed_s
    return out


def _checks(actual: dict[str, float], config: Config) -> list[tuple[str, float, float, bool]]:
    """(label, value, limit, ok) for every enabled threshold."""
    checks: list[tuple[str, float, float, bool]] = []
    for pct in ("p50", "p95", "p99"):
        limit = getattr(config, f"max_{pct}_ms")
        if limit is not None:
            value = actual[f"{pct}_ms"]
            checks.append((f"{pct} latency", value, limit, value <= limit))
    if config.min_throughput_rps is not None:
        value = actual["throughput_rps"]
        checks.append(("throughput", value, config.min_throughput_rps,
                       value >= config.min_throughput_rps))
    return checks


def _describe(label: str, value: float, limit: float, ok: bool) -> str:
    if label == "throughput":
        op = ">=" if ok else "<"
        return f"{label} {value:,.0f} rows/s {op} {limit:,.0f} rows/s"
    op = "<=" if ok else ">"
    return f"{label} {value:.3f} ms {op} {limit:g} ms"


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Measure single-row latency percentiles and batch throughput against the limits."""
    threshold: dict[str, Any] = {
        "max_p50_ms": config.max_p50_ms, "max_p95_ms": config.max_p95_ms,
        "max_p99_ms": config.max_p99_ms, "min_throughput_rps": config.min_throughput_rps,
    }
    if len(ctx.X) == 0:
        return GateResult(NAME, True, None, threshold,
                          "Skipped: the test data has no rows to time predictions on.",
                          skipped=True)
    single = _single_latencies(ctx, config)
    rps = _throughputs(ctx, config)
    p50, p95, p99 = (float(v) for v in np.percentile(single, [50, 95, 99]))
    actual = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
              "throughput_rps": float(np.median(rps))}
    details: dict[str, Any] = {
        "single_row": {"n_calls": config.n_single, "warmup": config.warmup,
                       "distinct_rows": min(len(ctx.X), config.n_single),
                       "mean_ms": float(single.mean()), "min_ms": float(single.min()),
                       "max_ms": float(single.max()), "p50_ms": p50, "p95_ms": p95,
                       "p99_ms": p99},
        "batch": {"batch_size": config.batch_size, "n_batches": config.n_batches,
                  "distinct_rows": min(len(ctx.X), config.batch_size),
                  "throughput_rps": rps.tolist(),
                  "median_throughput_rps": actual["throughput_rps"]},
    }
    checks = _checks(actual, config)
    failed = [c for c in checks if not c[3]]
    if failed:
        reason = "Too slow: " + "; ".join(_describe(*c) for c in failed) + "."
    elif checks:
        reason = "Within limits: " + "; ".join(_describe(*c) for c in checks) + "."
    else:
        reason = (f"No latency threshold set; measured p99 {p99:.3f} ms and "
                  f"{actual['throughput_rps']:,.0f} rows/s.")
    details["checks"] = [{"check": c[0], "value": c[1], "limit": c[2], "passed": c[3]}
                         for c in checks]
    return GateResult(NAME, not failed, actual, threshold, reason, details)
