"""Tests for the security gate: format judgement, static scan, digest and score."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from mlops.ci.gates import security
from mlops.ci.gates.base import GateContext
from mlops.errors import CIError
from mlops.flavors.estimator import wrap_estimator


class Evil:
    """Would run os.system when unpickled (it never is: the gate only scans)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


class EvilWritesFile:
    """Would create a marker file if anything ever executed the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


@pytest.fixture(scope="module")
def est() -> LogisticRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def make_ctx(path: Path, est: LogisticRegression, fmt: str = "", trusted: bool = False
             ) -> GateContext:
    import pandas as pd

    X = pd.DataFrame(np.zeros((2, 3)))
    return GateContext(model=wrap_estimator(est), model_name="m", artifact_path=path, frame=X,
                       X=X, y=None, task="classification", artifact_format=fmt,
                       trusted=trusted)


@pytest.fixture
def skops_file(tmp_path: Path, est: LogisticRegression) -> Path:
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    return path


@pytest.fixture
def joblib_file(tmp_path: Path, est: LogisticRegression) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    return path


@pytest.fixture
def evil_file(tmp_path: Path) -> Path:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": Evil()}))
    return path


def test_skops_passes_with_score_10(skops_file: Path, est: LogisticRegression) -> None:
    result = security.run(make_ctx(skops_file, est, "skops"), security.Config())
    assert result.passed, result.reason
    assert result.actual["score"] == 10 and result.actual["format"] == "skops"
    assert result.actual["sha256"] == hashlib.sha256(skops_file.read_bytes()).hexdigest()
    assert result.warnings == ()
    assert result.reason == "The skops file scans clean; security score 10/10 >= 0."


def test_clean_joblib_passes_with_a_warning(joblib_file: Path, est: LogisticRegression) -> None:
    result = security.run(make_ctx(joblib_file, est, "joblib"), security.Config())
    assert result.passed, result.reason
    assert result.actual["score"] == 7
    assert result.warnings == ("pickle format: prefer skops or ONNX",)
    assert any(i.startswith("sklearn.") for i in result.details["imports"])


def test_malicious_pickle_fails_listing_the_import(tmp_path: Path, evil_file: Path,
                                                   est: LogisticRegression) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "writes.pkl"
    path.write_bytes(pickle.dumps(EvilWritesFile(marker)))
    result = security.run(make_ctx(evil_file, est, "pickle"), security.Config())
    assert not result.passed
    assert result.actual["score"] == 0
    system = {"posix.system", "os.system", "nt.system"} & set(result.actual["offending"])
    assert system and next(iter(system)) in result.reason
    assert result.reason.startswith("Rejected: 1 untrusted import(s) in the pickle file:")
    assert not security.run(make_ctx(path, est), security.Config()).passed
    assert not marker.exists()


def test_trusted_unsafe_pickle_passes_loudly(evil_file: Path, est: LogisticRegression) -> None:
    result = security.run(make_ctx(evil_file, est, "pickle", trusted=True), security.Config())
    assert result.passed, result.reason
    assert result.actual["score"] == 0
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("trusted override: 1 untrusted imports (")
    assert "accepted by trust override" in result.reason
    # trust overrides the scan, not a score floor
    strict = security.run(make_ctx(evil_file, est, "pickle", trusted=True),
                          security.Config(min_score=1))
    assert not strict.passed and "security score 0/10 < 1" in strict.reason


def test_expected_sha256(skops_file: Path, est: LogisticRegression) -> None:
    digest = hashlib.sha256(skops_file.read_bytes()).hexdigest()
    ok = security.run(make_ctx(skops_file, est), security.Config(expected_sha256=digest))
    assert ok.passed and "SHA-256 matches" in ok.reason
    assert ok.details["digest_matches"] is True
    wrong = security.run(make_ctx(skops_file, est), security.Config(expected_sha256="0" * 64))
    assert not wrong.passed
    assert wrong.actual["score"] == 0
    assert f"SHA-256 {digest[:12]}... differs from the expected 000000000000..." in wrong.reason
    assert security.Config(expected_sha256="sha256:" + digest.upper()).expected_sha256 == digest
    with pytest.raises(ValidationError):
        security.Config(expected_sha256="abc")


def test_format_policy(joblib_file: Path, skops_file: Path, est: LogisticRegression) -> None:
    no_pickle = security.run(make_ctx(joblib_file, est), security.Config(allow_pickle=False))
    assert not no_pickle.passed
    assert "joblib files are not allowed (allow_pickle=false)" in no_pickle.reason
    floor = security.run(make_ctx(joblib_file, est), security.Config(min_score=8))
    assert not floor.passed and "security score 7/10 < 8" in floor.reason
    required = security.run(make_ctx(skops_file, est), security.Config(require_formats=["onnx"]))
    assert not required.passed and "format skops is not one of" in required.reason
    as_pickle = security.run(make_ctx(joblib_file, est),
                             security.Config(require_formats=["pickle"]))
    assert as_pickle.passed


def test_declared_format_must_match_content(joblib_file: Path, est: LogisticRegression) -> None:
    result = security.run(make_ctx(joblib_file, est, "skops"), security.Config())
    assert not result.passed
    assert "declared format 'skops' but the file is joblib" in result.reason
    assert security.canonical_format("xgboost-json") == "xgboost"


def test_unreadable_files(tmp_path: Path, est: LogisticRegression) -> None:
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps(list(range(100)))[:20])
    result = security.run(make_ctx(truncated, est, trusted=True), security.Config())
    assert not result.passed and "cannot be scanned" in result.reason
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"hello")
    result = security.run(make_ctx(unknown, est), security.Config())
    assert not result.passed and result.reason.startswith("Rejected: the file format is not recognised")
    with pytest.raises(CIError, match="Cannot read the model artifact"):
        security.run(make_ctx(tmp_path / "missing.skops", est), security.Config())
