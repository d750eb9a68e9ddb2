"""A rollout's running evidence: everything its analysis needs, kept as aggregates.

The controller feeds each tick's *new* prediction-log rows to :meth:`Evidence.ingest` (the
cursor that finds them is in :mod:`mlops.deployment.traffic`); nothing already counted is
read again, so a tick costs O(new rows). Per arm it keeps:

- **traffic** (one row per request: row 0, fallback rows left out): requests, 5xx errors
  and a latency sketch of the successful ones (:mod:`mlops.deployment.sketches`);
- **the split check** of the current step: requests answered under the step's split
  (propensity), counted once they are ``srm_settle_seconds`` old; rows still settling wait
  in a buffer of their timestamps (a few seconds of traffic);
- **quality**: predictions meet their labels in a :class:`LabelJoin`; a labelled
  prediction counts once it is ``label_delay`` old: accuracy counts, F1 counts, ROC-AUC
  histograms and the moments of the absolute error;
- **shadow pairs** (shadow rollouts): the stable and shadow answers to one request meet in a
  :class:`~mlops.deployment.joins.KeyIndex`; pairs give agreement and the shadow's errors,
  labelled pairs the paired (McNemar) counts.

Late labels are joined to predictions still waiting in the index: the bound is
``label_window`` (see :mod:`mlops.deployment.joins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlops.deployment.joins import (
    DEFAULT_CAPACITY,
    Columns,
    Dtypes,
    KeyIndex,
    row_keys,
    text_hashes,
)
from mlops.deployment.sketches import LatencySketch, Moments, ScoreHistogram

__all__ = ["ARMS", "FEEDBACK_COLUMNS", "PREDICTION_COLUMNS", "ArmQuality", "ArmTraffic",
           "Evidence", "LabelJoin", "PairCounts", "SplitCheck"]

#: arm index 0 is stable, 1 the candidate
ARMS = ("stable", "candidate")
#: the log columns the analysis reads (never ``inputs``)
PREDICTION_COLUMNS = ("request_id", "ts", "version", "environment", "route", "row",
                      "prediction", "prediction_num", "proba", "latency_ms", "status",
                      "propensity")
FEEDBACK_COLUMNS = ("request_id", "row", "actual", "actual_num", "ts")
_LABEL: Dtypes = {"actual_num": np.dtype(np.float64), "actual_hash": np.dtype(np.uint64)}
_US = 1_000_000


def _us(seconds: float) -> int:
    return int(seconds * _US)


def _np(column: pa.ChunkedArray | pa.Array, fill: float | bool | None = None
        ) -> npt.NDArray[Any]:
    if fill is not None:
        column = pc.fill_null(column, fill)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _ts(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False),
                      dtype=np.int64)


def _concat(parts: list[Columns], names: list[str]) -> Columns:
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


class LabelJoin:
    """Rows (with a payload) meet their labels; a match counts once ``delay`` old."""

    def __init__(self, payload: Dtypes, *, delay: float, window: float,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.delay, self.window = delay, window
        self.waiting = KeyIndex(payload, capacity=capacity)  # rows without their label
        self.orphans = KeyIndex(_LABEL, capacity=capacity)  # labels before their row
        self._names = [*payload, *_LABEL]
        self._matched: list[tuple[npt.NDArray[np.int64], Columns]] = []  # not mature yet

    def add_rows(self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64],
                 payload: Columns, now: float) -> None:
        found, _, labels = self.orphans.take(keys, _us(now - self.window))
        if found.any():
            self._matched.append((ts[found], {**{k: v[found] for k, v in payload.items()},
                                              **labels}))
        rest = ~found
        self.waiting.add(keys[rest], ts[rest], {k: v[rest] for k, v in payload.items()})

    def add_labels(self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64],
                   labels: Columns, now: float) -> None:
        # the last label of a row wins within a batch
        _, last = np.unique(keys[::-1], return_index=True)
        keep = np.sort(keys.size - 1 - last)
        keys, ts, labels = keys[keep], ts[keep], {k: v[keep] for k, v in labels.items()}
        found, row_ts, payload = self.waiting.take(keys, _us(now - self.window))
        if found.any():
            self._matched.append((row_ts, {**payload,
                                           **{k: v[found] for k, v in labels.items()}}))
        rest = ~found
        self.orphans.take(keys[rest], 0)  # a newer label replaces a waiting one
        self.orphans.add(keys[rest], ts[rest], {k: v[rest] for k, v in labels.items()})

    def mature(self, now: float) -> Columns | None:
        """Matches whose row is at least ``delay`` old (removed); None when there are
        none. Rows and labels older than ``window`` are forgotten here."""
        cut = _us(now - self.window)
        self.waiting.expire(cut)
        self.orphans.expire(cut)
        if not self._matched:
            return None
        ts = np.concatenate([t for t, _ in self._matched])
        cols = _concat([c for _, c in self._matched], self._names)
        ripe = ts <= _us(now - self.delay)
        self._matched = [(ts[~ripe], {k: v[~ripe] for k, v in cols.items()})] \
            if (~ripe).any() else []
        return {k: v[ripe] for k, v in cols.items()} if ripe.any() else None

    @property
    def unmatched(self) -> int:
        """Labels dropped without their prediction (too late, or never logged)."""
        return self.orphans.dropped


@dataclass
class ArmTraffic:
    """Requests of one arm (row 0 of each, fallback rows left out)."""

    requests: int = 0
    errors: int = 0  # status >= 500
    latency: LatencySketch = field(default_factory=LatencySketch)  # of successful requests


@dataclass
class SplitCheck:
    """Requests answered under the current step's split, for the sample-ratio check."""

    step: int = -1
    since_us: int = 0
    shares: tuple[float, float] = (1.0, 0.0)  # (stable, candidate) propensities
    settled: list[int] = field(default_factory=lambda: [0, 0])
    pending: list[list[npt.NDArray[np.int64]]] = field(default_factory=lambda: [[], []])

    def settle(self, cut_us: int) -> None:
        for arm in (0, 1):
            if not self.pending[arm]:
                continue
            ts = np.concatenate(self.pending[arm])
            ripe = ts <= cut_us
            self.settled[arm] += int(ripe.sum())
            self.pending[arm] = [ts[~ripe]] if (~ripe).any() else []


@dataclass
class ArmQuality:
    """Labelled, mature predictions of one arm."""

    n: int = 0
    correct: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    f1_valid: bool = True  # labels and predictions are 0/1, no missing label
    binary_labels: bool = True
    auc_valid: bool = True  # every row has two class probabilities and a 0/1 label
    scores: ScoreHistogram = field(default_factory=ScoreHistogram)
    abs_error: Moments = field(default_factory=Moments)

    def f1(self) -> float | None:
        if not self.n or not self.f1_valid:
            return None
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 0.0

    def auc(self) -> float | None:
        return self.scores.auc() if self.n and self.auc_valid and self.binary_labels \
            else None


@dataclass
class PairCounts:
    """Shadow pairs: both versions' answers to the same request."""

    n: int = 0
    shadow_errors: int = 0
    agree: int = 0
    #: labelled pairs: [[both right, stable only], [candidate only, both wrong]]
    table: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])

    @property
    def labelled(self) -> int:
        return sum(map(sum, self.table))


_ROW: Dtypes = {"arm": np.dtype(np.int8), "pred_num": np.dtype(np.float64),
        "pred_hash": np.dtype(np.uint64), "p1": np.dtype(np.float64)}
_HALF: Dtypes = {"status": np.dtype(np.int32), "pred_num": np.dtype(np.float64),
         "pred_hash": np.dtype(np.uint64)}
_PAIR: Dtypes = {"pn_s": np.dtype(np.float64), "ph_s": np.dtype(np.uint64),
         "pn_c": np.dtype(np.float64), "ph_c": np.dtype(np.uint64)}


def _right(pred_num: npt.NDArray[Any], pred_hash: npt.NDArray[Any], label: Columns
           ) -> npt.NDArray[np.bool_]:
    """Is each prediction right? Numbers compare as numbers, anything else as text."""
    numeric = ~np.isnan(pred_num) & ~np.isnan(label["actual_num"])
    return np.where(numeric, pred_num == label["actual_num"], pred_hash == label["actual_hash"])


class Evidence:
    """The running evidence of one rollout (see the module docstring)."""

    def __init__(self, *, environment: str, stable: str, candidate: str, label_delay: float,
                 label_window: float, shadow: bool = False,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.environment, self.stable, self.candidate = environment, stable, candidate
        self.shadow = shadow
        self.traffic = (ArmTraffic(), ArmTraffic())
        self.split = SplitCheck()
        self.quality = (ArmQuality(), ArmQuality())
        self.labels_seen_nan = False  # a label or prediction that is not a number
        self.labels_seen_fraction = False  # a fractional label or prediction
        self.labels = LabelJoin(_ROW, delay=label_delay, window=label_window,
                                capacity=capacity)
        self.pairs = PairCounts()
        self.halves = (KeyIndex({**_HALF}, capacity=capacity),
                       KeyIndex({**_HALF}, capacity=capacity))  # stable, shadow halves
        self.pair_labels = LabelJoin(_PAIR, delay=label_delay, window=label_window,
                                     capacity=capacity)
        self.rows = 0  # prediction rows ingested (this rollout's, after filtering)

    # ------------------------------------------------------------------ steps
    def begin_step(self, step: int, since: float, weight: float) -> None:
        """Start the split check of step ``step`` (its split applies from ``since``)."""
        if step != self.split.step:
            self.split = SplitCheck(step, _us(since), (1.0 - weight / 100.0, weight / 100.0))

    @property
    def is_regression(self) -> bool:
        """Numeric labels with fractional values (or predictions) mean a regression."""
        return self.labels_seen_fraction and not self.labels_seen_nan

    # ------------------------------------------------------------------ ingest
    def ingest(self, predictions: pa.Table, feedback: pa.Table, now: float) -> None:
        """Add new log rows (of this rollout's model, since it started)."""
        if predictions.num_rows:
            predictions = predictions.filter(pc.and_(
                pc.equal(predictions["environment"], self.environment),
                pc.is_in(predictions["version"],
                         value_set=pa.array([self.stable, self.candidate]))))
        if predictions.num_rows:
            self.rows += predictions.num_rows
            if self.shadow:
                self._ingest_halves(predictions, now)
            else:
                self._ingest_split(predictions, now)
        if feedback.num_rows:
            keys = row_keys(feedback["request_id"], feedback["row"])
            labels = {"actual_num": _np(feedback["actual_num"], np.nan).astype(float),
                      "actual_hash": text_hashes(feedback["actual"])}
            ts = _ts(feedback["ts"])
            target = self.pair_labels if self.shadow else self.labels
            target.add_labels(keys, ts, labels, now)

    def _ingest_split(self, t: pa.Table, now: float) -> None:
        route = t["route"]
        t = t.filter(pc.and_(pc.not_equal(route, "fallback"), pc.not_equal(route, "shadow")))
        if not t.num_rows:
            return
        arm = _np(pc.equal(t["version"], self.candidate), False).astype(np.int8)
        status = _np(t["status"], 0).astype(np.int64)
        ts = _ts(t["ts"])
        first = _np(t["row"], 0) == 0
        latency = _np(t["latency_ms"], np.nan).astype(float)
        propensity = _np(t["propensity"], np.nan).astype(float)
        for a in (0, 1):
            mine = first & (arm == a)
            traffic = self.traffic[a]
            traffic.requests += int(mine.sum())
            traffic.errors += int((mine & (status >= 500)).sum())
            traffic.latency.add(latency[mine & (status < 500)])
            share = self.split.shares[a]
            routed = mine & (ts >= self.split.since_us) & (
                np.isnan(propensity) | (np.abs(propensity - share) < 1e-6))
            if routed.any():
                self.split.pending[a].append(ts[routed])
        ok = status < 500
        if not ok.any():
            return
        rows = t.filter(pa.array(ok))
        self.labels.add_rows(row_keys(rows["request_id"], rows["row"]), ts[ok],
                             {"arm": arm[ok], "pred_num": _np(rows["prediction_num"],
                                                              np.nan).astype(float),
                              "pred_hash": text_hashes(rows["prediction"]),
                              "p1": _positive_proba(rows["proba"])}, now)

    def _ingest_halves(self, t: pa.Table, now: float) -> None:
        route, version = t["route"], t["version"]
        cut = _us(now - self.labels.window)
        for side, (want_route, want_version) in enumerate((("stable", self.stable),
                                                           ("shadow", self.candidate))):
            half = t.filter(pc.and_(pc.equal(route, want_route),
                                    pc.equal(version, want_version)))
            if not half.num_rows:
                continue
            keys = row_keys(half["request_id"], half["row"])
            ts = _ts(half["ts"])
            cols = {"status": _np(half["status"], 0).astype(np.int32),
                    "pred_num": _np(half["prediction_num"], np.nan).astype(float),
                    "pred_hash": text_hashes(half["prediction"])}
            found, other_ts, other = self.halves[1 - side].take(keys, cut)
            if found.any():
                mine = {k: v[found] for k, v in cols.items()}
                stable, shadow = (mine, other) if side == 0 else (other, mine)
                self._pairs(keys[found], ts[found] if side == 0 else other_ts, stable, shadow,
                            now)
            rest = ~found
            self.halves[side].add(keys[rest], ts[rest], {k: v[rest] for k, v in cols.items()})
        for index in self.halves:
            index.expire(cut)

    def _pairs(self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64],
               stable: Columns, shadow: Columns, now: float) -> None:
        """Count new pairs (``ts``: the stable answer's) and let the answered ones wait for
        their label."""
        self.pairs.n += int(keys.size)
        self.pairs.shadow_errors += int((shadow["status"] >= 500).sum())
        self.pairs.agree += int((stable["pred_hash"] == shadow["pred_hash"]).sum())
        ok = (stable["status"] < 500) & (shadow["status"] < 500)
        if ok.any():
            self.pair_labels.add_rows(keys[ok], ts[ok], {
                "pn_s": stable["pred_num"][ok], "ph_s": stable["pred_hash"][ok],
                "pn_c": shadow["pred_num"][ok], "ph_c": shadow["pred_hash"][ok]}, now)

    # ------------------------------------------------------------------ settle
    def settle(self, now: float, settle_seconds: float) -> None:
        """Count what has matured by ``now``: settled split rows and ripe labels."""
        self.split.settle(_us(now - settle_seconds))
        ripe = self.labels.mature(now)
        if ripe is not None:
            self._fold_quality(ripe)
        ripe = self.pair_labels.mature(now)
        if ripe is not None:
            s_ok = _right(ripe["pn_s"], ripe["ph_s"], ripe)
            c_ok = _right(ripe["pn_c"], ripe["ph_c"], ripe)
            t = self.pairs.table
            t[0][0] += int((s_ok & c_ok).sum())
            t[0][1] += int((s_ok & ~c_ok).sum())
            t[1][0] += int((~s_ok & c_ok).sum())
            t[1][1] += int((~s_ok & ~c_ok).sum())

    def _fold_quality(self, ripe: Columns) -> None:
        pred, actual = ripe["pred_num"], ripe["actual_num"]
        both = ~np.isnan(pred) & ~np.isnan(actual)
        if not both.all():
            self.labels_seen_nan = True
        if np.any(np.mod(pred[both], 1) != 0) or np.any(np.mod(actual[both], 1) != 0):
            self.labels_seen_fraction = True
        right = _right(pred, ripe["pred_hash"], ripe)
        for a in (0, 1):
            mine = ripe["arm"] == a
            if not mine.any():
                continue
            q = self.quality[a]
            p, y, ok = pred[mine], actual[mine], right[mine]
            q.n += int(mine.sum())
            q.correct += int(ok.sum())
            values = np.concatenate([y, p[~np.isnan(p)]])
            if np.isnan(y).any() or not np.isin(values, (0.0, 1.0)).all():
                q.f1_valid = False
            q.tp += int(((y == 1) & (p == 1)).sum())
            q.fp += int(((y == 0) & (p == 1)).sum())
            q.fn += int(((y == 1) & (p != 1)).sum())
            scores = ripe["p1"][mine]
            if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
                q.binary_labels = False
            if np.isnan(scores).any():
                q.auc_valid = False
            if q.auc_valid and q.binary_labels:
                q.scores.add(scores, y == 1)
            mine_both = both[mine]
            q.abs_error.add(np.abs(p[mine_both] - y[mine_both]))


def _positive_proba(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """The second class probability of rows that log exactly two (NaN otherwise)."""
    lengths = _np(pc.list_value_length(column), -1).astype(np.int64)
    out = np.full(len(lengths), np.nan)
    two = lengths == 2
    if two.any():
        values = pc.list_element(column.filter(pa.array(two)), 1)
        out[two] = _np(values, np.nan).astype(float)
    return out
