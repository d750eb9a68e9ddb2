"""Data-quality gate: the test data against the model's signature and reference profile.

Checks (each one passes, fails or is skipped with the reason in ``details["skipped"]``):

- ``empty``: no rows or no columns fails at once;
- ``schema`` (needs a signature): missing columns fail; extra columns warn (fail with
  ``fail_on_extra_columns``); a column whose values do not fit the declared dtype fails
  (numeric/bool/datetime expected but other values found, or numbers where strings are);
- ``missing``: the missing share of each column must be <= ``max_missing_rate``; a column
  already sparse in the reference may reach its reference rate plus ``max_missing_rate``;
- ``range`` (needs a reference): the share of a numeric column's values outside the
  reference ``[min, max]`` must be <= ``max_out_of_range``;
- ``unseen`` (needs a reference): the share of a categorical column's values that are not
  reference categories must be <= ``max_unseen_categories``;
- ``duplicates``: the share of rows that repeat an earlier row must be <= ``max_duplicate_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.flavors.signature import Signature
from mlops.stats.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    categorical_counts,
)

__all__ = ["NAME", "Config", "run"]

NAME = "data_quality"

_NUMERIC = {"float32", "float64", "int64"}


class Config(GateConfig):
    """Tolerances, each a share of rows (0-1)."""

    max_missing_rate: float = Field(default=0.05, ge=0, le=1)
    max_out_of_range: float = Field(default=0.01, ge=0, le=1)
    max_unseen_categories: float = Field(default=0.01, ge=0, le=1)
    max_duplicate_rate: float = Field(default=0.05, ge=0, le=1)
    fail_on_extra_columns: bool = False


@dataclass
class _Report:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, check: str, passed: bool, **numbers: Any) -> None:
        self.checks[check] = {"passed": passed, **numbers}


def _values_fit(expected: str, series: pd.Series) -> str | None:
    """Why ``series`` does not fit the signature dtype ``expected`` (None when it does)."""
    try:
        return _misfit(expected, series)
    except (TypeError, ValueError) as exc:
        return f"{expected} expected but values of an unsupported type found ({exc})"


def _misfit(expected: str, series: pd.Series) -> str | None:
    dtype = series.dtype
    values = series.dropna()
    if expected in _NUMERIC:
        if pd.api.types.is_numeric_dtype(dtype):
            return None
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return f"numeric expected but {dtype} found"
        bad = values[pd.to_numeric(values, errors="coerce").isna()]
        if len(bad):
            return (f"numeric expected but {len(bad)} non-numeric value(s) found "
                    f"(e.g. {bad.iloc[0]!r})")
    elif expected == "bool":
        if pd.api.types.is_bool_dtype(dtype):
            return None
        if not set(values.unique().tolist()) <= {0, 1}:  # True == 1, False == 0
            return f"bool expected but {values.nunique()} distinct non-boolean values found"
    elif expected == "datetime":
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return None
        bad = values[pd.to_datetime(values, errors="coerce").isna()]
        if len(bad) or pd.api.types.is_numeric_dtype(dtype):
            return f"datetime expected but {dtype} values found"
    elif expected == "string" and pd.api.types.is_numeric_dtype(dtype):
        return f"string expected but numeric dtype {dtype} found"
    return None


def _schema(data: pd.DataFrame, frame: pd.DataFrame, sig: Signature, config: Config,
            rep: _Report) -> None:
    names = [str(c) for c in data.columns]
    if sig.positional:
        expected = sig.columns
        missing = expected[len(names):]
        extra = names[len(expected):]
        lookup = {spec.name: data.iloc[:, i] for i, spec in enumerate(sig.inputs)
                  if i < len(names)}
    else:
        cols = {str(c): data[c] for c in data.columns}
        cols.update({str(c): frame[c] for c in frame.columns if str(c) not in cols})
        missing = [c for c in sig.columns if c not in cols]
        extra = [c for c in names if c not in set(sig.columns)]
        lookup = {c: cols[c] for c in sig.columns if c in cols}
    mismatches = {}
    for spec in sig.inputs:
        if spec.name in lookup:
            problem = _values_fit(spec.dtype, lookup[spec.name])
            if problem:
                mismatches[spec.name] = problem
    rep.record("missing_columns", not missing, columns=missing)
    rep.record("dtypes", not mismatches, mismatches=mismatches)
    if missing:
        rep.failures.append(f"{len(missing)} missing column(s) {missing}")
    for name, problem in mismatches.items():
        rep.failures.append(f"dtype mismatch in {name!r}: {problem}")
    rep.record("extra_columns", not (extra and config.fail_on_extra_columns), columns=extra)
    if extra:
        text = f"{len(extra)} column(s) not in the signature: {extra}"
        (rep.failures if config.fail_on_extra_columns else rep.warnings).append(text)


def _missing(data: pd.DataFrame, ref: ReferenceProfile | None, config: Config,
             rep: _Report) -> float:
    rates = {str(c): float(r) for c, r in data.isna().mean().items()}
    limits = {}
    for name in rates:
        profile = ref.columns.get(name) if ref is not None else None
        base = profile.missing_rate if profile is not None else 0.0
        limits[name] = config.max_missing_rate + base if base > config.max_missing_rate \
            else config.max_missing_rate
    bad = {n: r for n, r in rates.items() if r > limits[n]}
    rep.record("missing_rate", not bad, rates=rates, limits=limits, failing=bad)
    for name, rate in bad.items():
        rep.failures.append(f"missing rate {rate:.3f} in {name!r} > {limits[name]:.3g}")
    return max(rates.values(), default=0.0)


def _ranges(data: pd.DataFrame, ref: ReferenceProfile, config: Config,
            rep: _Report) -> tuple[float, float]:
    present = {str(c): data[c] for c in data.columns}
    out_of_range: dict[str, dict[str, Any]] = {}
    unseen: dict[str, dict[str, Any]] = {}
    for name, profile in ref.columns.items():
        if name not in present or profile.n == 0:
            continue
        series = present[name]
        if isinstance(profile, NumericProfile):
            x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64,
                                                                na_value=np.nan)
            x = x[~np.isnan(x)]
            n_out = int(np.count_nonzero((x < profile.min) | (x > profile.max)))
            out_of_range[name] = {"share": n_out / x.size if x.size else 0.0, "n": n_out,
                                  "min": profile.min, "max": profile.max,
                                  "observed_min": float(x.min()) if x.size else None,
                                  "observed_max": float(x.max()) if x.size else None}
        elif isinstance(profile, CategoricalProfile):
            labels, counts, _ = categorical_counts(series, name)
            known = set(profile.categories)
            new = [(lab, int(c)) for lab, c in zip(labels, counts, strict=True)
                   if lab not in known]
            total = int(counts.sum())
            n_new = sum(c for _, c in new)
            unseen[name] = {"share": n_new / total if total else 0.0, "n": n_new,
                            "examples": [lab for lab, _ in new[:5]]}
    for check, table, limit, what in (
            ("out_of_range", out_of_range, config.max_out_of_range, "outside the reference "
                                                                    "range"),
            ("unseen_categories", unseen, config.max_unseen_categories, "unseen categories")):
        if not table:
            rep.skipped[check] = "no reference column of this kind in the data"
            continue
        bad = {n: v for n, v in table.items() if v["share"] > limit}
        rep.record(check, not bad, columns=table, limit=limit)
        for name, info in bad.items():
            extra = (f" [{info['observed_min']:g}, {info['observed_max']:g}] vs "
                     f"[{info['min']:g}, {info['max']:g}]" if check == "out_of_range"
                     else f" e.g. {info['examples']}")
            rep.failures.append(f"{info['share']:.3f} of {name!r} {what} > {limit:g}{extra}")
    return (max((v["share"] for v in out_of_range.values()), default=0.0),
            max((v["share"] for v in unseen.values()), default=0.0))


def _duplicates(data: pd.DataFrame, config: Config, rep: _Report) -> float | None:
    try:
        dup = data.duplicated()
    except TypeError as exc:
        rep.skipped["duplicates"] = f"rows cannot be compared ({exc})"
        return None
    rate = float(dup.mean())
    passed = rate <= config.max_duplicate_rate
    rep.record("duplicates", passed, rate=rate, n=int(dup.sum()),
               limit=config.max_duplicate_rate)
    if not passed:
        rep.failures.append(f"duplicate row rate {rate:.3f} ({int(dup.sum())} rows) > "
                            f"{config.max_duplicate_rate:g}")
    return rate


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Judge the test data's schema, completeness, ranges, categories and duplicates."""
    threshold = {k: getattr(config, k) for k in ("max_missing_rate", "max_out_of_range",
                                                 "max_unseen_categories",
                                                 "max_duplicate_rate")}
    data = ctx.X if len(ctx.X.columns) or ctx.frame is None else ctx.frame
    rows, ncols = data.shape
    if rows == 0 or ncols == 0:
        return GateResult(NAME, False, {"rows": rows, "columns": ncols}, threshold,
                          f"The test data is empty ({rows} rows x {ncols} columns).",
                          {"checks": {"empty": {"passed": False}}})
    rep = _Report()
    sig = ctx.signature if isinstance(ctx.signature, Signature) else None
    ref = ctx.reference if isinstance(ctx.reference, ReferenceProfile) else None
    frame = ctx.frame if ctx.frame is not None else data
    if sig is not None and sig.inputs:
        _schema(data, frame, sig, config, rep)
    else:
        rep.skipped["schema"] = "no signature registered"
    worst_missing = _missing(data, ref, config, rep)
    out_share: float | None = None
    unseen_share: float | None = None
    if ref is not None:
        out_share, unseen_share = _ranges(data, ref, config, rep)
    else:
        rep.skipped["out_of_range"] = rep.skipped["unseen_categories"] = \
            "no reference profile"
    dup_rate = _duplicates(data, config, rep)
    actual = {"rows": rows, "columns": ncols,
              "missing_columns": rep.checks.get("missing_columns", {}).get("columns"),
              "dtype_mismatches": rep.checks.get("dtypes", {}).get("mismatches"),
              "max_missing_rate": worst_missing,
              "max_out_of_range": None if "out_of_range" in rep.skipped else out_share,
              "max_unseen_categories": None if "unseen_categories" in rep.skipped
              else unseen_share,
              "duplicate_rate": dup_rate}
    details: dict[str, Any] = {"checks": rep.checks, "skipped": rep.skipped}
    skipped = f"; skipped: {', '.join(rep.skipped)}" if rep.skipped else ""
    if rep.failures:
        reason = (f"{len(rep.failures)} data problem(s) in {rows} rows: "
                  + "; ".join(rep.failures) + skipped + ".")
    else:
        reason = (f"All {len(rep.checks)} data checks passed on {rows} rows x {ncols} columns"
                  f"{skipped}.")
    return GateResult(NAME, not rep.failures, actual, threshold, reason, details,
                      tuple(rep.warnings))
