"""Concept drift on an error stream: ADWIN, Page-Hinkley and DDM (via ``river.drift``).

The input is one number per scored request, in arrival order: ``1`` for a wrong prediction
and ``0`` for a right one, or a per-request loss (ADWIN and Page-Hinkley only; DDM needs 0/1).

- ``adwin`` - ADaptive WINdowing: keeps the longest recent window whose two halves have
  equal means (Hoeffding-type bound at ``delta``). Bifet & Gavalda, SDM 2007.
- ``page_hinkley`` - cumulative deviation from the running mean, minus ``delta`` per step;
  signals when it rises ``threshold`` above its minimum. Page, Biometrika 41 (1954).
- ``ddm`` - Drift Detection Method: signals when ``p_i + s_i`` exceeds the smallest
  ``p_min + drift_threshold * s_min`` seen so far. Gama et al., SBIA 2004.

Defaults (river's own defaults fire too often on long 0/1 streams, so ours differ)::

    method        parameters                                  false alarms    delay p10 -> p20
    adwin         delta=0.002, clock=32 (river's defaults)    0.0% (0/1000)   median 311, p90 503
    page_hinkley  mode="up", delta=0.05, threshold=15,        0.0% (0/1000)   median 257, p90 471
                  alpha=1 (no forgetting), min_instances=30
    ddm           warm_start=1000, warning_threshold=2.0,     1.2% (12/1000)  median 655, p90 1141
                  drift_threshold=3.75

False alarms: share of seeded Bernoulli(0.1) streams of 10,000 points with any drift signal.
Delay: samples from the change to the first signal after it, for 5,000 points at a 10% error
rate followed by 5,000 at 20% (1,000 seeded streams; every change detected). On 30 stable
streams of 100,000 points (rebasing active) the defaults raised 0 (ADWIN), 0 (Page-Hinkley) and
1 (DDM) alarms in 3 million points; with a change after 40,000 stable points the median delays
were 303, 274 and 971 (DDM slows down as its history grows). River's defaults give, on the
10,000-point streams, 2.3% (Page-Hinkley, ``delta=0.005, threshold=50``, two-sided) and 46%
(DDM, ``warm_start=30, drift_threshold=3``) false alarms. River's forgetting factor
``alpha=0.9999`` makes Page-Hinkley's statistic stationary after ~10,000 points; with it (and
``threshold=20``) the long streams saw 0.19 alarms per 10,000 points, hence ``alpha=1``.
Page-Hinkley's ``delta`` and ``threshold`` are in the units of the stream: the defaults suit 0/1
errors at base rates of a few percent to ~30%; scale them (or standardise the loss) for other
streams. DDM cannot fire in the first ``warm_start`` samples after a start or a detection.

Streaming and state: :class:`ConceptDriftMonitor` wraps one river detector. River's ADWIN is a
Rust object that cannot be serialised, so the monitor's state is *replayable*: it stores the
values fed since the detector last restarted (river restarts every detector on the update after
a detection; a 0/1 history is stored as a string of digits, one byte per value) and
:meth:`ConceptDriftMonitor.from_state` re-feeds them, which rebuilds the detector exactly. To
bound that state, when ``max_history`` values have accumulated without a detection the monitor
*rebases*: it rebuilds its detector from the most recent ``max_history // 2`` values (a
detection inside that replay is not reported; the history then starts after it);
``max_history`` must be at least twice the method's warm-up (``grace_period``,
``min_instances`` or ``warm_start``) so a rebased detector is warm. A rebased and a restored
monitor run the same code, so a restored monitor makes exactly the decisions of an
uninterrupted one. :func:`detect_concept_drift` runs the same monitor over a whole stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift as river_drift

from mlops.stats._checks import ArrayLike, as_sample, fail

__all__ = [
    "CONCEPT_METHODS",
    "DEFAULT_CONCEPT_PARAMS",
    "ConceptDriftMonitor",
    "ConceptDriftResult",
    "detect_concept_drift",
]

CONCEPT_METHODS = ("adwin", "page_hinkley", "ddm")

ParamValue = int | float | str

DEFAULT_CONCEPT_PARAMS: Mapping[str, Mapping[str, ParamValue]] = {
    "adwin": {"delta": 0.002, "clock": 32, "max_buckets": 5, "min_window_length": 5,
              "grace_period": 10},
    "page_hinkley": {"min_instances": 30, "delta": 0.05, "threshold": 15.0,
                     "alpha": 1.0, "mode": "up"},
    "ddm": {"warm_start": 1000, "warning_threshold": 2.0, "drift_threshold": 3.75},
}
_INT_PARAMS = frozenset({"clock", "max_buckets", "min_window_length", "grace_period",
                         "min_instances", "warm_start"})
_STATE_VERSION = 1
DEFAULT_MAX_HISTORY = 20_000


@dataclass(frozen=True)
class ConceptDriftResult:
    """Drift signals over one error stream.

    ``drift_points`` are 0-based indices of the values at which a detector signalled;
    ``mean_before``/``mean_after`` are the mean of the stream before and from
    ``first_drift`` on (``None`` without a drift).
    """

    method: str
    params: dict[str, ParamValue]
    n: int
    drift_points: tuple[int, ...]
    first_drift: int | None
    detected: bool
    mean_before: float | None
    mean_after: float | None

    @property
    def n_drifts(self) -> int:
        return len(self.drift_points)


def _check_method(method: str) -> str:
    if method not in CONCEPT_METHODS:
        fail(f"method={method!r} is not one of {CONCEPT_METHODS}.",
             "use 'adwin' (any numeric stream), 'page_hinkley' or 'ddm' (0/1 errors only).",
             method=method)
    return method


def _resolve_params(method: str, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Defaults overlaid with ``params``; unknown names and wrong types are refused."""
    defaults = DEFAULT_CONCEPT_PARAMS[method]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        fail(f"{method} has no parameter(s) {unknown}.",
             f"use only {sorted(defaults)}.", method=method)
    out: dict[str, ParamValue] = dict(defaults)
    for key, value in params.items():
        if key == "mode":
            if value not in ("up", "down", "both"):
                fail(f"mode={value!r} is not 'up', 'down' or 'both'.",
                     "use mode='up' to watch for a rising error rate.", method=method)
            out[key] = str(value)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(float(value)):
            fail(f"{method} parameter {key}={value!r} is not a finite number.",
                 f"pass {key} as a number, e.g. {defaults[key]!r}.", method=method)
        if key in _INT_PARAMS:
            if float(value) != int(value) or int(value) < 0:
                fail(f"{method} parameter {key}={value!r} is not a non-negative whole number.",
                     f"pass {key} as an integer, e.g. {defaults[key]!r}.", method=method)
            out[key] = int(value)
        else:
            if float(value) <= 0:
                fail(f"{method} parameter {key}={value!r} must be > 0.",
                     f"pass a positive {key}, e.g. {defaults[key]!r}.", method=method)
            out[key] = float(value)
    if method == "adwin" and not 0 < float(out["delta"]) < 1:
        fail(f"adwin delta={out['delta']!r} is not in (0, 1).",
             "use a small confidence such as 0.002.", method=method)
    if method == "page_hinkley" and not 0 < float(out["alpha"]) <= 1:
        fail(f"page_hinkley alpha={out['alpha']!r} is not in (0, 1].",
             "use a forgetting factor close to 1, e.g. 0.9999.", method=method)
    if method == "ddm" and float(out["drift_threshold"]) < float(out["warning_threshold"]):
        fail("ddm drift_threshold is below warning_threshold.",
             "pass drift_threshold >= warning_threshold.", method=method)
    return out


def _make_detector(method: str, params: Mapping[str, ParamValue]) -> Any:
    kwargs: dict[str, Any] = dict(params)
    try:
        if method == "adwin":
            return river_drift.ADWIN(**kwargs)
        if method == "page_hinkley":
            return river_drift.PageHinkley(**kwargs)
        return river_drift.binary.DDM(**kwargs)
    except (TypeError, ValueError) as exc:
        fail(f"river refused the {method} parameters {dict(params)}: {exc}.",
             "check the parameter values against river.drift's documentation.", method=method)


def _check_value(method: str, x: float, name: str = "x") -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        fail(f"{name}={x!r} is not a number.", "feed 1/0 errors or per-request losses.")
    if not math.isfinite(v):
        fail(f"{name}={x!r} is NaN or infinite.", "drop requests without a label or loss.")
    if method == "ddm" and v not in (0.0, 1.0):
        fail(f"ddm needs 0/1 errors, got {name}={x!r}.",
             "feed 1 for a wrong and 0 for a right prediction, or use method='adwin'.",
             method=method)
    return v


def _encode(values: list[float]) -> str | list[float]:
    """0/1 histories as a compact string of digits, others as a list of floats."""
    if all(v == 0.0 or v == 1.0 for v in values):
        return "".join("1" if v else "0" for v in values)
    return list(values)


def _decode(history: Any) -> list[float]:
    if isinstance(history, str):
        if history.strip("01"):
            raise ValueError("history string holds characters other than 0 and 1")
        return [1.0 if c == "1" else 0.0 for c in history]
    return [float(v) for v in history]


class ConceptDriftMonitor:
    """One streaming concept-drift detector with JSON-able, replayable state.

    ``update(x)`` returns ``True`` when the detector signals at this value. After a signal
    the detector starts afresh on the next value (river's behaviour).
    """

    def __init__(self, method: str = "adwin", *, max_history: int = DEFAULT_MAX_HISTORY,
                 **params: Any) -> None:
        self.method = _check_method(method)
        self.params = _resolve_params(self.method, params)
        if isinstance(max_history, bool) or not isinstance(max_history, int) \
                or max_history < 2:
            fail(f"max_history={max_history!r} is not a whole number >= 2.",
                 f"use the default {DEFAULT_MAX_HISTORY} or a similar size.")
        warm = {"adwin": "grace_period", "page_hinkley": "min_instances",
                "ddm": "warm_start"}[self.method]
        if max_history < 2 * int(self.params[warm]):
            fail(f"max_history={max_history} is below twice {warm}={self.params[warm]}, so the "
                 "detector would be blind after rebasing.",
                 f"use max_history >= {2 * int(self.params[warm])} or a smaller {warm}.",
                 method=self.method)
        self.max_history = max_history
        self.n = 0
        self.n_drifts = 0
        self.last_drift: int | None = None
        self._history: list[float] = []
        self._detector = _make_detector(self.method, self.params)

    @property
    def warning(self) -> bool:
        """DDM's warning zone after the last value (always ``False`` for other methods)."""
        return bool(getattr(self._detector, "warning_detected", False))

    @property
    def history_size(self) -> int:
        """Values held in the state (fed since the detector last restarted)."""
        return len(self._history)

    def update(self, x: float) -> bool:
        """Feed one value; ``True`` when drift is detected at it."""
        v = _check_value(self.method, x)
        if len(self._history) >= self.max_history:
            self._rebuild(self._history[-(self.max_history // 2):])
        self._detector.update(v)
        index = self.n
        self.n += 1
        if self._detector.drift_detected:
            self.n_drifts += 1
            self.last_drift = index
            self._history = []  # river restarts the detector on the next value
            return True
        self._history.append(v)
        return False

    def update_many(self, values: Iterable[float]) -> list[int]:
        """Feed values in order; the stream indices at which drift was detected."""
        hits: list[int] = []
        for x in values:
            if self.update(x):
                hits.append(self.n - 1)
        return hits

    def _rebuild(self, values: list[float]) -> None:
        """A fresh detector fed ``values``; history restarts after an in-replay signal."""
        detector = _make_detector(self.method, self.params)
        start = 0
        for i, v in enumerate(values):
            detector.update(v)
            if detector.drift_detected:
                start = i + 1
        self._detector = detector
        self._history = list(values[start:])

    def state(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_state` restores an identical monitor."""
        return {"kind": "concept_drift_monitor", "version": _STATE_VERSION,
                "method": self.method, "params": dict(self.params),
                "max_history": self.max_history, "n": self.n, "n_drifts": self.n_drifts,
                "last_drift": self.last_drift, "history": _encode(self._history)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ConceptDriftMonitor:
        """Rebuild a monitor from :meth:`state` output by replaying its history."""
        if not isinstance(state, Mapping) or state.get("kind") != "concept_drift_monitor":
            fail("state is not a ConceptDriftMonitor state.",
                 "pass the dict returned by ConceptDriftMonitor.state().")
        if state.get("version") != _STATE_VERSION:
            fail(f"state version {state.get('version')!r} is not supported "
                 f"(expected {_STATE_VERSION}).", "start a new monitor for this stream.")
        try:
            monitor = cls(str(state["method"]), max_history=int(state["max_history"]),
                          **dict(state["params"]))
            n, n_drifts = int(state["n"]), int(state["n_drifts"])
            last = state["last_drift"]
            history = [_check_value(monitor.method, v, "history value")
                       for v in _decode(state["history"])]
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"state is incomplete or malformed: {exc!r}.",
                 "pass the dict returned by ConceptDriftMonitor.state() unchanged.")
        if len(history) > monitor.max_history or len(history) > n or n_drifts < 0:
            fail("state is inconsistent (history longer than the stream or the limit).",
                 "pass the dict returned by ConceptDriftMonitor.state() unchanged.")
        monitor._rebuild(history)
        monitor.n, monitor.n_drifts = n, n_drifts
        monitor.last_drift = None if last is None else int(last)
        return monitor


def detect_concept_drift(errors: ArrayLike, *, method: str = "adwin",
                         max_history: int = DEFAULT_MAX_HISTORY,
                         **params: Any) -> ConceptDriftResult:
    """Run one detector over a whole error stream (see the module doc for the defaults)."""
    method = _check_method(method)
    arr = as_sample(errors, "errors")
    if method == "ddm" and arr.size and not np.all((arr == 0) | (arr == 1)):
        fail("ddm needs 0/1 errors, but errors holds other values.",
             "feed 1 for a wrong and 0 for a right prediction, or use method='adwin'.",
             method=method)
    monitor = ConceptDriftMonitor(method, max_history=max_history, **params)
    points = tuple(monitor.update_many(arr.tolist()))
    first = points[0] if points else None
    before = after = None
    if first is not None:
        before = float(arr[:first].mean()) if first > 0 else None
        after = float(arr[first:].mean())
    return ConceptDriftResult(method=method, params=dict(monitor.params), n=int(arr.size),
                              drift_points=points, first_drift=first,
                              detected=first is not None, mean_before=before,
                              mean_after=after)
