"""Input checks shared by the statistics modules (private).

Every check raises :class:`mlops.errors.StatsError` naming the argument and the fix, so a
caller never sees a bare ``ValueError`` or a silent NaN from bad input.
"""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from mlops.errors import StatsError

__all__ = [
    "ArrayLike",
    "as_sample",
    "check_alpha",
    "check_count",
    "check_positive",
    "check_probability",
    "fail",
]

ArrayLike = npt.ArrayLike


def fail(message: str, fix: str, **context: object) -> NoReturn:
    """Raise the one error type of the statistics layer."""
    raise StatsError(message, fix=fix, **context)


def as_sample(values: ArrayLike, name: str, *, min_size: int = 0) -> npt.NDArray[np.float64]:
    """A 1-D float64 copy of ``values``; refuses NaN/inf, other shapes and short samples."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        fail(f"{name} is not numeric: {exc}.", f"pass {name} as a 1-D array of numbers.")
    if arr.ndim != 1:
        fail(f"{name} must be 1-D, got shape {arr.shape}.", f"flatten {name} first.")
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        fail(f"{name} holds {bad} NaN or infinite value(s).",
             f"drop or impute the missing values of {name} before testing.")
    if arr.size < min_size:
        fail(f"{name} has {arr.size} value(s); at least {min_size} are needed.",
             f"collect at least {min_size} observations in {name}.")
    return arr


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` must lie strictly between 0 and 1."""
    value = float(alpha)
    if not (0.0 < value < 1.0):
        fail(f"{name}={alpha!r} is not a probability strictly between 0 and 1.",
             f"use a {name} such as 0.05.")
    return value


def check_probability(p: float, name: str, *, open_interval: bool = False) -> float:
    """``p`` in [0, 1] (or (0, 1) when ``open_interval``)."""
    value = float(p)
    ok = 0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0
    if not ok or math.isnan(value):
        interval = "(0, 1)" if open_interval else "[0, 1]"
        fail(f"{name}={p!r} is not a probability in {interval}.",
             f"pass {name} as a fraction, e.g. 0.9 for 90%.")
    return value


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 when ``allow_zero``)."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        fail(f"{name}={value!r} must be a finite number {bound}.", f"pass a {name} {bound}.")
    return v


def check_count(successes: int, n: int, name: str) -> tuple[int, int]:
    """Non-negative integer counts with ``successes <= n``."""
    try:
        s, t = int(successes), int(n)
    except (TypeError, ValueError):
        fail(f"{name}: counts must be integers, got {successes!r} of {n!r}.",
             "pass whole numbers of successes and trials.")
    if s != successes or t != n or t < 0 or s < 0 or s > t:
        fail(f"{name}: {successes!r} successes out of {n!r} trials is not a valid count.",
             "pass 0 <= successes <= trials, both whole numbers.")
    return s, t
