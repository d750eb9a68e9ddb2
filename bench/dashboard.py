"""Dashboard benchmark: server time of each page with 50 models x 20 versions and 1M logged
predictions (issue #15; goal: every page under 300 ms).

Run with ``.venv/bin/python bench/dashboard.py`` (builds a store in a temporary folder and
removes it at the end); ``--store DIR`` builds it there once and reuses it on later runs.

The store, built through the application's own calls:

- ``--models`` models (50) of ``--versions`` versions (20) each: one of four fitted
  logistic regressions (8 features) registered again and again, each version with its own
  metrics, tags, input example and reference profile;
- production: the 18th version (2.7.0; versions run 1.0.0, 1.1.0, ..., 2.9.0) of each
  model fully deployed (a rollout with ``strategy=full``); every fifth model also has
  2.8.0 as a 10% canary (steps 10/50/100, an unreachable ``min_samples`` so that it stays
  progressing; its traffic since the start split 90/10), analysed once by the rollout
  controller; staging serves 2.9.0 by its Staging stage; ``champion`` points at 2.7.0;
- CI: the quality gates run for real on three versions (``run_registered``), their reports
  copied into one recorded run for every version (what the pipeline would have stored);
- monitoring: hourly metric snapshots of production over ``--windows`` windows (168: a
  week) for every model (``record_snapshots``; feature drift in a few windows), three
  alert rules with firing, acknowledged and resolved incidents;
- retraining: a configuration for every model, finished jobs with their logs and
  decisions (``mlops.store.retrain``), a few queued; KPIs for ten models;
- the prediction log: ``--predictions`` rows (1M) over the last ``--hours`` hours (24),
  written straight as Parquet in the log's own layout (``partition_path``/``part_name``,
  lz4, ``--file-rows`` rows a file, as a gateway's flushes would), model ``i`` taking a
  share proportional to ``1/(i+1)^0.7`` (the busiest about 11%); production's stable and
  canary versions and staging's; 0.5% 5xx, latency ~ gamma; feedback for 30% of the
  successful rows. The pages look at the last hour (``monitor_window``), so a reused store
  whose log is older than ``--stale`` minutes gets a fresh log (a few seconds).

Each page is requested in process through ``httpx.ASGITransport`` against
``create_dashboard(registry, ApiAuth(settings))`` in single-user mode (the time is the
ASGI app's: routing, the application calls, rendering; no socket), ``--warmup`` times,
then ``--requests`` times; the table gives the median and p95 (nearest rank). The
per-model pages use the busiest model (model 0, the one with a canary).

``--profile`` then runs each page over the goal once more under cProfile, with the
thread-pool hop replaced by a direct call so that the whole request is in one thread, and
prints the functions with the largest cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GOAL_MS = 300.0
FEATURES = [f"f{i}" for i in range(8)]
DOMAINS = ("churn", "fraud", "ltv", "risk", "spam")
TEAMS = ("growth", "risk", "payments", "trust")
FAST = {"gates": {"security": {}, "data_quality": {}, "metrics": {"accuracy": 0.8},
                  "champion": {}}}
PROD, CANARY, STAGING = 17, 18, 19  # version indices (0-based) of what serves
TS = pa.timestamp("us", tz="UTC")


def model_name(i: int) -> str:
    return f"{DOMAINS[i % len(DOMAINS)]}-{i:02d}"


def version_name(j: int) -> str:
    return f"{1 + j // 10}.{j % 10}.0"


def has_canary(i: int) -> bool:
    return i % 5 == 0


@dataclass(frozen=True)
class Layout:
    models: int
    versions: int

    def names(self) -> list[str]:
        return [model_name(i) for i in range(self.models)]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    x["label"] = (x["f0"] + 0.5 * x["f1"] - 0.3 * x["f2"] + rng.normal(0, 0.4, n) > 0) \
        .astype(int)
    return x


# ---------------------------------------------------------------------------- the store


def _settings(store: Path) -> Any:
    from mlops.config import Settings

    return Settings(home=store / ".mlops", actor="bench")


def _step(label: str, t0: float) -> float:
    now = time.perf_counter()
    print(f"  {label:<52}{now - t0:7.1f} s", flush=True)
    return now


def build_store(store: Path, layout: Layout, windows: int) -> dict[str, Any]:
    """Everything but the prediction log; returns facts the measurement needs."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    from mlops.ci.pipeline import ModelPipeline
    from mlops.ci.policy import Policy
    from mlops.ci.runs import RunStore
    from mlops.deployment.rollouts import RolloutManager
    from mlops.governance.impact import define_kpi, record_kpi
    from mlops.identity import Principal, Role
    from mlops.monitoring.alerts import AlertManager, Observation
    from mlops.monitoring.drift_window import feature_drift_metric
    from mlops.monitoring.rules import AlertRule
    from mlops.monitoring.snapshots import record_snapshots
    from mlops.registry.service import ModelRegistry
    from mlops.retraining.service import RetrainService
    from mlops.store import retrain as retrain_rows
    from mlops.store.retrain import JobState

    settings = _settings(store)
    registry = ModelRegistry(settings)
    ana = registry.acting_as(Principal("ana", Role.ADMIN, "token"))
    work = store / "work"
    work.mkdir(parents=True, exist_ok=True)
    train, test = _frame(2000, 1), _frame(600, 2)
    t = time.perf_counter()

    # models and versions: four fitted variants, registered over and over
    files = []
    for k, c in enumerate((1.0, 0.3, 0.1, 0.03)):
        path = work / f"variant{k}.skops"
        sio.dump(LogisticRegression(C=c, max_iter=300).fit(train[FEATURES], train["label"]),
                 path)
        files.append(path)
    reference = train[FEATURES].head(1000)
    example = train[FEATURES].head(3)
    rng = np.random.default_rng(7)
    for i, name in enumerate(layout.names()):
        for j in range(layout.versions):
            acc = float(np.clip(0.80 + 0.006 * j + rng.normal(0, 0.01), 0, 1))
            ana.register(name, files[(i + j) % len(files)], version=version_name(j),
                         metadata={"accuracy": round(acc, 4), "f1_score": round(acc - 0.03, 4),
                                   "roc_auc": round(min(acc + 0.05, 1.0), 4),
                                   "team": TEAMS[i % len(TEAMS)], "dataset": f"ds-{j}",
                                   "algorithm": "logistic"},
                         description=f"{name} retrained on snapshot {j}",
                         input_example=example, reference=reference)
    t = _step(f"register {layout.models} x {layout.versions} versions", t)

    # CI: three real runs of the gates, their reports recorded for every version
    pipeline = ModelPipeline(ana, policy=Policy({"default_tier": "fast",
                                                 "tiers": {"fast": FAST}}))
    runs = RunStore(ana)
    reports = []
    for i in range(min(3, layout.models)):
        name, version = model_name(i), version_name(PROD)
        result = pipeline.run_registered(name, version, test)
        reports.append(runs.runs(name, version, limit=1)[0]["report"])
        print(f"    gates of {name} {version}: {result.status}")
    for i, name in enumerate(layout.names()):
        for j in range(layout.versions):
            if i < 3 and j == PROD:
                continue
            report = json.loads(json.dumps(reports[(i + j) % len(reports)]))
            report["version"] = version_name(j)
            run = runs.start(name, uuid.uuid4().hex * 2, "d" * 64, {"tier": "fast"})
            runs.finish(run, name, version_name(j), "passed", report)
    t = _step("CI runs (3 real, the rest recorded)", t)

    # what serves: production by rollouts (a canary on every fifth model), staging by stage
    manager = RolloutManager(ana)
    started: dict[str, float] = {}
    for i, name in enumerate(layout.names()):
        manager.deploy(name, version_name(PROD), "production", strategy="full",
                       override="bench: straight to production")
        ana.set_alias(name, "champion", version_name(PROD))
        ana.promote(name, version_name(STAGING), "Staging", override="bench")
        if has_canary(i):
            r = manager.deploy(name, version_name(CANARY), "production", strategy="canary",
                               override="bench: straight to production",
                               config={"steps": [{"weight": 10, "pause": 0},
                                                 {"weight": 50, "pause": 0},
                                                 {"weight": 100}],
                                       "min_samples": 100_000, "max_step_seconds": 86_400})
            started[name] = r.started_at.timestamp()
    t = _step("rollouts, aliases, stages", t)

    # metric snapshots: hourly windows of production, drift in a few of them
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hour = timedelta(hours=1)
    for i, name in enumerate(layout.names()):
        for w in range(windows):
            w_end = end - (windows - 1 - w) * hour
            n = 500 + int(200 * np.sin(w / 24 * 2 * np.pi)) + 10 * i
            drifted = [f for k, f in enumerate(FEATURES) if (w + k + i) % 37 == 0]
            values = {
                "throughput_rps": Observation(n / 3600, n), "n_predictions":
                Observation(float(n), n), "latency_p50_ms": Observation(7 + rng.normal(), n),
                "latency_p99_ms": Observation(25 + 3 * rng.normal(), n),
                "error_rate": Observation(abs(0.005 + 0.002 * rng.normal()), n),
                "accuracy": Observation(0.88 + 0.01 * rng.normal(), n // 3),
                "label_coverage": Observation(0.3, n), "health":
                Observation(90 - 5 * len(drifted), n),
                "drift_share": Observation(len(drifted) / len(FEATURES), n)}
            values.update({feature_drift_metric(f): Observation(1.0, n) for f in drifted})
            record_snapshots(ana, name, "", "production", w_end - hour, w_end, values)
    t = _step(f"metric snapshots ({windows} windows x {layout.models} models)", t)

    # alerts: three rules; incidents firing, acknowledged and resolved
    alerts = AlertManager(ana, default_channels=[])
    for rule in (AlertRule(name="accuracy-low", metric="accuracy", comparator="<",
                           threshold=0.85, min_samples=1, severity="high"),
                 AlertRule(name="latency-p99-high", metric="latency_p99_ms", comparator=">",
                           threshold=50.0, min_samples=1),
                 AlertRule(name="errors-high", metric="error_rate", comparator=">",
                           threshold=0.02, min_samples=1, severity="critical")):
        alerts.put_rule(rule)
    bad = {"accuracy-low": 0.7, "latency-p99-high": 80.0, "errors-high": 0.05}
    good = {"accuracy-low": 0.9, "latency-p99-high": 20.0, "errors-high": 0.001}
    for i, name in enumerate(layout.names()):
        for k in range(3 if i % 3 == 0 else 1):  # fire, resolve, fire again
            level = bad if k % 2 == 0 else good

            def observe(rule: AlertRule, level: dict[str, float] = level
                        ) -> Observation | None:
                return Observation(level[rule.name], 100) if rule.name in level else None

            alerts.evaluate(name, version_name(PROD), "production", observe)
        if i % 4 == 0:
            for a in alerts.alerts(name, state="firing")[:1]:
                alerts.ack(a.id, note="looking into it")
    t = _step("alerts", t)

    # retraining: every model configured; finished jobs with logs; decisions; a few queued
    service = RetrainService(ana)
    (work / "train.py").write_text("print('training')\n")
    command = json.dumps([sys.executable, str(work / "train.py")])
    for name in layout.names():
        service.set_config(name, f"command: {command}\ntimeout: 30m\ndata_window: 7d\n"
                           "max_runs_per_day: 3\ntriggers:\n"
                           "  - {name: drift-high, kind: drift, share: 0.3, sustained: 2, "
                           "priority: high, cooldown: 6h}\n"
                           "  - {name: acc-drop, kind: performance, metric: accuracy, "
                           "margin: 0.05, min_labels: 200}\n"
                           "  - {name: by-hand, kind: manual}\n")
    log = "".join(f"epoch {e}: loss {1 / (e + 1):.4f}\n" for e in range(300))
    job_ids = []
    for k in range(150):
        name = model_name(k % layout.models)
        with ana.store.write() as s:
            queued, _ = retrain_rows.queue_job(
                s, name, [{"trigger": "drift-high", "reason": f"drift share 0.{k % 9 + 1}"}],
                priority="high", actor="system:scheduler")
        with ana.store.write() as s:
            job = retrain_rows.claim_next(s, "bench-runner", limit=1)
            assert job is not None and job.id == queued.id
            ok = k % 7 != 0
            retrain_rows.finish_job(
                s, job.id, "bench-runner", JobState.SUCCEEDED if ok else JobState.FAILED,
                outcome={"version": version_name(STAGING), "deploy": {"status": "passed"}}
                if ok else {"error": "training exited with 1"},
                log=log, wall_seconds=60.0 + k, peak_rss_mb=300.0 + k)
            retrain_rows.record_decision(s, name, "drift-high", "queued",
                                         "drift share over 0.3", job_id=job.id)
            retrain_rows.record_decision(s, name, "acc-drop", "skipped",
                                         f"accuracy within margin ({k})")
        job_ids.append(job.id)
    for i in range(min(5, layout.models)):
        service.run(model_name(i), "new labels arrived")
    t = _step("retraining configurations, 150 jobs, 5 queued", t)

    for i in range(min(10, layout.models)):
        name = model_name(i)
        define_kpi(ana, name, "retention", unit="percentage", baseline=80.0, target=85.0)
        define_kpi(ana, name, "handling_cost", unit="currency", baseline=12.0, target=10.0,
                   direction="lower")
        for v in (81.0, 83.5, 86.0):
            record_kpi(ana, name, "retention", v)
    _step("KPIs", t)
    return {"started": started, "job": job_ids[-1]}


# ---------------------------------------------------------------------------- the log


def write_log(root: str, layout: Layout, rows: int, hours: float, file_rows: int,
              started: dict[str, float], seed: int = 0) -> dict[str, int]:
    """``rows`` predictions (and feedback) straight as Parquet in the log's layout."""
    from mlops.store.predlog.layout import (
        FEEDBACK,
        FEEDBACK_FILE_SCHEMA,
        PREDICTION_FILE_SCHEMA,
        PREDICTIONS,
        day_name,
        part_name,
        partition_path,
    )

    for kind in (PREDICTIONS, FEEDBACK):
        shutil.rmtree(os.path.join(root, kind), ignore_errors=True)
    rng = np.random.default_rng(seed)
    now_us = int(time.time() * 1e6)
    # who gets traffic: (model, version, environment, route, share of the model's traffic)
    groups: list[tuple[str, str, str, str, float]] = []
    weights: list[float] = []
    for i in range(layout.models):
        name, w = model_name(i), 1.0 / (i + 1) ** 0.7
        plan = [(version_name(PROD), "production", "stable", 0.95),
                (version_name(STAGING), "staging", "stable", 0.05)]
        if has_canary(i):
            plan = [(version_name(PROD), "production", "stable", 0.85),
                    (version_name(CANARY), "production", "candidate", 0.10),
                    (version_name(STAGING), "staging", "stable", 0.05)]
        for version, env, route, share in plan:
            groups.append((name, version, env, route, share))
            weights.append(w * share)
    p = np.asarray(weights) / sum(weights)
    g = rng.choice(len(groups), rows, p=p)
    ts = now_us - rng.integers(5_000_000, int(hours * 3.6e9), rows)
    # a canary's rows since its rollout started (90/10, as routed): what its analysis reads
    for k, (name, _, env, route, _) in enumerate(groups):
        if name in started and env == "production":
            sel = np.flatnonzero(g == k)[:1800 if route == "stable" else 200]
            since = int(started[name] * 1e6)
            ts[sel] = rng.integers(min(since, now_us - 1_000_000), now_us - 1_000_000,
                                   len(sel))
    status = np.where(rng.random(rows) < 0.005, 500, 200).astype(np.int32)
    ok = status == 200
    x = rng.normal(size=(rows, len(FEATURES))).round(4)
    score = x[:, 0] + 0.5 * x[:, 1] - 0.3 * x[:, 2]
    prob = 1 / (1 + np.exp(-2 * score))
    actual = (score + rng.normal(0, 0.6, rows) > 0).astype(np.int64)
    pred = (prob >= 0.5).astype(np.int64)
    labels = pa.array(["0", "1"])
    inputs = pa.array([json.dumps(dict(zip(FEATURES, map(float, r), strict=True)))
                       for r in x])
    proba = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32)),
        pa.array(np.stack([1 - prob, prob], axis=1).ravel()), mask=pa.array(~ok))
    rid = pc.binary_join_element_wise(pa.array(np.full(rows, "r")),
                                      pc.cast(pa.array(np.arange(rows)), pa.string()), "")
    envs = pa.array([grp[2] for grp in groups])
    routes = pa.array([grp[3] for grp in groups])
    gi = pa.array(g)
    table = pa.table({
        "request_id": rid, "ts": pa.array(ts, TS), "environment": pc.take(envs, gi),
        "route": pc.take(routes, gi), "unit_hash": pa.nulls(rows, pa.string()),
        "row": pa.array(np.zeros(rows, np.int64)), "inputs": inputs,
        "prediction": pc.if_else(pa.array(ok), pc.take(labels, pa.array(pred)),
                                 pa.scalar("null")),
        "prediction_num": pa.array(pred * 1.0, mask=~ok), "proba": proba,
        "latency_ms": pa.array(rng.gamma(4, 2.0, rows)), "status": pa.array(status),
        "propensity": pa.nulls(rows, pa.float64()), "caller": pa.array(np.full(rows, "app")),
        "cpu_ms": pa.array(rng.gamma(2, 1.0, rows)),
    }).cast(PREDICTION_FILE_SCHEMA)
    day = ts // 86_400_000_000
    order = np.lexsort((ts, day, g))
    table, g_s, day_s = table.take(pa.array(order)), g[order], day[order]
    flushed = datetime.now(UTC)
    files = 0

    def write(part: pa.Table, folder: str) -> None:
        nonlocal files
        os.makedirs(folder, exist_ok=True)
        for s in range(0, part.num_rows, file_rows):
            pq.write_table(part.slice(s, file_rows),
                           os.path.join(folder, part_name(flushed, uuid.uuid4().hex)),
                           compression="lz4")
            files += 1

    key = g_s * 100_000 + day_s
    bounds = np.flatnonzero(np.diff(key)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, rows], strict=True):
        name, version = groups[g_s[lo]][0], groups[g_s[lo]][1]
        write(table.slice(lo, hi - lo),
              os.path.join(root, partition_path(PREDICTIONS, name, version,
                                                day_name(int(day_s[lo])))))
    # feedback: 30% of the successful rows, up to 10 minutes later (never in the future)
    fb = np.flatnonzero(ok & (rng.random(rows) < 0.3))
    fts = np.minimum(ts[fb] + rng.integers(0, 600_000_000, len(fb)), now_us - 1)
    model_of = np.asarray([int(grp[0].rsplit("-", 1)[1]) for grp in groups])[g[fb]]
    feedback = pa.table({
        "request_id": rid.take(pa.array(fb)), "row": pa.array(np.zeros(len(fb), np.int64)),
        "actual": pc.take(labels, pa.array(actual[fb])),
        "actual_num": pa.array(actual[fb] * 1.0), "ts": pa.array(fts, TS),
    }).cast(FEEDBACK_FILE_SCHEMA)
    fday = fts // 86_400_000_000
    f_order = np.lexsort((fts, fday, model_of))
    feedback, fm, fd = feedback.take(pa.array(f_order)), model_of[f_order], fday[f_order]
    change = np.flatnonzero((fm[1:] != fm[:-1]) | (fd[1:] != fd[:-1])) + 1
    for lo, hi in zip(np.r_[0, change], np.r_[change, len(fb)], strict=True):
        write(feedback.slice(lo, hi - lo),
              os.path.join(root, partition_path(FEEDBACK, model_name(int(fm[lo])), None,
                                                day_name(int(fd[lo])))))
    return {"predictions": rows, "feedback": len(fb), "files": files,
            "last_hour": int((ts >= now_us - 3_600_000_000).sum())}


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Page:
    label: str
    path: str


def pages(layout: Layout, job: int) -> list[Page]:
    name, prod = model_name(0), version_name(PROD)
    return [
        Page("models (/)", "/"),
        Page("models, searched (/?q=)", "/?q=tags.team%20%3D%20risk%20and%20accuracy%20%3E%200.85"),
        Page("version", f"/models/{name}/versions/{prod}"),
        Page("rollout (canary)", f"/models/{name}/rollouts/production"),
        Page("rollout live.json", f"/models/{name}/rollouts/production/live.json"),
        Page("monitoring", f"/models/{name}/monitoring?environment=production"),
        Page("monitoring live.json",
             f"/models/{name}/monitoring/live.json?environment=production"),
        Page("retraining (all)", "/retraining"),
        Page("retraining (model)", f"/models/{name}/retraining"),
        Page("retraining job", f"/retraining/jobs/{job}"),
        Page("governance (audit log)", "/governance"),
        Page("governance (model)", f"/models/{name}/governance"),
    ]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the pages' thread-pool calls inline (so cProfile sees the whole request)."""
    import mlops.ui.web.app as app_mod
    import mlops.ui.web.pages_governance as gov
    import mlops.ui.web.pages_monitoring as mon
    import mlops.ui.web.pages_retraining as ret
    import mlops.ui.web.pages_rollout as rol

    async def inline(func: Any, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    mods = (app_mod, gov, mon, ret, rol)
    saved = [m.run_in_threadpool for m in mods]
    for m in mods:
        m.run_in_threadpool = inline  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for m, f in zip(mods, saved, strict=True):
            m.run_in_threadpool = f  # type: ignore[attr-defined]


def measure(store: Path, layout: Layout, job: int, warmup: int, requests: int,
            profile: bool, only: str | None) -> list[tuple[Page, list[float], int]]:
    import httpx

    from mlops.api.auth import ApiAuth
    from mlops.registry.service import ModelRegistry
    from mlops.ui.web import create_dashboard

    settings = _settings(store)
    app = create_dashboard(ModelRegistry(settings), ApiAuth(settings))
    results: list[tuple[Page, list[float], int]] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"accept": "text/html"}) as client:
            for page in pages(layout, job):
                if only and only not in page.label:
                    continue
                size = 0
                for _ in range(warmup):
                    r = await client.get(page.path)
                    if r.status_code != 200:
                        raise SystemExit(f"{page.path}: {r.status_code}\n{r.text[:2000]}")
                    size = len(r.content)
                times = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = await client.get(page.path)
                    times.append((time.perf_counter() - t0) * 1e3)
                    assert r.status_code == 200, (page.path, r.status_code)
                results.append((page, times, size))
            if not profile:
                return
            for page, times, _ in results:
                if statistics.median(times) < GOAL_MS:
                    continue
                prof = cProfile.Profile()
                with _one_thread():
                    prof.enable()
                    await client.get(page.path)
                    prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
                print(f"\n===== cProfile: {page.label} ({page.path}) =====")
                print(out.getvalue())

    asyncio.run(run())
    return results


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="build the store here once and reuse it (default: a "
                                    "temporary folder, removed at the end)")
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--file-rows", type=int, default=5000)
    ap.add_argument("--windows", type=int, default=168)
    ap.add_argument("--stale", type=float, default=10.0,
                    help="minutes after which a reused store's log is written afresh")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--page", help="measure only the pages whose label contains this")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile each page whose median is over the goal")
    a = ap.parse_args()
    if a.versions <= STAGING:
        ap.error(f"--versions must be at least {STAGING + 1}")
    layout = Layout(a.models, a.versions)
    store = Path(a.store or tempfile.mkdtemp(prefix="mlops-bench-dashboard-"))
    marker = store / "bench.json"
    try:
        facts: dict[str, Any]
        if marker.exists():
            facts = json.loads(marker.read_text())
            if (facts["models"], facts["versions"]) != (a.models, a.versions):
                raise SystemExit(f"{store} holds {facts['models']} x {facts['versions']}; "
                                 "use another --store")
            print(f"reusing {store}")
        else:
            if store.exists() and any(store.iterdir()):
                raise SystemExit(f"{store} is not empty and holds no bench store")
            store.mkdir(parents=True, exist_ok=True)
            print(f"building the store in {store}")
            t = time.perf_counter()
            facts = {"models": a.models, "versions": a.versions,
                     **build_store(store, layout, a.windows), "log_written": 0.0}
            print(f"  store built in {time.perf_counter() - t:.0f} s")
        if time.time() - facts["log_written"] > a.stale * 60 \
                or facts.get("log_rows") != a.predictions:
            t = time.perf_counter()
            counts = write_log(_settings(store).artifacts_uri, layout, a.predictions, a.hours,
                               a.file_rows, facts["started"])
            if not facts["log_written"]:  # the canaries' first analysis, on their traffic
                from mlops.deployment.rollouts import RolloutManager
                from mlops.identity import Principal, Role
                from mlops.registry.service import ModelRegistry

                registry = ModelRegistry(_settings(store)).acting_as(
                    Principal("ana", Role.ADMIN, "token"))
                RolloutManager(registry).tick(time.time() + 6)
            facts.update(log_written=time.time(), log_rows=a.predictions, counts=counts)
            marker.write_text(json.dumps(facts))
            print(f"  prediction log: {counts['predictions']:,} predictions "
                  f"({counts['last_hour']:,} in the last hour), {counts['feedback']:,} "
                  f"feedback rows, {counts['files']} files, in {time.perf_counter() - t:.1f} s")
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        db = next(iter(store.rglob("*.db")), None)
        print(f"store {size / 2**20:,.0f} MiB (database "
              f"{db.stat().st_size / 2**20 if db else 0:,.0f} MiB), {os.cpu_count()} CPUs, "
              f"Python {sys.version.split()[0]}\n")

        results = measure(store, layout, int(facts["job"]), a.warmup, a.requests, a.profile,
                          a.page)
        print(f"\nDashboard: {a.models} models x {a.versions} versions, "
              f"{a.predictions:,} logged predictions; {a.requests} requests per page after "
              f"{a.warmup} warm-up\n")
        print(f"{'page':<26}{'median ms':>10}{'p95 ms':>9}{'KiB':>7}{'goal ms':>9}  met")
        for page, times, nbytes in results:
            med = statistics.median(times)
            print(f"{page.label:<26}{med:>10.1f}{_p95(times):>9.1f}{nbytes / 1024:>7.0f}"
                  f"{GOAL_MS:>9.0f}  {'met' if med < GOAL_MS and _p95(times) < GOAL_MS else 'NOT met'}")
    finally:
        if not a.store:
            shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
