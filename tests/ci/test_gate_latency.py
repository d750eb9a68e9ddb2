"""Tests for the latency gate: behaviour checks with generous margins, not benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from mlops.ci.gates import latency
from mlops.ci.gates.base import GateContext
from mlops.flavors.base import LoadedModel
from mlops.flavors.estimator import wrap_estimator


class Sleepy:
    """Sleeps 5 ms on every predict call."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows: list[int] = []

    def predict(self, X: Any) -> np.ndarray:
        self.calls += 1
        self.rows.append(len(X))
        time.sleep(0.005)
        return np.zeros(len(X))


def make_ctx(model: LoadedModel, X: pd.DataFrame) -> GateContext:
    return GateContext(model=model, model_name="m", artifact_path=Path("unused"), frame=X, X=X,
                       y=None, task="classification")


@pytest.fixture(scope="module")
def X() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])


FAST: dict[str, Any] = {"n_single": 30, "warmup": 3, "batch_size": 200, "n_batches": 3}


def test_slow_model_fails_naming_the_percentile(X: pd.DataFrame) -> None:
    sleepy = Sleepy()
    config = latency.Config(max_p50_ms=1.0, max_p99_ms=1.0, **FAST)
    result = latency.run(make_ctx(wrap_estimator(sleepy), X), config)
    assert not result.passed
    assert result.actual["p50_ms"] >= 4.5
    assert result.reason.startswith("Too slow: p50 latency") and "> 1 ms" in result.reason
    assert "p99 latency" in result.reason
    assert result.threshold["max_p50_ms"] == 1.0
    # warmup + timed single calls + batches, each batch of exactly batch_size rows
    assert sleepy.calls == 3 + 30 + 3
    assert sleepy.rows[:33] == [1] * 33
    assert sleepy.rows[33:] == [200] * 3
    assert result.duration_s > 0


def test_fast_model_passes(X: pd.DataFrame) -> None:
    est = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    result = latency.run(make_ctx(wrap_estimator(est), X), latency.Config(**FAST))
    assert result.passed, result.reason
    assert result.actual["p99_ms"] < 100
    assert result.actual["p50_ms"] <= result.actual["p95_ms"] <= result.actual["p99_ms"]
    assert result.actual["throughput_rps"] > 0
    assert result.reason.startswith("Within limits: p99 latency")
    assert result.details["single_row"]["n_calls"] == 30
    assert len(result.details["batch"]["throughput_rps"]) == 3


def test_throughput_floor_fails(X: pd.DataFrame) -> None:
    config = latency.Config(max_p99_ms=None, min_throughput_rps=1e9, **FAST)
    result = latency.run(make_ctx(wrap_estimator(Sleepy()), X), config)
    assert not result.passed
    assert result.reason.startswith("Too slow: throughput") and "rows/s <" in result.reason


def test_empty_data_is_skipped() -> None:
    empty = pd.DataFrame({"a": []})
    result = latency.run(make_ctx(wrap_estimator(Sleepy()), empty), latency.Config())
    assert result.passed and result.skipped
    assert "no rows" in result.reason


def test_config_rejects_unknown_and_invalid_keys() -> None:
    with pytest.raises(ValidationError):
        latency.Config(max_p99=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        latency.Config(max_p99_ms=0)
    assert latency.Config().max_p99_ms == 100
