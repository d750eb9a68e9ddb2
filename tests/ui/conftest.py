"""A small store for the dashboard tests: two models, CI runs with gates, a canary route,
a firing alert; registered and gated by "ana" so that other people may approve."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from mlops.api.auth import ApiAuth
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.routes import RoutingService
from mlops.governance.impact import define_kpi, record_kpi
from mlops.governance.tokens import TokenService
from mlops.identity import Principal, Role
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.drift_window import feature_drift_metric
from mlops.monitoring.rules import AlertRule
from mlops.monitoring.snapshots import record_snapshots
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RetrainService
from mlops.store import retrain as retrain_rows
from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord
from mlops.store.retrain import JobState
from mlops.ui.web import create_dashboard

FAST = {"gates": {"security": {}, "data_quality": {}, "metrics": {"accuracy": 0.8},
                  "champion": {}}}
XSS = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Demo:
    """What :func:`build_demo` made: model names, their versions, the canary weight."""

    churn: str
    fraud: str
    churn_versions: list[str]
    fraud_versions: list[str]
    canary_weight: float
    alert_id: int


def _frame(n: int, seed: int, flip: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    if flip:
        idx = rng.choice(n, int(flip * n), replace=False)
        y[idx] = 1 - y[idx]
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["label"] = y
    return frame


def build_demo(registry: ModelRegistry, work: Path) -> Demo:
    """Two models through the CI pipeline (run by ana, a developer): churn 1.0.0
    (Production) and 1.1.0 (a 20 % canary in production), fraud 0.1.0 and 0.2.0; one
    firing alert on churn in production."""
    ana = registry.acting_as(Principal("ana", Role.ADMIN, "token"))
    work.mkdir(parents=True, exist_ok=True)
    train, test = _frame(1500, 1), _frame(600, 2)
    test_path = work / "test.csv"
    test.to_csv(test_path, index=False)
    pipeline = ModelPipeline(ana, policy=Policy({"default_tier": "fast",
                                                 "tiers": {"fast": FAST}}))
    features = ["a", "b", "c", "d"]
    versions: dict[str, list[str]] = {"churn": [], "fraud": []}
    for name, cs in (("churn", (1.0, 0.05)), ("fraud", (0.5, 2.0))):
        for i, c in enumerate(cs):
            path = work / f"{name}{i}.skops"
            sio.dump(LogisticRegression(C=c).fit(train[features], train["label"]), path)
            result = pipeline.run(path, name, test_path, stage="register",
                                  metadata={"algorithm": "logistic", "C": c})
            assert result.version is not None, result.to_dict()
            versions[name].append(result.version)
    churn = versions["churn"]
    ana.promote("churn", churn[0], "Production")
    ana.set_alias("churn", "champion", churn[0])
    weight = 20.0
    RoutingService(ana).set_route("churn", "production", stable=churn[0], candidate=churn[1],
                                  weight=weight, strategy="canary", reason="test canary")
    alerts = AlertManager(ana, default_channels=[])
    alerts.put_rule(AlertRule(name="acc-low", metric="accuracy", comparator="<",
                              threshold=0.9, min_samples=1, model="churn"))
    alerts.evaluate("churn", churn[0], "production",
                    lambda rule: Observation(0.5, 10) if rule.name == "acc-low" else None)
    alert_id = alerts.alerts("churn", state="firing")[0].id
    return Demo("churn", "fraud", churn, versions["fraud"], weight, alert_id)


@dataclass(frozen=True)
class LiveDemo:
    """What :func:`add_rollout_and_monitoring` added: a fraud canary in production with
    one analysis, logged traffic and metric snapshots of churn in production."""

    rollout_id: int
    rollout_env: str
    windows: int
    drifted: dict[str, list[int]]  # feature -> indices of the windows it drifted in


def _traffic(name: str, version: str, env: str, n: int, seed: int, *, now: float,
             ago: tuple[float, float], shift: float = 0.0, propensity: float | None = None
             ) -> tuple[list[PredictionRecord], list[FeedbackRecord]]:
    """What the gateway would log for ``n`` requests with their inputs (``shift`` moves
    feature ``a``) between ``ago`` seconds before ``now``, half of them labelled."""
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for i in range(n):
        x = rng.normal(size=4)
        x[0] += shift
        status = 500 if rng.random() < 0.01 else 200
        predicted = int(x[0] + 0.5 * x[1] > 0)
        rid = f"{name}-{version}-{seed}-{i}"
        inputs = json.dumps(dict(zip("abcd", map(float, x), strict=True)))
        records.append(PredictionRecord(
            rid, now - rng.uniform(*ago), name, version, env, "stable", None, 0, inputs,
            str(predicted) if status == 200 else "null",
            float(predicted) if status == 200 else None, None, float(rng.gamma(4, 2.0)),
            status, propensity))
        if status == 200 and i % 2 == 0:
            actual = predicted if rng.random() < 0.85 else 1 - predicted
            labels.append(FeedbackRecord(rid, 0, name, str(actual), float(actual), now))
    return records, labels


def add_rollout_and_monitoring(registry: ModelRegistry, demo: Demo) -> LiveDemo:
    """On top of :func:`build_demo`: fraud 0.1.0 fully deployed to production, then 0.2.0 as
    a 10 % canary with logged traffic and one (inconclusive) analysis; churn's logged
    traffic in production and six windows of metric snapshots, feature ``a`` drifting in
    the last two."""
    ana = registry.acting_as(Principal("ana", Role.ADMIN, "token"))
    manager = RolloutManager(ana)
    first, second = demo.fraud_versions
    manager.deploy(demo.fraud, first, "production", strategy="full",
                   override="dashboard tests go straight to production")
    rollout = manager.deploy(demo.fraud, second, "production", strategy="canary",
                             override="dashboard tests go straight to production",
                             config={"steps": [{"weight": 10, "pause": 0},
                                               {"weight": 50, "pause": 0}, {"weight": 100}],
                                     "min_samples": 100_000, "max_step_seconds": 86_400})
    started = rollout.started_at.timestamp()
    now = time.time()
    log = PredictionLog(registry.context.settings.artifacts_uri)
    for version, n, seed, share in ((first, 900, 11, 0.9), (second, 100, 12, 0.1)):
        # between the rollout's start and now: every later look sees all of them
        records, labels = _traffic(demo.fraud, version, "production", n, seed, now=now,
                                   ago=(0.0, now - started), propensity=share)
        log.log(records)
        log.log_feedback(labels)
    stable, canary = demo.churn_versions
    for version, n, seed in ((stable, 800, 21), (canary, 200, 22)):
        records, labels = _traffic(demo.churn, version, "production", n, seed, now=now,
                                   ago=(10.0, 600.0), shift=1.5)
        log.log(records)
        log.log_feedback(labels)
    log.close()
    manager.tick(now + 6)  # one settled look: inconclusive (min_samples is out of reach)
    end = datetime.fromtimestamp(now, UTC)
    hour = timedelta(hours=1)
    drifted: dict[str, list[int]] = {"a": [4, 5]}
    for i in range(6):
        w_end = end - (5 - i) * hour
        values = {"throughput_rps": Observation(0.2 + 0.05 * i, 700 + 10 * i),
                  "n_predictions": Observation(float(700 + 10 * i), 700 + 10 * i),
                  "latency_p50_ms": Observation(7.0 + i, 700), "latency_p99_ms":
                  Observation(20.0 + 2 * i, 700), "error_rate": Observation(0.01 * i, 700),
                  "accuracy": Observation(0.9 - 0.02 * i, 300),
                  "label_coverage": Observation(0.5, 350), "health": Observation(
                      90.0 - 5 * i, 700),
                  "drift_share": Observation(0.25 if i in drifted["a"] else 0.0, 700)}
        values.update({feature_drift_metric(f): Observation(1.0, 700)
                       for f, at in drifted.items() if i in at})
        record_snapshots(ana, demo.churn, "", "production", w_end - hour, w_end, values)
    return LiveDemo(rollout.id, "production", 6, drifted)


#: the captured log of the finished demo job (markup in it must show as text)
RETRAIN_LOG = "training on 900 rows\n<script>alert('job log')</script>\nsaved model.skops\n"


@dataclass(frozen=True)
class RetrainDemo:
    """What :func:`add_retraining_and_governance` added: churn's retraining configuration
    (fraud has none), one finished job with its log, wall time and peak memory, and two
    KPIs of churn (one measured, one not)."""

    configured: str
    unconfigured: str
    job_id: int
    wall_seconds: float
    peak_rss_mb: float
    kpi: str
    kpi_unmeasured: str


def add_retraining_and_governance(registry: ModelRegistry, demo: Demo, work: Path
                                  ) -> RetrainDemo:
    """On top of :func:`build_demo`: a retraining configuration of churn (drift,
    performance and manual triggers, none of which fires without traffic), a job queued
    by hand and finished as the runner records it, a skipped decision, and churn's KPIs."""
    ana = registry.acting_as(Principal("ana", Role.ADMIN, "token"))
    service = RetrainService(ana)
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.py").write_text("print('training')\n")
    command = json.dumps([sys.executable, str(work / "train.py")])
    service.set_config(demo.churn, f"command: {command}\ntimeout: 10m\ndata_window: 7d\n"
                       "max_runs_per_day: 3\ntriggers:\n"
                       "  - {name: drift-high, kind: drift, share: 0.3, sustained: 2, "
                       "priority: high, cooldown: 6h}\n"
                       "  - {name: acc-drop, kind: performance, metric: accuracy, "
                       "margin: 0.05, min_labels: 200}\n"
                       "  - {name: by-hand, kind: manual}\n")
    queued = service.run(demo.churn, "new labels arrived")
    wall, rss = 12.5, 180.25
    with registry.store.write() as s:
        job = retrain_rows.claim_next(s, "demo-runner", limit=1)
        assert job is not None and job.id == queued.id
        retrain_rows.finish_job(s, job.id, "demo-runner", JobState.SUCCEEDED,
                                outcome={"version": demo.churn_versions[1],
                                         "deploy": {"status": "passed"}},
                                log=RETRAIN_LOG, wall_seconds=wall, peak_rss_mb=rss)
        retrain_rows.record_decision(s, demo.churn, "drift-high", "skipped",
                                     "drift share 0.1 is below 0.3")
    define_kpi(ana, demo.churn, "retention", unit="percentage", baseline=80.0, target=85.0,
               description="customers kept after 90 days")
    record_kpi(ana, demo.churn, "retention", 86.5)
    define_kpi(ana, demo.churn, "handling_cost", unit="currency", baseline=12.0, target=10.0,
               direction="lower")
    return RetrainDemo(demo.churn, demo.fraud, queued.id, wall, rss, "retention",
                       "handling_cost")

#: what a browser asks for (the dashboard answers HTML then, JSON otherwise)
HTML = {"accept": "text/html"}


def csrf_of(page: str) -> str:
    """The CSRF field of a rendered form."""
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: Any, token: str) -> None:
    """Log a TestClient in through the login form (team mode)."""
    form = client.get("/login")
    assert form.status_code == 200
    r = client.post("/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


@pytest.fixture(scope="module")
def browser(served: Any) -> Iterator[Any]:
    """Debian's Chromium through Playwright (after ``served``, which skips or fails the
    module when the browser is missing)."""
    from tests.ui.test_dashboard_browser import ARGS, CHROMIUM, unavailable

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield found
        finally:
            found.close()


def role_tokens(registry: ModelRegistry) -> dict[Role, str]:
    """One token per role (``<role>-user``), for team-mode pages."""
    return {role: TokenService(registry).create(f"{role.value}-user", role)[1]
            for role in Role}


@pytest.fixture
def client(store: Any) -> Iterator[TestClient]:
    """Single-user mode over the module's ``store`` (a fixture with ``settings`` and
    ``registry``): the local user (tester, an admin)."""
    with TestClient(create_dashboard(store.registry, ApiAuth(store.settings)),
                    headers=HTML) as c:
        yield c


@pytest.fixture
def team(store: Any) -> Iterator[TestClient]:
    """Team mode over the same store: pages need a login."""
    settings = store.settings.model_copy(update={"auth": True})
    with TestClient(create_dashboard(ModelRegistry(settings), ApiAuth(settings)),
                    headers=HTML) as c:
        yield c
