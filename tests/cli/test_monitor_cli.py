"""``mlops monitor`` and ``mlops alerts`` in a subprocess: tables, --json, HTML report, exit
codes (1 when drift or a firing alert is found)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops.deployment.routes import RoutingService
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from tests.cli.test_cli import run

FEATURES = ["a", "b", "c"]


def _setup(tmp_path: Path) -> tuple[ModelRegistry, Path, Path]:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(3000, 3)), columns=FEATURES)
    train["kind"] = rng.choice(["x", "y"], 3000)
    model = LogisticRegression().fit(train[FEATURES], (train["a"] > 0).astype(int))
    registry = ModelRegistry()
    registry.register("churn", model=model)
    ref = tmp_path / "ref.csv"
    train[FEATURES].to_csv(ref, index=False)
    current = train[FEATURES].sample(2000, random_state=1).copy()
    current["b"] += 1.0
    cur = tmp_path / "current.parquet"
    current.to_parquet(cur)
    return registry, ref, cur


def test_reference_then_drift_with_html_report(tmp_path: Path) -> None:
    _, ref, cur = _setup(tmp_path)
    r = run("monitor", "reference", "churn", "1.0.0", "--data", str(ref), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "features: 3 column(s) from 3,000 rows" in r.stdout
    html = tmp_path / "report.html"
    r = run("monitor", "drift", "churn", "--current", str(cur), "--version", "1.0.0",
            "--html", str(html), cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # drift found
    assert "1 of 3 features drifted" in r.stdout
    page = html.read_text()
    assert page.count("<svg") == 3 and "<script" not in page
    assert not re.search(r"(src|href)=['\"]https?://", page)  # self-contained, no CDN
    r = run("monitor", "drift", "churn", "--current", str(cur), "--version", "1.0.0",
            "--json", cwd=tmp_path)
    report = json.loads(r.stdout)
    assert [f["feature"] for f in report["features"] if f["drifted"]] == ["b"]
    r = run("monitor", "drift", "churn", cwd=tmp_path)
    assert r.returncode == 2 and "exactly one of --current" in r.stderr


def test_status_alerts_list_ack_and_rules(tmp_path: Path) -> None:
    registry, _, _ = _setup(tmp_path)
    RoutingService(registry).set_route("churn", "production", stable="1.0.0")
    monitor = ModelMonitor(registry)
    for i in range(120):
        monitor.record_prediction("churn", 1, 0 if i % 3 else 1, latency_ms=3.0,
                                  features={"a": 0.1, "b": 0.2, "c": 0.3})
    monitor.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: acc\n  metric: accuracy\n  comparator: '<'\n  threshold: 0.9\n"
                     "  min_samples: 50\n  severity: critical\n")
    r = run("alerts", "rules", "--add", str(rules), cwd=tmp_path)
    assert r.returncode == 0 and "acc" in r.stdout and "error-rate" in r.stdout
    r = run("monitor", "evaluate", "churn", "--env", "production", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "alert acc: fired" in r.stdout
    r = run("monitor", "status", "churn", "--env", "production", cwd=tmp_path)
    assert r.returncode == 1  # an alert is firing
    assert "accuracy" in r.stdout and "health" in r.stdout and "firing" in r.stdout
    listed = json.loads(run("alerts", "list", "--state", "firing", "--json",
                            cwd=tmp_path).stdout)
    acc = next(a for a in listed if a["rule"] == "acc")
    r = run("alerts", "ack", str(acc["id"]), "--note", "on it", cwd=tmp_path)
    assert r.returncode == 0 and "acknowledged by tester" in r.stdout
    r = run("alerts", "ack", "999", cwd=tmp_path)
    assert r.returncode == 2 and "No alert with id 999" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  metric: acuracy\n  comparator: '<'\n  threshold: 1\n")
    r = run("alerts", "rules", "--add", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "line 2" in r.stderr and "unknown metric" in r.stderr


def test_control_chart_over_the_stored_history(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from mlops.monitoring.alerts import Observation
    from mlops.monitoring.snapshots import record_snapshots

    registry, _, _ = _setup(tmp_path)
    rng = np.random.default_rng(5)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    values = np.r_[rng.normal(0.9, 0.01, 40), rng.normal(0.86, 0.01, 20)]  # a 4-sigma drop
    for i, value in enumerate(values):
        at = start + timedelta(minutes=i)
        record_snapshots(registry, "churn", "1.0.0", "production", at - timedelta(minutes=1),
                         at, {"accuracy": Observation(float(value), 500)})
    r = run("monitor", "chart", "churn", "accuracy", "--env", "production", "--json",
            cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    signals = json.loads(r.stdout)["signals"]
    assert signals and signals[0]["direction"] == "down"
    assert signals[0]["at"] >= (start + timedelta(minutes=40)).isoformat()
    r = run("monitor", "chart", "churn", "latency_p99_ms", cwd=tmp_path)
    assert r.returncode == 2 and "0 stored point" in r.stderr


def test_monitor_baseline_sets_and_removes_metrics(tmp_path: Path) -> None:
    _setup(tmp_path)
    r = run("monitor", "baseline", "churn", "accuracy=0.9", "f1=0.8", cwd=tmp_path)
    assert r.returncode == 0 and "accuracy=0.9, f1=0.8" in r.stdout, r.stderr
    r = run("monitor", "baseline", "churn", "--remove", "f1", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "accuracy=0.9", r.stderr
    r = run("monitor", "baseline", "churn", "--remove", "f1", cwd=tmp_path)
    assert r.returncode == 2 and "No baseline metric 'f1'" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    r = run("monitor", "baseline", "churn", "--remove", "accuracy", cwd=tmp_path)
    assert r.returncode == 0 and "no baseline metrics left" in r.stdout
