"""The demo's retraining section: the loop closes. A drift trigger fires on what monitoring
recorded, a job trains on the recent labelled window, the new version goes through the
gates and staging, an approver signs it off, and a canary driven by live traffic (with
labels) takes it to production. The chain is printed from the audit log.

The pieces are public so that ``bench/retrain_loop.py`` times the same set-up.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from mlops.cli.demo_gateway import post_json, send, start_gateway
from mlops.cli.output import console
from mlops.registry.service import ModelRegistry
from mlops.store.audit import AuditEvent

__all__ = ["CANARY", "MONITOR_ENV", "TRAIN_SCRIPT", "Chain", "drive", "evaluated_after",
           "new_world", "read_chain", "retrain_config", "retrain_section",
           "write_training_script"]

#: the training command's script: a logistic regression on the window's features and label
TRAIN_SCRIPT = '''"""Retrain {model} on the recent labelled window (written by mlops demo)."""
import json
import os

import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

FEATURES = {features!r}
window = pd.read_parquet(os.environ["MLOPS_RETRAIN_WINDOW"])
x, y = window[FEATURES], window[os.environ["MLOPS_RETRAIN_LABEL"]].astype(int)
model = LogisticRegression(max_iter=500)
cv = float(cross_val_score(model, x, y, cv=5).mean())
model.fit(x, y)
out = os.environ["MLOPS_RETRAIN_OUTPUT"]
sio.dump(model, os.path.join(out, "model.skops"))
with open(os.path.join(out, "metrics.json"), "w") as fh:
    json.dump({{"cv_accuracy": cv, "training_rows": len(window)}}, fh)
print(f"trained a logistic regression on {{len(window)}} labelled rows; 5-fold "
      f"cross-validated accuracy {{cv:.3f}}")
'''

#: the policy's canary plan shortened for the demo (as section 6 does): 50% then 100%, no
#: timed pauses; each step waits for the controller's analysis of live traffic and labels
#: (with section 6's p99 latency budget: the stable forest runs compiled to ONNX)
CANARY: dict[str, Any] = {
    "min_samples": 150, "accuracy_margin": 0.05, "require_labels": True,
    "latency_slack_ms": 25.0, "steps": [{"weight": 50, "pause": 0}, {"weight": 100}]}
#: the demo's monitoring settings (section 7): the evaluator runs every 2 s over 30 s
MONITOR_ENV = {"MLOPS_MONITOR_INTERVAL": "2", "MLOPS_MONITOR_WINDOW": "30"}


def write_training_script(folder: Path, model: str, features: Sequence[str]) -> Path:
    """``train.py`` in ``folder``: what the retraining job runs."""
    path = folder / "train.py"
    path.write_text(TRAIN_SCRIPT.format(model=model, features=list(features)))
    return path.resolve()


def retrain_config(script: Path, *, share: float = 0.3, data_window: str = "10s") -> str:
    """The model's retraining configuration (YAML): a drift trigger, auto-deploy, and the
    job trains on the labelled traffic of the last ``data_window`` (10 s: the demo's clock
    runs fast, its monitoring window is 30 s; older traffic predates the shift)."""
    command = json.dumps([sys.executable, str(script)])
    return (f"command: {command}\n"
            f"workdir: {json.dumps(str(script.parent))}\n"
            "timeout: 5m\n"
            f"data_window: {data_window}\n"
            "auto_deploy: true\n"
            "triggers:\n"
            f"  - {{name: drift, kind: drift, share: {share}, sustained: 1, priority: high, "
            "cooldown: 1h}\n")


def new_world(rows: int, features: Sequence[str], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Fresh rows of the world after the demo's shift (section 7): f0, f1 and f3 moved by
    1.5 sd and the label follows the new rule ``f2 - 1.2 f1 + noise > -1.8``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(features))), columns=list(features))
    for column in ("f0", "f1", "f3"):
        frame[column] += 1.5
    labels = (frame["f2"] - 1.2 * frame["f1"] + rng.normal(0, 0.5, rows) > -1.8)
    return frame, labels.astype(int).to_numpy()


def evaluated_after(registry: ModelRegistry, model: str, after: datetime, *,
                    at_least: float = 0.0, seconds: float = 30.0) -> Any:
    """The first ``drift_share`` snapshot of production whose window ends after ``after``
    (an evaluator's pass over that traffic) with a value of at least ``at_least``, or None
    after ``seconds``."""
    from mlops.monitoring.snapshots import snapshot_series

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        points = snapshot_series(registry, model, "drift_share", environment="production",
                                 since=after, limit=5)
        done = [p for p in points if p.window_end > after and p.value is not None
                and p.value >= at_least]
        if done:
            return done[0]
        time.sleep(0.25)
    return None


def drive(url: str, model: str, manager: Any, frame: pd.DataFrame, labels: np.ndarray,
          features: Sequence[str], *, seconds: float = 120.0, batch: int = 10,
          seed: int = 13) -> Any:
    """Send ``batch``-row requests (sticky by a random unit) and their labels until the
    production rollout leaves ``progressing``; returns the rollout."""
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        rows = rng.integers(0, len(frame), batch)
        part = frame.iloc[rows]
        status, headers, _ = post_json(
            f"{url}/v2/models/{model}/infer",
            {"inputs": [{"name": "x", "shape": [batch, len(features)], "datatype": "FP64",
                         "data": part[list(features)].to_numpy().ravel().tolist()}]},
            {"x-mlops-unit": f"user-{rng.integers(1_000_000)}"})
        if status == 200:
            post_json(f"{url}/v1/models/{model}/feedback",
                      [{"request_id": headers["x-request-id"], "row": i, "actual": int(y)}
                       for i, y in enumerate(labels[rows])])
        sent += 1
        if sent % 20 == 0:
            rollout = manager.status(model, "production")
            if rollout is not None and rollout.state != "progressing":
                return rollout
    return manager.status(model, "production")


@dataclass
class Chain:
    """What the audit log shows of one retrain, trigger to production (oldest first)."""

    job: Any
    events: list[AuditEvent] = field(default_factory=list)

    def first(self, action: str, subject_end: str = "", **payload: Any) -> AuditEvent | None:
        """The first event of ``action`` (on a subject ending so, with these payload
        values)."""
        return next(iter(self.all(action, subject_end, **payload)), None)

    def all(self, action: str, subject_end: str = "", **payload: Any) -> list[AuditEvent]:
        return [e for e in self.events if e.action == action
                and e.subject.endswith(subject_end)
                and all(e.payload.get(k) == v for k, v in payload.items())]


def read_chain(registry: ModelRegistry, model: str, job_id: int, after_seq: int) -> Chain:
    """The job and the audit events of ``model`` after event ``after_seq``."""
    from mlops.retraining.service import RetrainService

    job, _ = RetrainService(registry).job(job_id)
    events = [e for e in reversed(registry.audit_log(subject=f"model/{model}", limit=None))
              if e.seq > after_seq]
    return Chain(job, events)


def retrain_section(registry: ModelRegistry, approver: ModelRegistry, model: str,
                    features: list[str]) -> None:
    """Configure retraining of ``model``; production traffic of the shifted world arrives;
    a scheduler pass fires the drift trigger and runs the job; ``approver`` signs the new
    version off and a canary takes it to production. Prints the chain."""
    from mlops.ci.approvals import approve
    from mlops.ci.policy import configured_policy
    from mlops.cli.deploy import show_rollout
    from mlops.deployment.rollouts import RolloutManager
    from mlops.deployment.routes import RoutingService
    from mlops.retraining.service import RetrainService

    work = Path(registry.context.settings.home) / "demo"
    start_seq = registry.audit_log(limit=1)[0].seq
    before = RoutingService(registry).served(model, "production")
    previous = before.stable if before is not None else None
    script = write_training_script(work, model, features)
    config = retrain_config(script)
    (work / "retrain.yaml").write_text(config)
    # the demo runs the scheduler's pass itself (below): the server's scheduler, which
    # passes once at start-up and then every MLOPS_RETRAIN_INTERVAL, is kept out of it
    proc, url = start_gateway(registry, "--controller-interval", "0.5",
                              env_extra={**MONITOR_ENV, "MLOPS_RETRAIN_INTERVAL": "3600"})
    try:
        frame, labels = new_world(2400, features, seed=17)
        sent = send(url, model, frame, labels, features)
        done = datetime.now(UTC)
        console.print(f"{sent:,} more requests of the shifted world reach {model} {previous} "
                      "in production, with labels")
        snap = evaluated_after(registry, model, done, at_least=0.3)
        if snap is not None:
            console.print(f"the evaluator's pass over {snap.window_start:%H:%M:%S}-"
                          f"{snap.window_end:%H:%M:%S}: drift_share {snap.value:.3f} "
                          f"({snap.n:,} rows)")
        service = RetrainService(registry)
        service.set_config(model, config, source=str(work / "retrain.yaml"))
        console.print(f"mlops retrain triggers set {model} {work / 'retrain.yaml'}: trigger "
                      "drift (drift_share >= 0.3 in the newest evaluated window, sustained 1, "
                      f"cooldown 1h), auto_deploy; the job runs {script.name}: a logistic "
                      "regression on the labelled production traffic of the last 10 s (the demo's "
                      "clock runs fast), the newest 30% of it held out for the gates", soft_wrap=True)
        report = service.run_pass(wait=True)  # what the server's scheduler does every minute
        for decision in reversed(service.decisions(model, limit=5)):
            console.print(f"retraining pass: trigger {decision.trigger} {decision.decision}"
                          + (f" job {decision.job_id}" if decision.job_id else "")
                          + f": {decision.reason}", soft_wrap=True)
        if not report.started:
            console.print("[red]no retraining job started[/]: "
                          + "; ".join(report.skipped + report.errors), soft_wrap=True)
            raise typer.Exit(1)
        job, log = service.job(report.started[0])
        _show_job(job, log, previous)
        version = job.outcome.get("version")
        if job.state.value != "succeeded" or not version:
            raise typer.Exit(1)
        approvers = approve(approver, model, version, "demo: retrained on the drifted "
                            "window; gates and staging tests passed")
        policy = configured_policy(registry.settings.policy_file).for_model(model)
        console.print(f"{approver.actor} approves {model} {version} ({len(approvers)} of the "
                      f"{policy.approvals} approval(s) the {policy.tier}-risk policy asks for; "
                      "not the one who registered it)")
        strategy = str(policy.rollout.get("strategy", "canary"))
        manager = RolloutManager(approver)
        manager.deploy(model, version, "production", strategy=strategy, config=CANARY,
                       reason=f"retrain job {job.id}, approved by {approver.actor}")
        console.print(f"{strategy} of {version} (the policy's strategy; its 10/50/100% plan "
                      "with 5-minute pauses shortened to 50% then 100% for the demo): the "
                      "controller analyses live traffic of the shifted world and its labels")
        world, world_labels = new_world(3000, features, seed=23)
        rollout = drive(url, model, manager, world, world_labels, features)
        show_rollout(rollout, False)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    _print_chain(registry, model, read_chain(registry, model, job.id, start_seq), version,
                 previous)
    if rollout is None or rollout.state != "succeeded":
        raise typer.Exit(1)


def _show_job(job: Any, log: str, previous: str | None) -> None:
    out = job.outcome
    data = out.get("data") or {}
    window, holdout = data.get("window") or {}, data.get("holdout") or {}
    console.print(f"job {job.id} {job.state.value} in {job.wall_seconds or 0:.1f} s (peak "
                  f"{job.peak_rss_mb or 0:.0f} MB): trained on {window.get('rows', 0):,} "
                  f"labelled rows (sha256 {str(window.get('sha256', ''))[:12]}), "
                  f"{holdout.get('rows', 0):,} newer rows held out", soft_wrap=True)
    for line in log.strip().splitlines()[-1:]:
        console.print(f"  job log: {line}", soft_wrap=True)
    if job.state.value != "succeeded" or not out.get("version"):
        console.print(f"[red]the retrain did not pass[/]: {out.get('error', '-')}; production "
                      f"keeps {previous or '-'}", soft_wrap=True)
        return
    deploy = out.get("deploy") or {}
    console.print(f"the job's pipeline run {out.get('ci_run')}: {out.get('version')} "
                  f"{out.get('pipeline')}; deploy_production {deploy.get('status')}: "
                  f"{deploy.get('reason', '')}", soft_wrap=True)


def _seq(event: AuditEvent | None) -> str:
    return f"#{event.seq}" if event is not None else "#-"


def _print_chain(registry: ModelRegistry, model: str, chain: Chain, version: str,
                 previous: str | None) -> None:
    from mlops.deployment.routes import RoutingService

    job = chain.job
    reasons = "; ".join(f"{r.get('trigger')}: {r.get('reason')}" for r in job.reasons)
    run = job.outcome.get("ci_run")
    gates = [e for e in chain.all("ci.step", run=run)
             if str(e.payload.get("step", "")).startswith("gate:")]
    passed = [e for e in gates if e.payload.get("status") in ("passed", "cached")]
    staging = chain.first("ci.step", run=run, step="staging_tests")
    steps = [e for e in chain.all("route.set", "/env/production")
             if e.payload.get("rollout") is not None]
    rollout = chain.first("rollout.start", "/env/production")
    done = chain.first("rollout.succeed", "/env/production")
    served = RoutingService(registry).served(model, "production")
    now = served.stable if served is not None else "-"
    weights = ", ".join(f"{_weight(e, version)} {_seq(e)}" for e in steps
                        if _weight(e, version))
    console.print("the chain, from the audit log (event numbers):")
    rows = [
        ("trigger", f"{reasons} -> job {job.id} queued "
                    f"{_seq(chain.first('retrain.job.queue'))}"),
        ("job", f"job {job.id} started {_seq(chain.first('retrain.job.start'))}, trained in "
                f"{job.wall_seconds or 0:.1f} s, {job.state.value} "
                f"{_seq(chain.first('retrain.job.finish'))}"),
        ("version", f"{model} {version} registered "
                    f"{_seq(chain.first('version.register', f'/{version}'))} (parent "
                    f"{previous or '-'}, lineage: job {job.id} and its window)"),
        ("gates", f"pipeline run {run}: {len(passed)}/{len(gates)} gates passed "
                  f"{_seq(gates[0] if gates else None)}-{_seq(gates[-1] if gates else None)}, "
                  f"staging {_seq(chain.first('rollout.succeed', '/env/staging'))}, staging "
                  f"tests {_seq(staging)}, run finished "
                  f"{_seq(chain.first('ci.run.finish', run=run))}"),
        ("approval", f"{_approver(chain, version)} approved "
                     f"{_seq(chain.first('version.approve', f'/{version}'))}"),
        ("rollout", f"canary started {_seq(rollout)}: {weights or '-'}; "
                    + (f"succeeded {_seq(done)}" if done is not None else "did not succeed")),
        ("production", f"{model} {now} serves 100% of production (was {previous or '-'})"
                       if served is not None and not served.candidate and now == version
                       else f"production serves {now} (the retrain did not reach it)"),
    ]
    for name, text in rows:
        console.print(f"  {name:<11}{text}", soft_wrap=True)


def _weight(event: AuditEvent, version: str) -> str:
    """``50%`` when a route change sends that share to ``version``, "" otherwise."""
    after = event.payload.get("after") or {}
    if after.get("candidate") == version:
        return f"{float(after.get('weight') or 0):g}%"
    return "100%" if after.get("stable") == version else ""


def _approver(chain: Chain, version: str) -> str:
    event = chain.first("version.approve", f"/{version}")
    return event.actor if event is not None else "-"
