"""Rollouts end to end over real HTTP: the controller inside `mlops serve` rolls back a
broken canary, survives kill -9, and a rollback under load fails no request."""

from __future__ import annotations

import pickle
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from mlops.deployment.rollouts import RolloutManager
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server
from tests.serving.fixtures import Exploding

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]}


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
