"""A real gateway in a subprocess on a free loopback port, over a real store."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.registry.service import ModelRegistry
from tests.conftest import child_env

REPO = Path(__file__).resolve().parents[2]
FEATURES = [f"x{i}" for i in range(5)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    home: Path
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(home: Path, *args: str, wait_for: str = "/v2/health/ready",
                 env_extra: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = child_env(MLOPS_HOME=str(home), MLOPS_ACTOR="tester", **(env_extra or {}))
    log = home.parent / f"server-{port}.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops", "serve", "--port", str(port), *args],
            env=env, cwd=str(home.parent), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + wait_for, timeout=1).status_code == 200:
                return Server(url, proc, home, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()}")


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(400, 5)), columns=FEATURES)
    y = (x["x0"] - x["x1"] + 0.5 * x["x2"] > 0).astype(int).to_numpy()
    return x, y


@pytest.fixture(scope="module")
def served_store(tmp_path_factory: pytest.TempPathFactory,
                 data: tuple[pd.DataFrame, np.ndarray]) -> tuple[Path, ModelRegistry]:
    """A store with 'clf' 1.0.0 (Production) and 1.1.0 (a second, different model)."""
    return make_served_store(tmp_path_factory.mktemp("gw"), data)


def make_served_store(root: Path, data: tuple[pd.DataFrame, np.ndarray]
                      ) -> tuple[Path, ModelRegistry]:
    """:func:`served_store`'s store, built in ``root``."""
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    x, y = data
    for i, c in enumerate((1.0, 0.01)):
        path = root / f"clf{i}.skops"
        sio.dump(LogisticRegression(C=c).fit(x, y), path)
        registry.register("clf", path, version=f"1.{i}.0", input_example=x.head(10))
    registry.promote("clf", "1.0.0", "production")
    return home, registry


@pytest.fixture(scope="module")
def server(served_store: tuple[Path, ModelRegistry]) -> Iterator[Server]:
    home, _ = served_store
    srv = start_server(home)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local_model(served_store: tuple[Path, ModelRegistry]) -> Callable[[str], object]:
    _, registry = served_store
    return lambda version: registry.load_model("clf", version)
