"""Rollouts end to end over real HTTP: the controller inside `mlops serve` rolls back a
broken canary, survives kill -9, and a rollback under load fails no request. Each test ships
versions, so each gets a store of its own (none depends on what another left behind)."""

from __future__ import annotations

import pickle
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops.deployment.rollouts import RolloutManager
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import make_served_store, start_server
from tests.serving.fixtures import Exploding

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]}


@pytest.fixture
def served_store(tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray]
                 ) -> tuple[Path, ModelRegistry]:
    """The serving tests' store, one per test here."""
    return make_served_store(tmp_path, data)


def _broken(registry: ModelRegistry, root: Path) -> str:
    versions = [v.version for v in registry.list_versions("clf")]
    if "9.0.0" not in versions:
        path = root / "broken.pkl"
        path.write_bytes(pickle.dumps(Exploding()))
        registry.register("clf", path, version="9.0.0", trust=True)
    return "9.0.0"


def test_controller_rolls_back_a_failing_canary(served_store: tuple[Path, ModelRegistry]
                                                ) -> None:
    home, registry = served_store
    manager = RolloutManager(registry)
    manager.deploy("clf", _broken(registry, home.parent), "production", strategy="canary",
                   override="tests go straight to production",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 20})
    srv = start_server(home, "--controller-interval", "0.5")
    try:
        with srv.client() as c:
            codes = Counter(c.post("/v1/models/clf:predict", json=ROW).status_code
                            for _ in range(150))
        assert codes == {200: 150}  # the broken candidate fell back to stable each time
        deadline = time.monotonic() + 20
        status = manager.status("clf", "production")
        while time.monotonic() < deadline and status is not None and \
                status.state == "progressing":
            time.sleep(0.5)
            status = manager.status("clf", "production")
        assert status is not None and status.state == "rolled_back", status
        # the candidate failed every request; once its breaker opened, stable also took the
        # candidate's share, which the sample-ratio check reports too
        assert "error rate" in status.reason or "sample ratio" in status.reason
        last = status.analyses[-1]["metrics"]
        assert last["error_rate"]["candidate"] == 1.0
        time.sleep(1.0)
        with srv.client() as c:
            assert {c.post("/v1/models/clf:predict", json=ROW).headers["x-model-version"]
                    for _ in range(20)} == {"1.0.0"}
    finally:
        srv.stop()


def test_kill_9_mid_rollout_resumes_at_the_same_step(served_store: tuple[Path, ModelRegistry]
                                                     ) -> None:
    home, registry = served_store
    manager = RolloutManager(registry)
    if (active := manager.status("clf", "production")) and active.state == "progressing":
        manager.abort("clf", "production")
    manager.deploy("clf", "1.1.0", "production", strategy="canary",
                   override="tests go straight to production",
                   config={"steps": [{"weight": 30, "pause": 3600}, {"weight": 100}]})
    srv = start_server(home, "--controller-interval", "0.5")
    srv.stop(signal.SIGKILL)
    srv = start_server(home, "--controller-interval", "0.5")
    try:
        status = manager.status("clf", "production")
        assert status is not None and status.state == "progressing" and status.weight == 30
        seen = Counter()
        with srv.client() as c:
            for i in range(300):
                r = c.post("/v1/models/clf:predict", json=ROW, headers={"x-mlops-unit": f"u{i}"})
                seen[r.headers["x-model-version"]] += 1
        assert 50 < seen["1.1.0"] < 130  # about 30% of 300
    finally:
        srv.stop()
        manager.abort("clf", "production", reason="test done")


def test_rollback_under_load_fails_no_request(served_store: tuple[Path, ModelRegistry]
                                              ) -> None:
    home, registry = served_store
    manager = RolloutManager(registry)
    manager.rollback("clf", "production", to="1.1.0", reason="set up")
    srv = start_server(home)
    stop = threading.Event()
    results: list[tuple[int, str, float]] = []

    def client() -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/v1/models/clf:predict", json=ROW)
                results.append((r.status_code, r.headers.get("x-model-version", ""),
                                time.monotonic()))

    threads = [threading.Thread(target=client) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        switched = time.monotonic()
        assert manager.rollback("clf", "production", to="1.0.0", reason="under load") == "1.0.0"
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        srv.stop()
    assert results and all(code == 200 for code, _, _ in results)
    late = [v for _, v, at in results if at > switched + 1.0]
    assert late and set(late) == {"1.0.0"}
    events = registry.audit_log(action="rollout.rollback", limit=5)
    assert events[0].payload["reason"] == "under load"


def test_controller_promotes_a_good_canary_from_live_labels(
        served_store: tuple[Path, ModelRegistry], data: tuple[object, object]) -> None:
    import numpy as np

    home, registry = served_store
    manager = RolloutManager(registry)
    current = manager.status("clf", "production")
    if current is not None and current.state in ("progressing", "paused"):
        manager.abort("clf", "production")
    manager.rollback("clf", "production", to="1.0.0", reason="start from 1.0.0")
    manager.deploy("clf", "1.1.0", "production", strategy="canary",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 100, "accuracy_margin": 0.1,
                           "require_labels": True},
                   override="tests go straight to production")
    x, y = data
    frame, labels = x, np.asarray(y)  # type: ignore[var-annotated]
    srv = start_server(home, "--controller-interval", "0.5")
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 60
        state = "progressing"
        with srv.client() as c:
            while state == "progressing" and time.monotonic() < deadline:
                for _ in range(20):
                    idx = rng.integers(0, len(labels), 10)
                    body = {"instances": frame.iloc[idx].to_numpy().tolist()}  # type: ignore[attr-defined]
                    r = c.post("/v1/models/clf:predict", json=body,
                               headers={"x-mlops-unit": f"u{rng.integers(10**6)}"})
                    assert r.status_code == 200
                    c.post("/v1/models/clf/feedback",
                           json=[{"request_id": r.headers["x-request-id"], "row": i,
                                  "actual": int(labels[j])} for i, j in enumerate(idx)])
                status = manager.status("clf", "production")
                state = status.state if status is not None else "missing"
        assert state == "succeeded", manager.status("clf", "production")
        time.sleep(1.0)
        with srv.client() as c:
            assert c.post("/v1/models/clf:predict", json=ROW).headers["x-model-version"] \
                == "1.1.0"
        kinds = [e.action for e in registry.audit_log(subject="model/clf/env/production",
                                                      limit=10)]
        assert "rollout.succeed" in kinds
    finally:
        srv.stop()


def test_blue_green_smoke_requests_go_through_the_gateway(
        served_store: tuple[Path, ModelRegistry]) -> None:
    home, registry = served_store
    manager = RolloutManager(registry)
    current = manager.status("clf", "production")
    if current is not None and current.state in ("progressing", "paused"):
        manager.abort("clf", "production")
    manager.rollback("clf", "production", to="1.0.0", reason="start from blue")
    manager.deploy("clf", "1.1.0", "production", strategy="blue_green",
                   config={"observe": "manual"}, override="tests go straight to production")
    srv = start_server(home, "--controller-interval", "0.3")
    try:
        deadline = time.monotonic() + 20
        status = manager.status("clf", "production")
        while time.monotonic() < deadline and status is not None and status.step_index == 0:
            time.sleep(0.3)
            status = manager.status("clf", "production")
        assert status is not None and status.step_index == 1, status
        smoke = status.analyses[0]
        assert smoke["outcome"] == "Successful"
        assert "through the gateway match offline predictions" in smoke["reason"]
        time.sleep(1.0)
        with srv.client() as c:  # all traffic on green, blue still loaded
            assert c.post("/v1/models/clf:predict", json=ROW).headers["x-model-version"] \
                == "1.1.0"
        assert manager.promote("clf", "production").state == "succeeded"
    finally:
        srv.stop()
