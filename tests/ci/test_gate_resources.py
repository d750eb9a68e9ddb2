"""Tests for the resources gate: a real probe subprocess on a small skops model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.gates import resources
from mlops.ci.gates.base import GateContext, GateResult
from mlops.errors import CIError
from mlops.flavors.estimator import wrap_estimator


@pytest.fixture(scope="module")
def X() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(120, 4)), columns=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def model_file(X: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    est = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    path = tmp_path_factory.mktemp("models") / "model.skops"
    sio.dump(est, path)
    return path


class Unused:
    """The gate loads the artifact itself; the in-process model is never called."""

    def predict(self, X: object) -> np.ndarray:
        raise AssertionError("the resources gate must not predict in process")


def make_ctx(path: Path, X: pd.DataFrame) -> GateContext:
    return GateContext(model=wrap_estimator(Unused()), model_name="m", artifact_path=path,
                       frame=X, X=X, y=None, task="classification", artifact_format="skops")


@pytest.fixture(scope="module")
def real_run(model_file: Path, X: pd.DataFrame) -> tuple[GateResult, Any]:
    """One real probe subprocess for the module: the result and the raw probe output."""
    captured: list[Any] = []
    real = resources._run_probe

    def spy(ctx: GateContext, config: resources.Config) -> Any:
        captured.append(real(ctx, config))
        return captured[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resources, "_run_probe", spy)
        result = resources.run(make_ctx(model_file, X), resources.Config())
    return result, captured[0]


def test_real_probe_measures_a_small_skops_model(real_run: tuple[GateResult, Any],
                                                 model_file: Path) -> None:
    result, (measured, _) = real_run
    assert result.passed, result.reason
    assert result.actual["artifact_bytes"] == model_file.stat().st_size
    assert 0 < result.actual["memory_mb"] < 2048
    assert result.actual["peak_memory_mb"] >= result.actual["memory_mb"]
    assert result.details["baseline_mb"] > 10  # a real interpreter with numpy and pandas
    assert result.details["sample_rows"] == 120
    assert result.details["probe"]["returncode"] == 0
    assert measured["baseline_kib"] <= measured["after_load_kib"] <= measured["after_predict_kib"]
    if sys.platform == "linux":
        assert result.details["memory_method"] == "VmHWM reset at baseline"
    assert result.reason.startswith("Within limits: model memory")
    assert result.threshold["max_memory_mb"] == 2048


def test_tiny_limits_fail_naming_the_numbers(real_run: tuple[GateResult, Any], model_file: Path,
                                             X: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    # judge the real measurement again (no second subprocess) against tiny limits
    monkeypatch.setattr(resources, "_run_probe", lambda ctx, config: real_run[1])
    config = resources.Config(max_memory_mb=0.001, max_artifact_mb=0.0001)
    result = resources.run(make_ctx(model_file, X), config)
    assert not result.passed
    size = f"{model_file.stat().st_size / 2**20:.3g}"
    memory = resources._mb(result.actual["memory_mb"])
    assert result.reason == (f"Over the limit: artifact size {size} MB > 0.0001 MB; "
                             f"model memory {memory} MB > 0.001 MB.")
    assert [c["passed"] for c in result.details["checks"]] == [False, False]


def test_unloadable_artifact_fails_with_stderr_details(tmp_path: Path, X: pd.DataFrame) -> None:
    bad = tmp_path / "broken.skops"
    bad.write_bytes(b"this is not a zip archive")
    result = resources.run(make_ctx(bad, X), resources.Config())
    assert not result.passed
    assert result.reason.startswith("Memory could not be measured: UnknownFlavor")
    assert "stderr_tail" in result.details["probe"]
    assert result.actual["memory_mb"] is None


def test_timeout_fails_instead_of_raising(model_file: Path, X: pd.DataFrame) -> None:
    result = resources.run(make_ctx(model_file, X), resources.Config(timeout_s=0.01))
    assert not result.passed
    assert "did not finish within 0.01 s" in result.reason
    assert "stderr_tail" in result.details["probe"]


def test_no_rows_measures_size_only(model_file: Path) -> None:
    empty = pd.DataFrame({"a": [], "b": [], "c": [], "d": []})
    result = resources.run(make_ctx(model_file, empty), resources.Config(max_artifact_mb=10))
    assert result.passed
    assert result.actual["memory_mb"] is None
    assert result.warnings == ("memory not measured: the test data has no rows",)


def test_missing_artifact_is_a_user_error(tmp_path: Path, X: pd.DataFrame) -> None:
    with pytest.raises(CIError, match="Cannot read the model artifact"):
        resources.run(make_ctx(tmp_path / "nope.skops", X), resources.Config())
