"""Reference profiles: per-column summaries computed once, when a model is registered.

Drift checks (:mod:`mlops.stats.drift`) compare later windows against the profile, never
against the raw reference, so nothing re-reads or re-sorts the reference data:

- numeric columns keep the exact moments (mean, sample std with ``ddof=1``, min, max), a
  **sorted** sample of the non-missing values (all of them, or a seeded uniform subsample
  without replacement of ``sample_cap`` rows) for KS / Wasserstein / energy, and the
  reference quantile bins for PSI / Jensen-Shannon;
- categorical columns keep every category with its count.

Bins: the cut points are the distinct reference quantiles at ``j / n_bins`` (``j = 1 ..
n_bins - 1``, ``method="inverted_cdf"``, so every cut is an observed value) strictly below
the maximum; bins are right-closed, ``(c_{j-1}, c_j]``, and the outermost two are
open-ended. ``bin_edges`` is ``[-inf, c_1, ..., c_k, +inf]``; every reference bin holds at
least one value, and a binary or low-cardinality numeric column gets one bin per value.

Column kinds: bool, object, string and category dtypes are categorical; other numeric
dtypes are numeric unless named in ``categorical=``. Missing means NaN / None / NA.
Category labels are strings (``True`` -> ``"True"``, ``1.0`` -> ``"1"``), so the same
values are labelled the same in the reference and in later windows.

Serialisation (:meth:`ReferenceProfile.to_bytes`) is a zip of ``.npy`` arrays plus a
JSON header, read back with ``allow_pickle=False``; it never unpickles and the bytes are
deterministic (fixed zip timestamps), so a content-addressed store dedupes them.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlops.stats._checks import fail

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: CLI commands start sooner

__all__ = [
    "FORMAT",
    "CategoricalProfile",
    "ColumnProfile",
    "NumericProfile",
    "ReferenceProfile",
    "as_columns",
    "build_profile",
    "categorical_counts",
    "category_label",
    "numeric_values",
]

FORMAT = "mlops.reference_profile"
_VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _frozen(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    arr.setflags(write=False)
    return arr


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """A numeric column of the reference (``n`` counts the non-missing values)."""

    name: str
    n: int
    n_missing: int
    missing_rate: float
    min: float
    max: float
    mean: float
    std: float
    sample: FloatArray = field(repr=False)
    bin_edges: FloatArray
    bin_fractions: FloatArray
    kind: str = field(default="numeric", init=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericProfile):
            return NotImplemented
        return (self.name == other.name and self.n == other.n
                and self.n_missing == other.n_missing
                and all(_same_float(getattr(self, k), getattr(other, k))
                        for k in ("missing_rate", "min", "max", "mean", "std"))
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in ("sample", "bin_edges", "bin_fractions")))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical column: categories (most frequent first) and their counts."""

    name: str
    n: int
    n_missing: int
    missing_rate: float
    categories: tuple[str, ...]
    counts: IntArray
    kind: str = field(default="categorical", init=False)

    @property
    def fractions(self) -> FloatArray:
        """Reference share of each category."""
        return self.counts / self.n if self.n else np.zeros(len(self.categories))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalProfile):
            return NotImplemented
        return (self.name == other.name and self.n == other.n
                and self.n_missing == other.n_missing
                and _same_float(self.missing_rate, other.missing_rate)
                and self.categories == other.categories
                and np.array_equal(self.counts, other.counts))

    __hash__ = None  # type: ignore[assignment]


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Profiles of every column of a reference set (``outputs``: optional model outputs)."""

    columns: dict[str, ColumnProfile]
    n_rows: int
    outputs: dict[str, ColumnProfile] = field(default_factory=dict)
    sample_cap: int = 100_000
    n_bins: int = 10
    seed: int = 0

    def outputs_profile(self) -> ReferenceProfile:
        """The outputs as a profile of their own, ready for ``detect_drift``."""
        return ReferenceProfile(dict(self.outputs), self.n_rows, {}, self.sample_cap,
                                self.n_bins, self.seed)

    def to_bytes(self) -> bytes:
        """Safe, deterministic serialisation: ``.npy`` arrays + JSON header in a zip."""
        arrays: dict[str, npt.NDArray[Any]] = {}

        def encode(col: ColumnProfile) -> dict[str, Any]:
            base = {"name": col.name, "kind": col.kind, "n": col.n,
                    "n_missing": col.n_missing, "missing_rate": col.missing_rate}
            if isinstance(col, NumericProfile):
                keys = {}
                for attr in ("sample", "bin_edges", "bin_fractions"):
                    key = f"a{len(arrays)}"
                    arrays[key] = np.ascontiguousarray(getattr(col, attr), dtype=np.float64)
                    keys[attr] = key
                return {**base, "min": col.min, "max": col.max, "mean": col.mean,
                        "std": col.std, "arrays": keys}
            key = f"a{len(arrays)}"
            arrays[key] = np.ascontiguousarray(col.counts, dtype=np.int64)
            return {**base, "categories": list(col.categories), "arrays": {"counts": key}}

        header = {"format": FORMAT, "version": _VERSION, "n_rows": self.n_rows,
                  "sample_cap": self.sample_cap, "n_bins": self.n_bins, "seed": self.seed,
                  "columns": [encode(c) for c in self.columns.values()],
                  "outputs": [encode(c) for c in self.outputs.values()]}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
            entries = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                       **arrays}
            for key, arr in entries.items():
                npy = io.BytesIO()
                np.lib.format.write_array(npy, arr, allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME), npy.getvalue())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Inverse of :meth:`to_bytes`; never unpickles; refuses anything malformed."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                stored = {key: npz[key] for key in npz.files}
            header = json.loads(bytes(stored.pop("header")).decode())
            if header.get("format") != FORMAT or header.get("version") != _VERSION:
                raise ValueError(f"format {header.get('format')!r} "
                                 f"version {header.get('version')!r}")
            columns = {c["name"]: _decode_column(c, stored) for c in header["columns"]}
            outputs = {c["name"]: _decode_column(c, stored) for c in header["outputs"]}
            return cls(columns, int(header["n_rows"]), outputs, int(header["sample_cap"]),
                       int(header["n_bins"]), int(header["seed"]))
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile,
                UnicodeDecodeError, AttributeError) as exc:
            fail(f"The bytes are not a readable reference profile ({exc}).",
                 "rebuild the profile with build_profile() and store profile.to_bytes().")


def _decode_column(spec: Mapping[str, Any], stored: Mapping[str, npt.NDArray[Any]]
                   ) -> ColumnProfile:
    keys = spec["arrays"]
    n, n_missing = int(spec["n"]), int(spec["n_missing"])
    if spec["kind"] == "numeric":
        sample, edges, fractions = (stored[keys[k]] for k in
                                    ("sample", "bin_edges", "bin_fractions"))
        if not all(a.dtype == np.float64 and a.ndim == 1 for a in (sample, edges, fractions)):
            raise ValueError(f"column {spec['name']!r}: arrays must be 1-D float64")
        if sample.size > n or (edges.size != fractions.size + 1 and edges.size + fractions.size):
            raise ValueError(f"column {spec['name']!r}: inconsistent array sizes")
        return NumericProfile(str(spec["name"]), n, n_missing, float(spec["missing_rate"]),
                              float(spec["min"]), float(spec["max"]), float(spec["mean"]),
                              float(spec["std"]), _frozen(sample), _frozen(edges),
                              _frozen(fractions))
    if spec["kind"] == "categorical":
        counts = stored[keys["counts"]]
        categories = tuple(str(c) for c in spec["categories"])
        if counts.dtype != np.int64 or counts.shape != (len(categories),):
            raise ValueError(f"column {spec['name']!r}: counts do not match the categories")
        return CategoricalProfile(str(spec["name"]), n, n_missing, float(spec["missing_rate"]),
                                  categories, _frozen(counts))
    raise ValueError(f"unknown column kind {spec['kind']!r}")


# ---------------------------------------------------------------------- column values
def category_label(value: object) -> str:
    """The string label of a category value (integral floats lose their ``.0``)."""
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def categorical_counts(values: Any, name: str) -> tuple[tuple[str, ...], IntArray, int]:
    """(labels most frequent first, counts, number missing) of a 1-D column."""
    series = _as_series(values, name)
    counts = series.value_counts(dropna=True, sort=False)
    merged: dict[str, int] = {}
    for key, count in zip(counts.index, counts.to_numpy(), strict=True):
        label = category_label(key)
        merged[label] = merged.get(label, 0) + int(count)
    ordered = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    n = sum(merged.values())
    return (tuple(k for k, _ in ordered), np.array([v for _, v in ordered], dtype=np.int64),
            len(series) - n)


def numeric_values(values: Any, name: str) -> FloatArray:
    """A 1-D float64 array of a numeric column; missing -> NaN; refuses non-numbers."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        arr = np.asarray(values, dtype=np.float64)
    else:
        series = _as_series(values, name)
        try:
            arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            fail(f"Column {name!r} is not numeric: {exc}.",
                 f"convert {name!r} to numbers, or profile it as categorical "
                 f"(categorical=[{name!r}]).", column=name)
    if arr.ndim != 1:
        fail(f"Column {name!r} must be 1-D, got shape {arr.shape}.",
             f"pass {name!r} as one value per row.", column=name)
    return arr


def _as_series(values: Any, name: str) -> pd.Series:
    import pandas as pd

    if isinstance(values, pd.Series):
        return values
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.ndim != 1:
        fail(f"Column {name!r} must be 1-D, got shape {arr.shape}.",
             f"pass {name!r} as one value per row.", column=name)
    try:
        return pd.Series(values)
    except (TypeError, ValueError) as exc:
        fail(f"Column {name!r} cannot be read as a column: {exc}.",
             f"pass {name!r} as a 1-D array or list.", column=name)


def _kind(series: pd.Series, name: str, categorical: set[str]) -> str:
    import pandas as pd

    dtype = series.dtype
    if name in categorical or pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) \
            or pd.api.types.is_object_dtype(dtype):
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        fail(f"Column {name!r} is complex-valued.", f"split {name!r} into real columns.",
             column=name)
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    fail(f"Column {name!r} has dtype {dtype}, which drift checks do not handle.",
         f"convert {name!r} to numbers (e.g. epoch seconds) or strings, or drop it.",
         column=name)


def as_columns(data: Any, what: str) -> dict[str, pd.Series]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        items = [(n, data.iloc[:, i]) for i, n in enumerate(names)]
    elif isinstance(data, Mapping):
        items = [(str(k), _as_series(v, str(k))) for k, v in data.items()]
        names = [n for n, _ in items]
    else:
        fail(f"{what} must be a pandas DataFrame or a mapping of column name to values, "
             f"got {type(data).__name__}.", "pass pandas.DataFrame(data).")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        fail(f"{what} has duplicate column names {dupes}.", "rename the duplicate columns.")
    lengths = {len(s) for _, s in items}
    if len(lengths) > 1:
        fail(f"The columns of {what} have different lengths {sorted(lengths)}.",
             "pass columns of one length (one value per row).")
    if not items or lengths == {0}:
        fail(f"{what} is empty (no columns or no rows).",
             "pass the training frame or a sample of production inputs.")
    return dict(items)


# ---------------------------------------------------------------------- profiles
def _numeric_profile(name: str, values: FloatArray, *, sample_cap: int, n_bins: int,
                     rng: np.random.Generator) -> NumericProfile:
    missing = np.isnan(values)
    n_missing = int(np.count_nonzero(missing))
    x = values[~missing] if n_missing else values
    if x.size and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        fail(f"Column {name!r} holds {bad} infinite value(s).",
             f"replace the infinities in {name!r} (clip, or set them missing) first.",
             column=name)
    n, total = int(x.size), int(values.size)
    rate = n_missing / total
    empty = np.empty(0, dtype=np.float64)
    if n == 0:
        nan = float("nan")
        return NumericProfile(name, 0, n_missing, rate, nan, nan, nan, nan, _frozen(empty),
                              _frozen(empty.copy()), _frozen(empty.copy()))
    sample = x if n <= sample_cap else x[rng.choice(n, size=sample_cap, replace=False)]
    sample = np.sort(sample)
    lo, hi = float(np.min(x)), float(np.max(x))
    qs = np.arange(1, n_bins) / n_bins
    cuts = np.unique(np.quantile(x, qs, method="inverted_cdf")) if n_bins > 1 else empty
    cuts = cuts[cuts < hi]
    edges = np.concatenate(([-np.inf], cuts, [np.inf]))
    counts = np.bincount(np.searchsorted(cuts, x, side="left"), minlength=cuts.size + 1)
    std = float(np.std(x, ddof=1)) if n > 1 else 0.0
    return NumericProfile(name, n, n_missing, rate, lo, hi, float(np.mean(x)), std,
                          _frozen(sample), _frozen(edges), _frozen(counts / n))


def _categorical_profile(name: str, series: pd.Series) -> CategoricalProfile:
    categories, counts, n_missing = categorical_counts(series, name)
    n = int(counts.sum())
    return CategoricalProfile(name, n, n_missing, n_missing / len(series), categories,
                              _frozen(counts))


def _profile_columns(data: Any, what: str, *, sample_cap: int, n_bins: int, seed: int,
                     categorical: set[str]) -> tuple[dict[str, ColumnProfile], int]:
    columns = as_columns(data, what)
    unknown = sorted(categorical - set(columns))
    if unknown and what == "data":
        fail(f"categorical= names {unknown}, which are not columns of the data.",
             "list only existing column names in categorical=.")
    seeds = np.random.SeedSequence(seed).spawn(len(columns))
    out: dict[str, ColumnProfile] = {}
    for (name, series), ss in zip(columns.items(), seeds, strict=True):
        if _kind(series, name, categorical) == "numeric":
            out[name] = _numeric_profile(name, numeric_values(series, name),
                                         sample_cap=sample_cap, n_bins=n_bins,
                                         rng=np.random.default_rng(ss))
        else:
            out[name] = _categorical_profile(name, series)
    return out, len(next(iter(columns.values())))


def build_profile(data: pd.DataFrame | Mapping[str, Any], *, sample_cap: int = 100_000,
                  n_bins: int = 10, seed: int = 0, categorical: Sequence[str] | None = None,
                  outputs: pd.DataFrame | Mapping[str, Any] | npt.ArrayLike | None = None
                  ) -> ReferenceProfile:
    """Profile every column of ``data`` (a DataFrame or a mapping name -> 1-D values).

    ``outputs`` (optional) profiles the model's outputs the same way; a bare 1-D array
    becomes the column ``prediction``. All-missing columns are kept with ``n == 0``.
    """
    import pandas as pd

    if isinstance(sample_cap, bool) or not isinstance(sample_cap, int | np.integer) \
            or sample_cap < 1:
        fail(f"sample_cap={sample_cap!r} must be a whole number >= 1.",
             "use the default sample_cap=100_000.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        fail(f"n_bins={n_bins!r} must be a whole number >= 1.", "use the default n_bins=10.")
    if isinstance(categorical, str):
        fail("categorical= must be a list of column names, got a single string.",
             f"pass categorical=[{categorical!r}].")
    forced = {str(c) for c in categorical or ()}
    settings = {"sample_cap": int(sample_cap), "n_bins": int(n_bins), "seed": int(seed)}
    columns, n_rows = _profile_columns(data, "data", categorical=forced, **settings)
    profiled_outputs: dict[str, ColumnProfile] = {}
    if outputs is not None:
        if not isinstance(outputs, pd.DataFrame | Mapping):
            outputs = {"prediction": outputs}
        profiled_outputs, _ = _profile_columns(outputs, "outputs", categorical=forced,
                                               **settings)
    return ReferenceProfile(columns, n_rows, profiled_outputs, **settings)
