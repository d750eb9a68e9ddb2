"""Each error of the one exception tree answers with its own HTTP status, in the REST API
and the dashboard alike (``MlopsError.status``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from mlops.api.app import create_api
from mlops.config import Settings
from mlops.errors import (
    AlertNotFound,
    ArtifactError,
    ConcurrencyError,
    LeaseLost,
    MlopsError,
    ModelNotFound,
    StoreError,
    TokenNotFound,
    VersionNotFound,
)
from mlops.registry.promotion import PromotionRefused
from mlops.registry.service import ModelRegistry
from tests.conftest import PG_URL, pg_database


@pytest.mark.parametrize(("error", "status"), [
    (MlopsError, 400), (StoreError, 400), (ConcurrencyError, 503), (LeaseLost, 503),
    (ArtifactError, 500), (ModelNotFound, 404), (VersionNotFound, 404),
    (AlertNotFound, 404), (TokenNotFound, 404), (PromotionRefused, 409)])
def test_each_error_class_carries_its_status(error: type[MlopsError], status: int) -> None:
    assert error("x").status == status
    # Retry-After goes with the errors a retry may pass, and only those
    assert error("x").retry_after == (1.0 if error in (ConcurrencyError, LeaseLost) else None)


@pytest.mark.skipif(PG_URL is None, reason="MLOPS_TEST_POSTGRES_URL not set (.ci/run sets it)")
def test_a_write_that_keeps_losing_its_race_is_503_with_retry_after(
        tmp_path: Path, skops_file: Path) -> None:
    """PostgreSQL answers every write to the aliases table with a serialization failure (a
    trigger raising SQLSTATE 40001, as a lost race does): the API retries, gives up, and
    answers 503 with Retry-After, not 400 (the request was fine) nor 500; nothing is
    written, and the same request passes once the race is gone."""
    for url in pg_database(migrated=False):
        registry = ModelRegistry(Settings(home=tmp_path / ".mlops", database_url=url,
                                          artifacts_uri=str(tmp_path / "artifacts"),
                                          actor="tester"))
        registry.register("churn", skops_file)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(
                    "CREATE FUNCTION lose_the_race() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = "
                    "'40001'; END $$"))
                conn.execute(text(
                    "CREATE TRIGGER lose_the_race BEFORE INSERT OR UPDATE ON model_aliases "
                    "FOR EACH ROW EXECUTE FUNCTION lose_the_race()"))
            client = TestClient(create_api(registry))
            r = client.put("/v1/models/churn/aliases/champion", json={"version": "1.0.0"})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            assert "race" in r.json()["error"] and "nothing was written" in r.json()["fix"]
            assert registry.get_model("churn").aliases == {}

            with engine.begin() as conn:
                conn.execute(text("DROP TRIGGER lose_the_race ON model_aliases"))
            r = client.put("/v1/models/churn/aliases/champion", json={"version": "1.0.0"})
            assert r.status_code == 200, r.text
            assert registry.get_model("churn").aliases == {"champion": "1.0.0"}
        finally:
            engine.dispose()
