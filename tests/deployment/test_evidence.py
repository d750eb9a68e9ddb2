"""Running evidence: sketches that match the exact figures, joins that find late halves
within their bound, and aggregates fed in pieces that equal one pass over everything."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from mlops.deployment.evidence import FEEDBACK_COLUMNS, Evidence
from mlops.deployment.joins import KeyIndex
from mlops.deployment.sketches import LatencySketch, Moments
from mlops.store.predlog import FEEDBACK_SCHEMA, PREDICTION_SCHEMA

NOW = 1_800_000_000.0


def predictions(ids: list[str], versions: list[str], *, ts: float = NOW - 60,
                status: int = 200, pred: str = "1", route: str = "stable",
                propensity: float | None = 0.5, latency: list[float] | None = None
                ) -> pa.Table:
    n = len(ids)
    columns = {
        "request_id": ids, "ts": [int(ts * 1e6)] * n, "model": ["m"] * n,
        "version": versions, "environment": ["production"] * n, "route": [route] * n,
        "unit_hash": [None] * n, "row": [0] * n, "inputs": ["{}"] * n,
        "prediction": [pred] * n, "prediction_num": [float(pred)] * n,
        "proba": [[0.2, 0.8]] * n, "latency_ms": latency or [2.0] * n, "status": [status] * n,
        "propensity": [propensity] * n, "caller": ["address:127.0.0.1"] * n,
        "cpu_ms": [0.1] * n, "date": ["2027-01-15"] * n}
    return pa.Table.from_pydict(columns, schema=PREDICTION_SCHEMA)


def labels(ids: list[str], actual: str = "1", ts: float = NOW - 30) -> pa.Table:
    n = len(ids)
    table = pa.Table.from_pydict({
        "request_id": ids, "row": [0] * n, "model": ["m"] * n, "actual": [actual] * n,
        "actual_num": [float(actual)] * n, "ts": [int(ts * 1e6)] * n,
        "date": ["2027-01-15"] * n}, schema=FEEDBACK_SCHEMA)
    return table.select(list(FEEDBACK_COLUMNS))


def evidence(window: float = 3600.0, delay: float = 0.0) -> Evidence:
    found = Evidence(environment="production", stable="1.0.0", candidate="1.1.0",
                     label_delay=delay, label_window=window)
    found.begin_step(0, NOW - 3600, 50.0)
    return found


NO_LABELS = labels([])


def test_latency_quantiles_are_within_half_a_percent_of_numpy() -> None:
    values = np.random.default_rng(0).gamma(4.0, 3.0, 50_000)
    sketch = LatencySketch()
    for part in np.array_split(values, 7):
        sketch.add(part)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.percentile(values, q * 100))
        assert abs(sketch.quantile(q) - exact) / exact < 0.006


def test_moments_fed_in_pieces_equal_numpy() -> None:
    values = np.random.default_rng(1).normal(3.0, 2.0, 10_001)
    moments = Moments()
    for part in np.array_split(values, 13):
        moments.add(part)
    assert moments.n == values.size
    assert moments.mean == pytest.approx(values.mean())
    assert moments.variance == pytest.approx(values.var(ddof=1))
    assert moments.mean_square == pytest.approx(np.mean(values ** 2))


def test_a_key_index_finds_each_row_once_and_forgets_old_ones() -> None:
    index = KeyIndex({"v": np.dtype(np.int64)}, capacity=1_000)
    for start in range(0, 100, 10):  # many small runs merge as they come
        keys = np.arange(start, start + 10, dtype=np.uint64)
        index.add(keys, keys.astype(np.int64), {"v": keys.astype(np.int64) * 2})
    assert len(index) == 100
    found, ts, cols = index.take(np.array([5, 55, 500], dtype=np.uint64), min_ts=0)
    assert found.tolist() == [True, True, False] and cols["v"].tolist() == [10, 110]
    assert ts.tolist() == [5, 55]
    again, _, _ = index.take(np.array([5], dtype=np.uint64), min_ts=0)
    assert not again.any()  # taken: gone
    old, _, _ = index.take(np.array([20], dtype=np.uint64), min_ts=50)
    assert not old.any()  # older than the bound: not matched
    index.expire(90)
    gone, _, _ = index.take(np.array([30], dtype=np.uint64), min_ts=0)
    assert not gone.any()
    index.expire(1_000)
    assert len(index) == 0 and index.dropped == 98  # all but the two taken


def test_a_key_index_drops_its_oldest_rows_beyond_its_capacity() -> None:
    index = KeyIndex({"v": np.dtype(np.int64)}, capacity=50)
    for start in range(0, 100, 25):
        keys = np.arange(start, start + 25, dtype=np.uint64)
        index.add(keys, keys.astype(np.int64), {"v": keys.astype(np.int64)})
    assert len(index) <= 50 and index.dropped >= 50
    found, _, _ = index.take(np.array([99], dtype=np.uint64), min_ts=0)
    assert found.all()  # the newest rows stay


def test_counts_fed_tick_by_tick_equal_one_pass_over_everything() -> None:
    rng = np.random.default_rng(2)
    ids = [f"r{i}" for i in range(3000)]
    versions = [("1.0.0", "1.1.0")[v] for v in rng.integers(0, 2, len(ids))]
    latency = rng.gamma(4.0, 1.0, len(ids)).tolist()
    preds = predictions(ids, versions, latency=latency)
    feedback = labels(ids[::3], actual="1")
    whole = evidence()
    whole.ingest(preds, feedback, NOW)
    whole.settle(NOW, 5.0)
    pieces = evidence()
    labelled = set(ids[::3])
    for lo in range(0, len(ids), 500):  # labels come early, and some twice
        pieces.ingest(preds.slice(lo, 500),
                      labels([i for i in ids[max(lo - 500, 0):lo + 1000] if i in labelled]),
                      NOW)
        pieces.settle(NOW, 5.0)
    for arm in (0, 1):
        assert pieces.traffic[arm].requests == whole.traffic[arm].requests
        assert pieces.traffic[arm].latency.quantile(0.99) == \
            whole.traffic[arm].latency.quantile(0.99)
        assert pieces.quality[arm].n == whole.quality[arm].n > 0
        assert pieces.quality[arm].correct == whole.quality[arm].correct
    assert pieces.split.settled == whole.split.settled == \
        [whole.traffic[0].requests, whole.traffic[1].requests]


def test_a_label_later_than_the_window_is_not_counted() -> None:
    found = evidence(window=600.0)
    found.ingest(predictions(["a", "b"], ["1.0.0", "1.1.0"], ts=NOW - 3600), NO_LABELS, NOW)
    found.ingest(predictions(["c", "d"], ["1.0.0", "1.1.0"], ts=NOW - 60), NO_LABELS, NOW)
    found.ingest(predictions([], []), labels(["a", "b", "c", "d"]), NOW)
    found.settle(NOW, 5.0)
    assert [q.n for q in found.quality] == [1, 1]  # a and b waited an hour: too late


def test_labels_count_once_their_prediction_is_mature() -> None:
    found = evidence(delay=300.0)
    found.ingest(predictions(["a", "b"], ["1.0.0", "1.1.0"], ts=NOW - 60),
                 labels(["a", "b"]), NOW)
    found.settle(NOW, 5.0)
    assert [q.n for q in found.quality] == [0, 0]  # labelled, not mature yet
    found.settle(NOW + 300, 5.0)
    assert [q.n for q in found.quality] == [1, 1]


def test_the_split_check_counts_rows_once_they_settled_and_only_this_steps_split() -> None:
    found = evidence()
    fresh = NOW - 2
    found.ingest(predictions(["a", "b"], ["1.0.0", "1.1.0"], ts=fresh), NO_LABELS, NOW)
    found.ingest(predictions(["c"], ["1.0.0"], ts=fresh, propensity=1.0), NO_LABELS, NOW)
    found.settle(NOW, 5.0)
    assert found.split.settled == [0, 0]  # two seconds old: still settling
    found.settle(NOW + 5, 5.0)
    assert found.split.settled == [1, 1]  # c was routed under another split


def test_shadow_halves_pair_up_whichever_arrives_first() -> None:
    found = Evidence(environment="production", stable="1.0.0", candidate="1.1.0",
                     label_delay=0.0, label_window=3600.0, shadow=True)
    found.ingest(predictions(["p", "q"], ["1.1.0", "1.1.0"], route="shadow", pred="0"),
                 labels(["p"], actual="1"), NOW)
    found.ingest(predictions(["p", "q"], ["1.0.0", "1.0.0"], route="stable", pred="1"),
                 NO_LABELS, NOW)
    found.settle(NOW, 5.0)
    assert found.pairs.n == 2 and found.pairs.agree == 0
    assert found.pairs.table == [[0, 1], [0, 0]]  # p: stable right, shadow wrong


def test_a_tick_time_label_join_stays_small(benchmark_rows: int = 200_000) -> None:
    """Adding a few new rows to a large waiting index costs about as much as the new rows,
    not the index."""
    found = evidence(window=10 * 86_400.0)
    ids = [f"r{i}" for i in range(benchmark_rows)]
    found.ingest(predictions(ids, ["1.0.0"] * benchmark_rows), NO_LABELS, NOW)
    started = time.perf_counter()
    found.ingest(predictions(["new"], ["1.1.0"]), labels(["new", "r7"]), NOW)
    found.settle(NOW, 5.0)
    assert time.perf_counter() - started < 0.2
    assert [q.n for q in found.quality] == [1, 1]
