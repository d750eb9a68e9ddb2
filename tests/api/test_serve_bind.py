"""``mlops serve`` starts its controllers only once it owns its socket: a second server on
a port that is already taken exits without a single controller pass."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from mlops.deployment.rollouts import RolloutManager
from mlops.registry.service import ModelRegistry
from mlops.store.schema import AnalysisRow, LeaseRow
from tests.conftest import child_env
from tests.serving.conftest import start_server


def _analyses(registry: ModelRegistry) -> int:
    with registry.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(AnalysisRow)) or 0)


def test_a_failed_bind_starts_no_controller(served_store: tuple[Path, ModelRegistry]) -> None:
    home, registry = served_store
    RolloutManager(registry).deploy("clf", "1.1.0", "production", strategy="canary",
                                    config={"steps": [{"weight": 20, "pause": "manual"}]})
    first = start_server(home, "--role", "gateway", wait_for="/v2/health/live")
    try:
        port = first.url.rsplit(":", 1)[1]
        before = _analyses(registry)
        env = child_env(MLOPS_HOME=str(home), MLOPS_ACTOR="tester")
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "mlops", "serve", "--port", port,
                                 "--controller-interval", "0.1"], env=env, cwd=home.parent,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0, second.stdout + second.stderr
        assert time.monotonic() - started < 60
        assert _analyses(registry) == before  # no pass of the second server's controller
        with registry.store.read() as s:
            assert s.scalars(select(LeaseRow.holder)).all() == []  # nor a lease taken
    finally:
        first.stop()
        RolloutManager(registry).abort("clf", "production", reason="end of test")


def test_a_bound_server_starts_its_controller(served_store: tuple[Path, ModelRegistry]
                                              ) -> None:
    home, registry = served_store
    RolloutManager(registry).deploy("clf", "1.1.0", "production", strategy="canary",
                                    config={"steps": [{"weight": 20, "pause": "manual"}]})
    before = _analyses(registry)
    srv = start_server(home, "--controller-interval", "0.2")
    try:
        deadline = time.monotonic() + 30
        while _analyses(registry) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _analyses(registry) > before
    finally:
        srv.stop()
        RolloutManager(registry).abort("clf", "production", reason="end of test")
