"""Shared fixtures: a fresh store per test on SQLite and, when MLOPS_TEST_POSTGRES_URL is
set, on a fresh PostgreSQL database; small fitted models of every flavor."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.registry.service import ModelRegistry

PG_URL = os.environ.get("MLOPS_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's MLOPS_* variables, mlops.toml or ./.mlops."""
    for key in list(os.environ):
        if key.startswith("MLOPS_") and key != "MLOPS_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    for key in ("STAGING_MODEL_PATH", "PRODUCTION_MODEL_PATH"):  # the seed README's names
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / ".mlops"))
    monkeypatch.setenv("MLOPS_ACTOR", "tester")


def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database's URL (a generator: dropped after its one ``yield``)."""
    import psycopg
    from sqlalchemy.engine import make_url

    assert PG_URL is not None
    url = make_url(PG_URL)
    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        from mlops.store import db

        engine = db._engines.pop(url.set(database=name).render_as_string(hide_password=False),
                                 None)
        if engine is not None:
            engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    PG_URL is None, reason="MLOPS_TEST_POSTGRES_URL not set (.ci/run sets it)"))]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from pg_database()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / ".mlops", database_url=database_url,
                    artifacts_uri=str(tmp_path / "artifacts"), actor="tester")


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings)


@pytest.fixture(scope="session")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    y = (x["a"] + 0.5 * x["b"] - x["c"] + rng.normal(scale=0.3, size=300) > 0).astype(int)
    return x, y.to_numpy()


@pytest.fixture(scope="session")
def logistic(table: tuple[pd.DataFrame, np.ndarray]) -> LogisticRegression:
    x, y = table
    return LogisticRegression().fit(x, y)


@pytest.fixture
def skops_file(tmp_path: Path, logistic: LogisticRegression) -> Path:
    import skops.io as sio

    path = tmp_path / "model.skops"
    sio.dump(logistic, path)
    return path


@pytest.fixture
def pickle_file(tmp_path: Path, logistic: LogisticRegression) -> Path:
    import joblib

    path = tmp_path / "model.pkl"
    joblib.dump(logistic, path)
    return path
