"""Artifacts and the prediction log on ``s3://`` (a real S3-compatible server: moto in
server mode): register and load, a corrupted object refused on load, the log written by a
real gateway and read by monitoring and by a rollout's analysis, retention and compaction."""

from __future__ import annotations

import json
import pickle
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.deployment.rollouts import Rollout, RolloutManager
from mlops.errors import ArtifactCorrupted, ArtifactError
from mlops.governance import apply_retention, compact_prediction_log
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import (
    PREDICTIONS,
    PredictionLog,
    PredictionRecord,
    list_files,
    open_store,
    read_predictions,
)
from mlops.store.predlog.layout import part_name
from tests.scale.conftest import S3Server
from tests.serving.conftest import start_server
from tests.serving.fixtures import Exploding

FEATURES = ["a", "b", "c"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)


def _settings(tmp_path: Path, bucket: str) -> Settings:
    return Settings(home=tmp_path / ".mlops", artifacts_uri=f"{bucket}/store",
                    actor="tester")


def _objects(server: S3Server, bucket: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=server.endpoint)
    name = bucket.removeprefix("s3://")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_register_load_and_a_corrupted_object_is_refused(tmp_path: Path, bucket: str,
                                                         s3_server: S3Server) -> None:
    registry = ModelRegistry(_settings(tmp_path, bucket))
    x = _frame(300, 1)
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    mv = registry.register("m", model=model, reference=x)
    keys = _objects(s3_server, bucket, "store/")
    blob = next(k for k in keys if k.endswith(mv.artifact_digest))
    assert blob == f"store/sha256/{mv.artifact_digest[:2]}/{mv.artifact_digest}"
    np.testing.assert_array_equal(registry.load_model("m").predict(x), model.predict(x))
    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    name = bucket.removeprefix("s3://")
    original = client.get_object(Bucket=name, Key=blob)["Body"].read()
    client.put_object(Bucket=name, Key=blob, Body=original[:-10] + b"0123456789")
    with pytest.raises(ArtifactCorrupted) as err:
        ModelRegistry(_settings(tmp_path, bucket)).load_model("m")
    assert mv.artifact_digest[:12] in str(err.value) and err.value.fix


def test_the_gateways_log_on_s3_is_read_by_monitoring_and_the_rollout(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    """A real gateway writes its log to S3; the controller in it reads both arms' rows from
    there and rolls the broken canary back; monitoring reads the same rows."""
    settings = _settings(tmp_path, bucket)
    registry = ModelRegistry(settings)
    x = _frame(400, 2)
    registry.register("m", model=LogisticRegression().fit(x, (x["a"] > 0).astype(int)),
                      reference=x, input_example=x.head(3))
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(Exploding()))
    registry.register("m", broken, trust=True)
    registry.promote("m", "1.0.0", "Production")
    manager = RolloutManager(registry)
    manager.deploy("m", "1.0.1", "production", strategy="canary",
                   override="the test goes straight to production",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 20})
    srv = start_server(settings.home, "--controller-interval", "0.5",
                       env_extra={"MLOPS_ARTIFACTS_URI": settings.artifacts_uri,
                                  **s3_server.env()})
    sent = _frame(200, 3).to_dict(orient="records")
    try:
        with srv.client() as c:
            codes = Counter(c.post("/v1/models/m:predict", json={"instances": [row]}
                                   ).status_code for row in sent)
        status = _wait(manager, "m", "production")
    finally:
        srv.stop(signal.SIGTERM)
    assert codes == {200: len(sent)}  # the broken candidate fell back to stable each time
    assert status.state == "rolled_back", (status, srv.log.read_text()[-3000:])
    assert status.analyses[-1]["metrics"]["error_rate"]["candidate"] == 1.0
    # every answered prediction is in the log on S3, once
    store = open_store(settings.artifacts_uri)
    assert "s3" in store.fs.protocol and list_files(store, PREDICTIONS, "m")
    assert _objects(s3_server, bucket, "store/predictions/model=m/")
    logged = read_predictions(settings.artifacts_uri, "m")
    answered = [rid for rid, code in zip(logged["request_id"].to_pylist(),
                                         logged["status"].to_pylist(), strict=True)
                if code == 200]
    assert len(answered) == len(set(answered)) == len(sent)
    # monitoring reads the same rows, inputs included (the drift test ran on them)
    evaluation = ModelMonitor(registry, window=3600).evaluate("m", "production")
    assert evaluation.values["n_predictions"].value == logged.num_rows  # failed ones too
    assert evaluation.drift is not None and evaluation.drift.n_current_rows == len(sent)


def _wait(manager: RolloutManager, model: str, env: str, seconds: float = 30) -> Rollout:
    deadline = time.monotonic() + seconds
    while True:
        status = manager.status(model, env)
        assert status is not None
        if status.state != "progressing" or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_retention_and_compaction_on_s3(tmp_path: Path, bucket: str) -> None:
    settings = _settings(tmp_path, bucket).model_copy(update={"retention_predictions_days": 30})
    registry = ModelRegistry(settings)
    x = _frame(50, 4)
    registry.register("m", model=LogisticRegression().fit(x, (x["a"] > 0).astype(int)))
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=3)
    log = PredictionLog(settings.artifacts_uri, spool=False)
    log.log([_record("expired", old)])
    for i in range(3):
        log.log([_record(f"recent-{i}", recent + timedelta(minutes=i))])
        log.flush()
    log.close()
    uri = settings.artifacts_uri
    assert read_predictions(uri).num_rows == 4
    result = apply_retention(registry, now=now)
    assert [p.day for p in result.partitions] == [old.date().isoformat()]
    assert sorted(read_predictions(uri)["request_id"].to_pylist()) == [
        "recent-0", "recent-1", "recent-2"]
    before = sorted(read_predictions(uri).to_pylist(), key=lambda r: r["request_id"])
    report = compact_prediction_log(registry, now=now + timedelta(days=2))
    assert (report.files_before, report.files_after) == (3, 1)
    assert sorted(read_predictions(uri).to_pylist(), key=lambda r: r["request_id"]) == before


def _record(rid: str, ts: datetime) -> PredictionRecord:
    return PredictionRecord(rid, ts.timestamp(), "m", "1.0.0", "production", "stable", None,
                            0, json.dumps({"a": 1.0, "b": 0.0, "c": 0.0}), "1", 1.0, None, 2.0,
                            200)


def test_a_missing_bucket_is_a_clear_error_and_registers_nothing(tmp_path: Path,
                                                                 bucket: str) -> None:
    settings = Settings(home=tmp_path / ".mlops", artifacts_uri=f"{bucket}-missing/store",
                        actor="tester")
    registry = ModelRegistry(settings)
    x = _frame(50, 5)
    with pytest.raises(ArtifactError, match="bucket does not exist") as err:
        registry.register("m", model=LogisticRegression().fit(x, (x["a"] > 0).astype(int)))
    assert err.value.fix and "MLOPS_ARTIFACTS_URI" in err.value.fix
    assert registry.list_models() == []


def test_files_other_processes_write_are_listed_at_once(tmp_path: Path, bucket: str,
                                                       s3_server: S3Server) -> None:
    """s3fs caches listings per process: the log's listing must not, or a controller would
    never see the files of other gateways (the same files read through boto3 here)."""
    uri = f"{bucket}/store"
    log = PredictionLog(uri, spool=False)
    log.log([_record("first", datetime.now(UTC))])
    log.close()
    store = open_store(uri)
    [first] = list_files(store, PREDICTIONS, "m")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    name = bucket.removeprefix("s3://")
    key = first.path.split(f"{name}/", 1)[1]
    body = client.get_object(Bucket=name, Key=key)["Body"].read()
    other = key.rsplit("/", 1)[0] + "/" + part_name(datetime.now(UTC), uuid.uuid4().hex)
    client.put_object(Bucket=name, Key=other, Body=body)  # "another gateway" writes
    assert len(list_files(store, PREDICTIONS, "m")) == 2
