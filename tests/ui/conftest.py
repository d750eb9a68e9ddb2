"""A small store for the dashboard tests: two models, CI runs with gates, a canary route,
a firing alert; registered and gated by "ana" so that other people may approve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.deployment.routes import RoutingService
from mlops.identity import Principal, Role
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.rules import AlertRule
from mlops.registry.service import ModelRegistry

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
