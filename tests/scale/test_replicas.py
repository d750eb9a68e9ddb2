"""Scale-out under failure: 3 gateway and 2 control processes on PostgreSQL and an S3 server
(moto); a client spreads a canary's traffic across the gateways while the leading control
process is SIGKILLed mid-rollout. The other takes over within 5 s and finishes the rollout
as its analysis says, no request fails, the routing change reaches every gateway within a
second, and every answered prediction is in the log on S3 exactly once."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.deployment.controller import LEASE
from mlops.deployment.rollouts import RolloutManager
from mlops.registry.service import ModelRegistry
from mlops.store.leases import current_leader
from mlops.store.predlog import read_predictions
from tests.conftest import PG_URL, pg_database
from tests.scale.conftest import S3Server
from tests.serving.conftest import Server, start_server

pytestmark = pytest.mark.skipif(PG_URL is None, reason="MLOPS_TEST_POSTGRES_URL not set "
                                                       "(.ci/run sets it)")
FEATURES = ["a", "b", "c"]


@pytest.fixture
def database() -> Iterator[str]:
    yield from pg_database()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)


class Load:
    """Threads that post one-row predictions round-robin across the gateways, each with
    its own request id, and remember every answer."""

    def __init__(self, urls: list[str], threads: int = 6) -> None:
        self.urls = urls
        self.answers: list[tuple[str, int, str, float]] = []  # id, status, version, time
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._rows = _frame(500, 7).to_dict(orient="records")
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, index: int) -> None:
        urls = itertools.cycle(self.urls[index % len(self.urls):] +
                               self.urls[:index % len(self.urls)])
        rows = itertools.cycle(self._rows)
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                rid = uuid.uuid4().hex
                try:
                    r = client.post(f"{next(urls)}/v1/models/m:predict",
                                    json={"instances": [next(rows)]},
                                    headers={"x-request-id": rid})
                    answer = (rid, r.status_code, r.headers.get("x-model-version", ""),
                              time.monotonic())
                except httpx.HTTPError as exc:
                    answer = (rid, -1, type(exc).__name__, time.monotonic())
                with self._lock:
                    self.answers.append(answer)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _pid_of(holder: str | None) -> int | None:
    return int(holder.rsplit(":", 1)[1]) if holder else None


def test_three_gateways_two_controls_survive_a_leader_sigkill(
        tmp_path: Path, database: str, bucket: str, s3_server: S3Server) -> None:
    settings = Settings(home=tmp_path / "admin", database_url=database,
                        artifacts_uri=f"{bucket}/store", actor="tester")
    registry = ModelRegistry(settings)
    x = _frame(600, 1)
    y = (x["a"] + 0.3 * x["b"] > 0).astype(int)
    registry.register("m", model=LogisticRegression().fit(x, y), reference=x,
                      input_example=x.head(3))
    registry.register("m", model=LogisticRegression(C=0.3).fit(x, y), reference=x,
                      input_example=x.head(3))
    registry.promote("m", "1.0.0", "Production")
    manager = RolloutManager(registry)
    manager.deploy("m", "1.0.1", "production", strategy="canary",
                   override="the test goes straight to production",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 100})
    env = {"MLOPS_DATABASE_URL": database, "MLOPS_ARTIFACTS_URI": settings.artifacts_uri,
           **s3_server.env()}
    for i in range(3):
        for kind in ("control", "gateway"):
            (tmp_path / f"{kind}-{i}").mkdir()
    servers: list[Server] = []
    checks: list[str] = []  # the request ids of the last look at each gateway
    try:
        controls = [start_server(tmp_path / f"control-{i}" / ".mlops", "--role", "control",
                                 "--controller-interval", "0.5", env_extra=env)
                    for i in range(2)]
        gateways = [start_server(tmp_path / f"gateway-{i}" / ".mlops", "--role", "gateway",
                                 "--env", "production", env_extra=env) for i in range(3)]
        servers = [*controls, *gateways]
        by_pid = {c.proc.pid: c for c in controls}
        store = registry.context.store
        with Load([g.url for g in gateways]) as load:
            deadline = time.monotonic() + 60
            while not (status := manager.status("m", "production")) or not status.analyses:
                assert time.monotonic() < deadline, "no analysis within 60 s"
                time.sleep(0.1)
            assert status.state == "progressing", status
            leader = _pid_of(current_leader(store, LEASE))
            assert leader in by_pid, (leader, list(by_pid))
            by_pid[leader].stop(signal.SIGKILL)
            killed, killed_at = time.monotonic(), datetime.now(UTC).isoformat()
            while (new := _pid_of(current_leader(store, LEASE))) in (None, leader):
                assert time.monotonic() - killed < 5, "no new leader within 5 s"
                time.sleep(0.05)
            took_over = time.monotonic() - killed
            assert new in by_pid and new != leader
            while (status := manager.status("m", "production")) is not None and \
                    status.state == "progressing":
                assert time.monotonic() < deadline + 60, f"rollout not finished: {status}"
                time.sleep(0.1)
            decided = time.monotonic()
            time.sleep(1.5)  # the change reaches every gateway within a second
        assert status is not None  # the new leader looked, and decided
        assert any(a["at"] > killed_at for a in status.analyses), status.analyses[-1]
        assert status.state in ("succeeded", "rolled_back"), status
        final = "1.0.1" if status.state == "succeeded" else "1.0.0"
        last = status.analyses[-1]
        assert (last["outcome"] != "Failed") == (status.state == "succeeded"), last
        for g in gateways:
            with httpx.Client(base_url=g.url, timeout=10) as c:
                checks.append(uuid.uuid4().hex)
                r = c.post("/v1/models/m:predict", json={"instances": [x.iloc[0].to_dict()]},
                           headers={"x-request-id": checks[-1]})
                assert r.status_code == 200 and r.headers["x-model-version"] == final
        late = [v for _, code, v, at in load.answers if code == 200 and at > decided + 1.0]
        assert late and set(late) == {final}
    finally:
        for srv in servers:
            srv.stop(signal.SIGTERM)  # gateways flush their log on the way out
    codes = Counter(code for _, code, _, _ in load.answers)
    assert codes == {200: len(load.answers)}, codes  # no request failed
    served = [rid for rid, code, _, _ in load.answers if code == 200]
    logged = read_predictions(settings.artifacts_uri, "m")
    ok = [rid for rid, code in zip(logged["request_id"].to_pylist(),
                                   logged["status"].to_pylist(), strict=True) if code == 200]
    assert len(ok) == len(set(ok)), "a prediction is logged twice"
    assert set(ok) == set(served) | set(checks), "logged and answered predictions differ"
    print(f"\n{len(served)} predictions across 3 gateways; leader {leader} killed, "
          f"{new} took over in {took_over:.2f} s; rollout {status.state}")
