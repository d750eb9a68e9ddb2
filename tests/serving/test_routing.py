"""Routing by deployment: sticky splits, shadow pairs, fallback, circuit breaker, live
changes picked up by every worker within a second (LISTEN/NOTIFY on PostgreSQL, the counter
poll on SQLite), and one answer to "what does environment E serve"."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import chisquare
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.deployment.routes import RoutingService
from mlops.errors import DeploymentError
from mlops.registry.service import ModelRegistry
from mlops.serving.codecs import Schema
from mlops.serving.routing import CircuitBreaker, RouteTable, ServedModel, ServingRoute, bucket
from mlops.store.dedicated import dedicated_connection
from mlops.store.predlog import read_predictions
from mlops.store.routes import RouteSource, RouteSpec
from tests.conftest import PG_URL, pg_database
from tests.serving.conftest import Server, start_server
from tests.serving.fixtures import Exploding

Data = tuple[pd.DataFrame, np.ndarray]


def _served(version: str) -> ServedModel:
    return ServedModel("m", version, model=None, schema=Schema(None))  # type: ignore[arg-type]


def test_bucket_is_the_documented_hash() -> None:
    import hashlib

    digest = hashlib.sha256(b"salt.user-42").digest()
    assert bucket("salt", "user-42") == int.from_bytes(digest[:8], "big") % 10000


def test_sticky_assignment_is_stable_and_close_to_the_weight() -> None:
    route = ServingRoute(RouteSpec("m", "production", "1.0.0", "1.1.0", weight=20.0,
                                   salt="s1"), _served("1.0.0"), _served("1.1.0"))
    units = [f"user-{i}" for i in range(10_000)]
    first = [route.choose(u)[0] for u in units]
    assert first == [route.choose(u)[0] for u in units]  # sticky
    counts = Counter(first)
    observed = [counts["candidate"], counts["stable"]]
    assert chisquare(observed, [2000, 8000]).pvalue > 0.001
    other_salt = ServingRoute(RouteSpec("m", "production", "1.0.0", "1.1.0", weight=20.0,
                                        salt="s2"), _served("1.0.0"), _served("1.1.0"))
    changed = sum(a != other_salt.choose(u)[0] for a, u in zip(first, units, strict=True))
    assert changed > 1000  # a new salt reshuffles units


def test_open_breaker_sends_everything_to_stable() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=60)
    route = ServingRoute(RouteSpec("m", "production", "1.0.0", "1.1.0", weight=100.0, salt="s"),
                         _served("1.0.0"), _served("1.1.0"), breaker)
    assert route.choose("u")[0] == "candidate"
    for _ in range(3):
        breaker.failure()
    assert route.choose("u")[0] == "stable"
    breaker.opened_at = time.monotonic() - 61  # cooldown over: half-open
    assert route.choose("u")[0] == "candidate"  # the single probe
    assert route.choose("u")[0] == "stable"  # everyone else waits for its answer
    breaker.failure()  # the probe failed: open for another cooldown
    assert breaker.open and route.choose("u")[0] == "stable"
    breaker.opened_at = time.monotonic() - 61
    assert route.choose("u")[0] == "candidate"
    breaker.success()  # the probe succeeded: closed
    assert not breaker.open and route.choose("u")[0] == "candidate"


@pytest.fixture(scope="module")
def routed(served_store: tuple[Path, ModelRegistry], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, ModelRegistry, RoutingService]:
    home, registry = served_store
    broken = tmp_path_factory.mktemp("broken") / "broken.pkl"
    broken.write_bytes(pickle.dumps(Exploding()))
    if "9.0.0" not in [v.version for v in registry.list_versions("clf")]:
        registry.register("clf", broken, version="9.0.0", trust=True)
    return home, registry, RoutingService(registry)


@pytest.fixture
def two_workers(routed: tuple[Path, ModelRegistry, RoutingService]) -> Iterator[Server]:
    home, _, writer = routed
    writer.set_route("clf", "production", stable="1.0.0")
    srv = start_server(home, "--workers", "2")
    yield srv
    srv.stop()
    writer.clear_route("clf", "production")


def _row(data: Data, i: int = 0) -> dict[str, object]:
    x, _ = data
    return {"instances": [x.iloc[i].tolist()]}


def test_canary_split_is_sticky_per_unit_over_http(two_workers: Server, data: Data,
                                                   routed: tuple[Path, ModelRegistry, RoutingService]
                                                   ) -> None:
    _, _, writer = routed
    spec = writer.set_route("clf", "production", stable="1.0.0", candidate="1.1.0", weight=30)
    time.sleep(1.2)
    seen: dict[str, set[str]] = {}
    with two_workers.client() as c:
        for i in range(300):
            unit = f"u{i % 100}"
            r = c.post("/v1/models/clf:predict", json=_row(data, i),
                       headers={"x-mlops-unit": unit})
            assert r.status_code == 200
            seen.setdefault(unit, set()).add(r.headers["x-model-version"])
    assert all(len(v) == 1 for v in seen.values())
    to_candidate = sum(v == {"1.1.0"} for v in seen.values())
    expected = sum(bucket(spec.salt, f"u{i}") < 3000 for i in range(100))
    assert to_candidate == expected


def test_route_change_is_seen_by_both_workers_within_a_second(
        two_workers: Server, data: Data, routed: tuple[Path, ModelRegistry, RoutingService]
        ) -> None:
    _, _, writer = routed
    with two_workers.client() as c:
        assert c.post("/v1/models/clf:predict", json=_row(data)).headers["x-model-version"] \
            == "1.0.0"
    writer.set_route("clf", "production", stable="1.1.0", reason="test switch")
    time.sleep(1.0)
    versions = Counter()
    pids = set()
    for i in range(60):  # a fresh connection each time, so both workers answer
        r = httpx.post(two_workers.url + "/v1/models/clf:predict", json=_row(data, i),
                       headers={"connection": "close"})
        versions[r.headers["x-model-version"]] += 1
        pids.add(r.headers.get("x-request-id"))
    assert versions == {"1.1.0": 60}
    metrics = httpx.get(two_workers.url + "/metrics").text
    loaded = {s.labels["model_version"] for f in text_string_to_metric_families(metrics)
              if f.name == "mlops_model_loaded" for s in f.samples}
    assert "1.1.0" in loaded


def test_broken_candidate_falls_back_and_opens_the_breaker(
        routed: tuple[Path, ModelRegistry, RoutingService], data: Data) -> None:
    home, _, writer = routed
    writer.set_route("clf", "production", stable="1.0.0", candidate="9.0.0", weight=100)
    srv = start_server(home)
    try:
        with srv.client() as c:
            for i in range(20):
                r = c.post("/v1/models/clf:predict", json=_row(data, i))
                assert r.status_code == 200
                assert r.headers["x-model-version"] == "1.0.0"
            metrics = c.get("/metrics").text
    finally:
        srv.stop()
        writer.clear_route("clf", "production")
    errors = {s.labels["model_version"]: s.value for f in text_string_to_metric_families(metrics)
              if f.name == "mlops_prediction_errors" for s in f.samples}
    assert errors.get("9.0.0") == 5.0  # the breaker opened after 5 consecutive errors
    assert "boom" in srv.log.read_text()


def test_shadow_pairs_are_logged_under_one_request_id(
        routed: tuple[Path, ModelRegistry, RoutingService], data: Data) -> None:
    home, _, writer = routed
    writer.set_route("clf", "production", stable="1.0.0", candidate="1.1.0", weight=100,
                     mode="shadow")
    srv = start_server(home)
    ids = []
    try:
        with srv.client() as c:
            for i in range(10):
                r = c.post("/v1/models/clf:predict", json=_row(data, i))
                assert r.headers["x-model-version"] == "1.0.0"  # the client gets stable
                ids.append(r.headers["x-request-id"])
    finally:
        assert srv.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
        writer.clear_route("clf", "production")
    log = read_predictions(str(home / "artifacts"), model="clf").to_pandas()
    pairs = log[log.request_id.isin(ids)].groupby("request_id")
    assert len(pairs) == 10
    for _, rows in pairs:
        assert sorted(zip(rows.route, rows.version, strict=True)) == \
            [("shadow", "1.1.0"), ("stable", "1.0.0")]


def test_logged_propensity_is_the_share_of_the_answering_arm() -> None:
    from mlops.serving.gateway import propensity

    split = ServingRoute(RouteSpec("m", "production", "1.0.0", "1.1.0", weight=30.0, salt="s"),
                         _served("1.0.0"), _served("1.1.0"))
    assert propensity(split, "candidate") == 0.3
    assert abs(propensity(split, "stable") - 0.7) < 1e-12  # type: ignore[operator]
    alone = ServingRoute(RouteSpec("m", "production", "1.0.0"), _served("1.0.0"))
    assert propensity(alone, "stable") == 1.0
    assert propensity(None, "direct") is None


# ---------------------------------------------------------------------- one answer, one writer


@pytest.fixture
def three(registry: ModelRegistry, skops_file: Path) -> ModelRegistry:
    for _ in range(3):
        registry.register("m", skops_file)  # 1.0.0, 1.0.1, 1.0.2
    registry.promote("m", "1.0.0", "production")
    registry.promote("m", "1.0.1", "staging")
    return registry


def test_every_reader_gets_one_answer_to_what_an_environment_serves(three: ModelRegistry
                                                                    ) -> None:
    from mlops.registry.promotion import servable_versions, serves_now
    from mlops.store.schema import ModelRow

    routes = RoutingService(three)
    expected = {"production": ("1.0.0", RouteSource.STAGE),
                "staging": ("1.0.1", RouteSource.STAGE),
                "dev": ("1.0.2", RouteSource.LATEST)}  # no stage: the newest version

    def check() -> None:
        for env, (version, source) in expected.items():
            spec = routes.served("m", env)
            assert spec is not None and (spec.stable, spec.source) == (version, source), env
            table = RouteTable(three.context, env)
            assert [(s.model, s.stable) for s in table.specs()] == [("m", version)]
            table.close()
            with three.store.read() as s:
                mrow = s.query(ModelRow).filter_by(name="m").one()
                assert serves_now(s, mrow, env, version)
                assert version in servable_versions(s, env, "m")["m"]

    check()
    assert routes.get_route("m", "production") is None  # no row: served by stage
    routes.set_route("m", "production", stable="1.0.2", reason="the row decides now")
    expected["production"] = ("1.0.2", RouteSource.ROUTE)
    check()
    routes.clear_route("m", "production")
    expected["production"] = ("1.0.0", RouteSource.STAGE)
    check()


def test_a_person_and_a_rollout_write_routes_through_the_same_rules(three: ModelRegistry
                                                                    ) -> None:
    from mlops.deployment.rollouts import RolloutManager
    from mlops.deployment.routes import RolloutAuthority, RouteChange
    from mlops.store.routes import RouteMode, RouteState

    routes = RoutingService(three)
    with pytest.raises(DeploymentError, match="0-100"):
        routes.set_route("m", "production", stable="1.0.0", candidate="1.0.1", weight=150)
    rollout = RolloutManager(three).deploy("m", "1.0.1", "production", strategy="canary",
                                           override="tests go straight to production")
    with pytest.raises(DeploymentError, match="0-100"), three.store.write() as s:
        mrow = routes.model_row(s, "m")
        routes.apply(s, mrow, "production", RouteChange(
            "1.0.0", "1.0.1", 150, RouteMode.SPLIT, "canary", RouteState.PROGRESSING),
            authority=RolloutAuthority(rollout.id))
    with pytest.raises(DeploymentError, match="set by rollouts"):
        routes.set_route("m", "staging", stable="1.0.1", config={"keep_loaded": ["1.0.0"]})
    [by_rollout] = three.audit_log(action="route.set", limit=1)
    assert by_rollout.payload["rollout"] == rollout.id
    assert by_rollout.payload["after"] == {"stable": "1.0.0", "candidate": "1.0.1",
                                           "weight": 10.0, "mode": "split"}
    routes.set_route("m", "staging", stable="1.0.1", reason="by hand")
    [by_hand] = three.audit_log(action="route.set", limit=1)
    assert by_hand.payload["reason"] == "by hand" and "policy" in by_hand.payload
    assert three.verify_audit().ok


def test_an_idle_route_table_on_postgresql_does_not_query_the_database(
        three: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    if three.store.dialect != "postgresql":
        pytest.skip("SQLite polls the routing counter")
    table = RouteTable(three.context, "production")
    try:
        assert table.refresh()  # the first load reads
        store = three.store

        def no_query(*_: object, **__: object) -> object:
            raise AssertionError("an idle refresh queried the database")

        monkeypatch.setattr(store, "read", no_query)
        assert not any(table.refresh() for _ in range(50))
        monkeypatch.undo()
        RoutingService(ModelRegistry(three.settings)).set_route("m", "production",
                                                                stable="1.0.1")
        assert table.wait_for_change(5.0) and table.refresh()
        assert table.route("m").stable.version == "1.0.1"
    finally:
        table.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (skipped without MLOPS_TEST_POSTGRES_URL)."""
    if PG_URL is None:
        pytest.skip("MLOPS_TEST_POSTGRES_URL not set (.ci/run sets it)")
    yield from pg_database()


def test_a_gateway_on_postgresql_switches_within_a_second_by_notification(
        tmp_path: Path, data: Data, pg_url: str) -> None:
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, database_url=pg_url, actor="tester"))
    x, y = data
    for i, c in enumerate((1.0, 0.01)):
        path = tmp_path / f"clf{i}.skops"
        sio.dump(LogisticRegression(C=c).fit(x, y), path)
        registry.register("clf", path, version=f"1.{i}.0")
    registry.promote("clf", "1.0.0", "production")
    srv = start_server(home, env_extra={"MLOPS_DATABASE_URL": pg_url})
    try:
        with srv.client() as c:
            def version() -> str:
                return c.post("/v1/models/clf:predict", json=_row(data)
                              ).headers["x-model-version"]

            assert version() == "1.0.0"
            admin = dedicated_connection(registry.store, "test")
            try:
                listening = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = %s "
                    "AND application_name = 'mlops routing listener'",
                    ["LISTEN mlops_routing"]).fetchone()[0]
            finally:
                admin.close()
            assert listening >= 1  # the gateway listens instead of polling the counter
            RoutingService(registry).set_route("clf", "production", stable="1.1.0")
            switched = time.monotonic()
            while version() != "1.1.0":
                assert time.monotonic() - switched < 1.0, "not switched within 1 s"
                time.sleep(0.02)
    finally:
        srv.stop()


def test_a_model_that_fails_to_load_is_retried_at_the_poll_pace_not_in_a_loop(
        three: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh loop wakes on a change at once, but a load that keeps failing (a stale
    table) is tried again every poll_seconds, not as fast as the loop can spin."""
    from mlops.serving.gateway import Gateway, GatewayConfig

    gateway = Gateway(three.settings, GatewayConfig(environment="production",
                                                    log_predictions=False,
                                                    poll_seconds=0.1))
    calls: list[float] = []

    def failing(self: RouteTable, force: bool = False) -> bool:
        calls.append(time.monotonic())
        self._stale = True  # what a failed load leaves behind
        return True

    monkeypatch.setattr(RouteTable, "refresh", failing)

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(gateway._poll())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run_for(1.5))
    finally:
        gateway.table.close()
    assert 3 <= len(calls) <= 20  # about one try per 0.1 s (a spinning loop: thousands)
