"""The closed loop, timed: from the monitoring window that fires a drift trigger to the
retrained version serving 100% of production, split by phase.

Run with ``.venv/bin/python bench/retrain_loop.py`` (about 30 s a run; ``--runs 3``).

The set-up is the demo's (``mlops demo``, sections 2, 7 and 7b; the pieces come from
:mod:`mlops.cli.demo_retrain`), on a fresh store each run:

- the demo's data (5,000 rows, 8 Gaussian features, a non-linear label); a random forest
  through the CI pipeline under the built-in medium-risk policy and the "gated" promotion
  rule, approved by an approver and promoted to production (not compiled to ONNX, unlike
  the demo's production forest);
- one ``mlops serve`` on a free port with the demo's monitoring settings (the evaluator
  runs every 2 s over the last 30 s) and the rollout controller every 0.5 s;
- 600 requests of normal traffic with labels; the demo's retraining configuration (a
  drift trigger, ``drift_share >= 0.3`` in the newest evaluated window, ``auto_deploy``;
  the job trains a logistic regression on the labelled traffic of the last 10 s, the
  newest 30% held out for the gates); then the world shifts as in the demo (f0, f1 and
  f3 move by 1.5 sd, the label follows a new rule): 2,400 fresh rows in 20-row requests,
  each followed by its labels, sent as fast as one client can;
- from the shift on, a scheduler pass every ``--scheduler-interval`` seconds
  (``RetrainService.run_pass``, what ``mlops serve`` runs every ``MLOPS_RETRAIN_INTERVAL``,
  60 s by default; the server's own scheduler is kept out of it);
- the policy asks for one approval: the approver signs the new version off as soon as its
  pipeline run ends (a person takes longer; the phase is shown on its own), then starts
  the policy's strategy, a canary, with a plan without timed pauses (the policy's waits
  5 minutes after each of 10% and 50%): ``--canary demo`` is the demo's (50%, 100%, 150
  requests per arm before a verdict), ``--canary policy`` the policy's steps (10%, 50%,
  100%) with the demo's analysis, ``--canary fast`` 50%, 100% with 50 per arm. One client
  sends the shifted world's traffic (10-row requests, back to back) with labels.

Phases, from the records (the audit log, the job row and the trigger's evidence):

- detection: the end of the triggering window -> the job is queued;
- training: the job starts -> its pipeline run starts (data export and the training
  command; the command's own wall time is shown below it);
- gates: the pipeline run (gates, registration, staging deployment and staging tests);
- approval: the run ends -> the production rollout starts;
- rollout: the rollout starts -> it succeeds (production serves the new version 100%).

Also shown (not part of the total): the time from the first shifted request to the end of
the triggering window (the monitoring window filling with drifted traffic).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "bench_classifier"
FEATURES = [f"f{i}" for i in range(8)]

PHASES = ("detection", "training", "gates", "approval", "rollout")


def _data(rows: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's data (section 1) and its train/test split."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 8))
    logits = x[:, 0] * 1.5 - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5,
                                                                            size=rows)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = (logits > 0).astype(int)
    train, test = train_test_split(frame, test_size=0.3, random_state=7)
    return train, test


def _at(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def one_run(home: Path, canary: dict[str, Any], scheduler_interval: float) -> dict[str, Any]:
    """One closed loop on a fresh store in ``home``; the phases in seconds."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from mlops.ci.approvals import approve
    from mlops.ci.pipeline import ModelPipeline
    from mlops.ci.policy import configured_policy
    from mlops.cli.demo import demo_people
    from mlops.cli.demo_gateway import send, start_gateway
    from mlops.cli.demo_retrain import (
        MONITOR_ENV,
        drive,
        new_world,
        read_chain,
        retrain_config,
        write_training_script,
    )
    from mlops.config import get_settings
    from mlops.deployment.rollouts import RolloutManager
    from mlops.deployment.routes import RoutingService
    from mlops.registry.service import ModelRegistry
    from mlops.retraining.service import RetrainService

    os.environ["MLOPS_HOME"] = str(home)
    registry = ModelRegistry(get_settings(home=home, promotion_policy="gated"))
    ana, rui = demo_people(registry)
    work = home / "bench"
    work.mkdir(parents=True)
    train, test = _data()
    test_path = work / "test.csv"
    test.to_csv(test_path, index=False)
    train.to_csv(work / "train.csv", index=False)
    forest = RandomForestClassifier(n_estimators=60, max_depth=8, random_state=7)
    forest.fit(train[FEATURES], train["label"])
    sio.dump(forest, work / "forest.skops")
    first = ModelPipeline(ana).run(work / "forest.skops", MODEL, test_path,
                                   metadata={"training_data": str(work / "train.csv")})
    assert first.version is not None, first.status
    approve(rui, MODEL, first.version, "bench")
    ModelPipeline(rui).promote(MODEL, first.version)

    # the server's own scheduler passes at start-up and then hourly: the bench runs the
    # passes (as the demo does), every scheduler_interval seconds
    proc, url = start_gateway(registry, "--controller-interval", "0.5", env_extra={
        **MONITOR_ENV, "MLOPS_RETRAIN_INTERVAL": "3600"})
    try:
        normal = test.sample(600, random_state=1)
        send(url, MODEL, normal, normal["label"].to_numpy(), FEATURES)
        script = write_training_script(work, MODEL, FEATURES)
        service = RetrainService(registry)
        service.set_config(MODEL, retrain_config(script))
        start_seq = registry.audit_log(limit=1)[0].seq
        found: dict[str, Any] = {}

        def scheduler() -> None:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                report = service.run_pass(wait=True)
                if report.started:
                    found["job"] = report.started[0]
                    return
                time.sleep(scheduler_interval)

        thread = threading.Thread(target=scheduler, daemon=True)
        shift_at = datetime.now(UTC)
        thread.start()
        shifted, labels = new_world(2400, FEATURES, seed=17)
        send(url, MODEL, shifted, labels, FEATURES)
        thread.join(240)
        if "job" not in found:
            raise SystemExit("the drift trigger did not fire within 3 minutes")
        job, _ = service.job(found["job"])
        version = job.outcome.get("version")
        if job.state.value != "succeeded" or not version:
            raise SystemExit(f"the retrain did not pass: {job.outcome.get('error')}")
        policy = configured_policy(registry.settings.policy_file).for_model(MODEL)
        approve(rui, MODEL, version, "bench: approve as soon as the run ends")
        manager = RolloutManager(rui)
        manager.deploy(MODEL, version, "production",
                       strategy=str(policy.rollout.get("strategy", "canary")), config=canary,
                       reason=f"retrain job {job.id}")
        world, world_labels = new_world(3000, FEATURES, seed=23)
        rollout = drive(url, MODEL, manager, world, world_labels, FEATURES, seconds=300)
        if rollout is None or rollout.state != "succeeded":
            raise SystemExit(f"the canary did not succeed: {rollout.reason if rollout else '-'}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    served = RoutingService(registry).served(MODEL, "production")
    assert served is not None and served.stable == version and not served.candidate
    chain = read_chain(registry, MODEL, job.id, start_seq)
    window_end = _at(job.reasons[0]["detail"]["windows"][-1][1])
    ci_start = next(e for e in chain.events if e.action == "ci.run.start")
    ci_end = chain.first("ci.run.finish", version=version)
    started = chain.first("rollout.start", "/env/production")
    succeeded = chain.first("rollout.succeed", "/env/production")
    assert job.started_at and ci_end and started and succeeded
    marks = [window_end, job.created_at, job.started_at, _at(ci_start.ts), _at(ci_end.ts),
             _at(started.ts), _at(succeeded.ts)]
    marks = [m.replace(tzinfo=UTC) if m.tzinfo is None else m for m in marks]
    phases = {"detection": (marks[1] - marks[0]).total_seconds(),
              "training": (marks[3] - marks[2]).total_seconds(),
              "gates": (marks[4] - marks[3]).total_seconds(),
              "approval": (marks[5] - marks[4]).total_seconds(),
              "rollout": (marks[6] - marks[5]).total_seconds()}
    from mlops.ci.runs import RunStore

    report = next(r["report"] for r in RunStore(registry).runs(MODEL, version)
                  if r["run"] == job.outcome.get("ci_run"))
    step = {st["name"]: float(st.get("duration_s") or 0.0) for st in report.get("steps", [])}
    gates = sum(v for k, v in step.items() if k.startswith("gate:") and k != "gate:resources")
    return {**phases, "total": (marks[6] - marks[0]).total_seconds(),
            "resources": step.get("gate:resources", 0.0), "other_gates": gates,
            "staging": step.get("deploy_staging", 0.0) + step.get("staging_tests", 0.0),
            "queue": (marks[2] - marks[1]).total_seconds(),
            "command": float(job.wall_seconds or 0.0),
            "filling": (window_end - shift_at).total_seconds(),
            "window_rows": job.outcome["data"]["window"]["rows"],
            "steps": len(rollout.steps), "version": version}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--canary", choices=["demo", "policy", "fast"], default="demo")
    ap.add_argument("--scheduler-interval", type=float, default=1.0,
                    help="seconds between scheduler passes")
    args = ap.parse_args()
    from mlops.cli.demo_retrain import CANARY

    canary = {"demo": CANARY,
              "policy": {**CANARY, "steps": [{"weight": 10, "pause": 0},
                                             {"weight": 50, "pause": 0}, {"weight": 100}]},
              "fast": {**CANARY, "min_samples": 50}}[args.canary]
    plan = " -> ".join(f"{s['weight']}%" for s in canary["steps"])
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"canary ({args.canary}): {plan}, no timed pauses (the policy's add 2 x 5 min), "
          f"{canary['min_samples']} requests per arm before a verdict; scheduler pass every "
          f"{args.scheduler_interval:g} s; monitoring evaluator every 2 s over 30 s\n")
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="mlops-retrain-bench-") as tmp:
            result = one_run(Path(tmp) / ".mlops", canary, args.scheduler_interval)
        results.append(result)
        print(f"run {i + 1}: {result['version']} serves 100% after {result['total']:.1f} s "
              f"({result['window_rows']:,} window rows)")
    print()
    cols = [f"run {i + 1}" for i in range(len(results))] + \
        (["median"] if len(results) > 1 else [])
    print(f"{'phase (s)':<44}" + "".join(f"{c:>9}" for c in cols))
    labels = {"detection": "detection: window end -> job queued",
              "training": "training: job start -> pipeline start",
              "command": "  of which the training command",
              "gates": "gates: pipeline (gates, staging, tests)",
              "other_gates": "  of which the other gates",
              "resources": "  of which the resources gate (a probe)",
              "staging": "  of which staging (deploy, gateway, tests)",
              "approval": "approval: run end -> rollout start",
              "rollout": "rollout: start -> production 100%",
              "total": "total: window end -> production 100%",
              "filling": "(first shifted request -> window end)"}
    for key in ("detection", "training", "command", "gates", "other_gates", "resources",
                "staging", "approval", "rollout", "total", "filling"):
        values = [float(r[key]) for r in results]
        shown = values + ([statistics.median(values)] if len(values) > 1 else [])
        print(f"{labels[key]:<44}" + "".join(f"{v:>9.1f}" for v in shown))


if __name__ == "__main__":
    main()
