"""Slices gate: the model's metric on subsets of the test rows, judged on the worst slice.

A slice spec is a column of ``ctx.frame`` - one slice per distinct value when it has at most
50 (missing values form their own slice), or ``bins`` quantile bins (``pandas.qcut``) for a
numeric column with more - or ``{"name": ..., "query": "age >= 60"}``, evaluated with
:meth:`pandas.DataFrame.query`. The metric (``accuracy`` for classification, ``mae`` for
regression by default; see :mod:`mlops.ci.gates.metrics`) is computed on every slice;
slices with fewer than ``min_size`` rows are listed as too small and not judged.
``min_metric`` (higher-is-better metrics) or ``max_metric`` (lower-is-better) bounds every
judged slice; ``max_gap`` bounds how much worse than the overall metric a slice may be.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.ci.gates.metrics import (
    HIGHER_IS_BETTER,
    LabelSpace,
    fmt_pair,
    label_space,
    require_labels,
    score,
)
from mlops.errors import CIError

__all__ = ["MAX_DISTINCT", "NAME", "Config", "QuerySlice", "run"]

NAME = "slices"
MAX_DISTINCT = 50
SLICE_METRICS = {"classification": ("accuracy", "precision", "recall", "f1"),
                 "regression": ("mae", "rmse", "r2")}


class QuerySlice(BaseModel):
    """A named slice given by a ``DataFrame.query`` expression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)


class Config(GateConfig):
    """Which slices, which metric, and the worst-slice thresholds (``None``: not judged)."""

    slices: list[str | QuerySlice] = Field(default_factory=list)
    metric: str | None = None
    min_size: int = Field(default=30, ge=1)
    bins: int = Field(default=4, ge=2, le=100)
    min_metric: float | None = None
    max_metric: float | None = None
    max_gap: float | None = Field(default=None, ge=0)


def _masks_for_column(frame: pd.DataFrame, col: str, bins: int) -> list[tuple[str, np.ndarray]]:
    if col not in frame.columns:
        raise CIError(f"Slice column {col!r} is not in the test data.",
                      fix=f"Use one of the columns {list(frame.columns)[:20]} or a query slice.",
                      slice=col)
    values = frame[col]
    distinct = values.dropna().unique()
    out: list[tuple[str, np.ndarray]] = []
    if len(distinct) <= MAX_DISTINCT:
        try:
            ordered = sorted(distinct)
        except TypeError:
            ordered = sorted(distinct, key=str)
        out = [(f"{col}={v}", (values == v).to_numpy()) for v in ordered]
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        cut = pd.qcut(values, q=bins, duplicates="drop")
        out = [(f"{col} in {interval}", (cut == interval).to_numpy())
               for interval in cut.cat.categories]
    else:
        raise CIError(f"Slice column {col!r} has {len(distinct)} distinct values, too many to "
                      f"slice by (at most {MAX_DISTINCT} for a non-numeric column).",
                      fix="Slice it with a query, e.g. {name: ..., query: ...}.", slice=col)
    missing = values.isna().to_numpy()
    if missing.any():
        out.append((f"{col} is missing", missing))
    return out


def _mask_for_query(frame: pd.DataFrame, spec: QuerySlice) -> tuple[str, np.ndarray]:
    positional = frame.reset_index(drop=True)
    try:
        hit = positional.query(spec.query)
    except Exception as exc:
        raise CIError(f"Slice {spec.name!r}: the query {spec.query!r} failed: "
                      f"{type(exc).__name__}: {exc}.",
                      fix="Write a pandas DataFrame.query expression over the test data's "
                          f"columns {list(frame.columns)[:20]}.", slice=spec.name) from exc
    if not isinstance(hit, pd.DataFrame):
        raise CIError(f"Slice {spec.name!r}: the query {spec.query!r} is not a row filter.",
                      fix="Use a boolean expression such as \"age >= 60\".", slice=spec.name)
    mask = np.zeros(len(frame), dtype=bool)
    mask[hit.index.to_numpy(dtype=np.int64)] = True
    return spec.name, mask


def _resolve_metric(ctx: GateContext, config: Config) -> tuple[str, bool]:
    allowed = SLICE_METRICS.get(ctx.task, SLICE_METRICS["classification"])
    metric = config.metric or allowed[0]
    if metric not in allowed:
        raise CIError(f"Slice metric {metric!r} does not apply to a {ctx.task} model.",
                      fix=f"Use one of {', '.join(allowed)}.", model=ctx.model_name)
    higher = metric in HIGHER_IS_BETTER
    right, wrong = ("min_metric", "max_metric") if higher else ("max_metric", "min_metric")
    if getattr(config, wrong) is not None:
        raise CIError(f"{wrong} is set, but {metric} is "
                      f"{'higher' if higher else 'lower'}-is-better.",
                      fix=f"Bound the worst slice with {right} instead.", model=ctx.model_name)
    return metric, higher


def _slice_masks(ctx: GateContext, config: Config) -> list[tuple[str, np.ndarray]]:
    if len(ctx.frame) != len(ctx.X):
        raise CIError(f"The test table has {len(ctx.frame)} rows but the features "
                      f"{len(ctx.X)}.", fix="Pass the whole test table with the features.")
    masks: list[tuple[str, np.ndarray]] = []
    for spec in config.slices:
        if isinstance(spec, QuerySlice):
            masks.append(_mask_for_query(ctx.frame, spec))
        else:
            masks.extend(_masks_for_column(ctx.frame, spec, config.bins))
    return masks


def _judge(row: dict[str, Any], metric: str, higher: bool, config: Config) -> list[str]:
    value = row["metric"]
    problems: list[str] = []
    limit = config.min_metric if higher else config.max_metric
    if limit is not None and (value < limit if higher else value > limit):
        a, b = fmt_pair(value, limit)
        problems.append(f"{metric} {a} {'<' if higher else '>'} {b}")
    if config.max_gap is not None and row["gap"] > config.max_gap:
        a, b = fmt_pair(row["gap"], config.max_gap)
        problems.append(f"gap to overall {a} > {b}")
    return problems


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Score every slice and judge the worst against the thresholds."""
    threshold = {k: v for k, v in (("min_metric", config.min_metric),
                                   ("max_metric", config.max_metric),
                                   ("max_gap", config.max_gap)) if v is not None}
    if not config.slices:
        return GateResult(NAME, True, None, threshold,
                          "Skipped: no slice is configured (give columns or queries in "
                          "slices).", skipped=True)
    metric, higher = _resolve_metric(ctx, config)
    y = require_labels(ctx, NAME)
    pred = ctx.y_pred
    space: LabelSpace | None = None
    if ctx.task != "regression":
        space = label_space(y, pred, ctx.model.classes)
    overall = score(metric, y, pred, space)
    rows: list[dict[str, Any]] = []
    failing: list[str] = []
    small: list[str] = []
    for name, mask in _slice_masks(ctx, config):
        n = int(mask.sum())
        row: dict[str, Any] = {"slice": name, "n": n, "metric": None, "gap": None,
                               "status": "too small"}
        if n >= config.min_size:
            try:
                value = score(metric, y[mask], pred[mask], space)
            except ValueError as exc:
                raise CIError(f"Slice {name!r}: {metric} cannot be computed: {exc}.",
                              fix="Choose another slice metric.", slice=name) from exc
            row.update(metric=value, gap=(overall - value) if higher else (value - overall),
                       status="ok")
            problems = _judge(row, metric, higher, config)
            if problems:
                row["status"] = "fail"
                failing.append(f"{name} ({'; '.join(problems)}, n={n})")
        else:
            small.append(f"{name} (n={n})")
        rows.append(row)
    judged = [r for r in rows if r["metric"] is not None]
    details: dict[str, Any] = {"metric": metric, "overall": overall, "n": len(y),
                               "min_size": config.min_size, "slices": rows}
    if not judged:
        return GateResult(NAME, True, None, threshold,
                          f"Skipped: all {len(rows)} slices have fewer than {config.min_size} "
                          f"rows: {', '.join(small)}.", details=details, skipped=True)
    worst = (min if higher else max)(judged, key=lambda r: r["metric"])
    largest_gap = max(r["gap"] for r in judged)
    actual = {"overall": overall, "worst_slice": worst["slice"], "worst_metric": worst["metric"],
              "max_gap": largest_gap}
    tail = f" {len(small)} too small to judge (< {config.min_size} rows): " \
           f"{', '.join(small)}." if small else ""
    summary = (f"worst slice {worst['slice']} {metric} {worst['metric']:.4g} (n={worst['n']}), "
               f"overall {overall:.4g}, largest gap {largest_gap:.4g}")
    if failing:
        reason = f"{len(failing)} of {len(judged)} slices fail: {'; '.join(failing)}.{tail}"
    elif not threshold:
        reason = f"No slice threshold is configured; {summary}.{tail}"
    else:
        reason = f"All {len(judged)} judged slices meet the thresholds; {summary}.{tail}"
    return GateResult(NAME, not failing, actual, threshold, reason, details=details,
                      skipped=not threshold)
