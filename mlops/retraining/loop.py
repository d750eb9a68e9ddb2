"""One retraining job, start to end: data out, training, and the loop back through the gates.

:func:`execute_job` runs a job this process holds (:func:`~mlops.store.retrain.claim_next`):

1. **Data.** The recent labelled window (:func:`~mlops.retraining.exports.export_labelled_window`)
   is split by time (:func:`~mlops.retraining.exports.split_window`): its older rows and
   the production version's training data are written as Parquet into the job's folder;
   its newest rows are held out where the job is not pointed to, to judge the result.
2. **Training.** The configured command runs in its own process group with a timeout
   (:mod:`~mlops.retraining.runner`); its environment names the model, the job, the reasons,
   the production version, the exports and ``MLOPS_RETRAIN_OUTPUT``, the folder where it
   writes one model file (and, optionally, ``metrics.json``). Variables starting with
   ``MLOPS_`` (the server's settings and credentials) are not passed on.
3. **The loop.** The model file goes through the CI pipeline with the model's policy,
   judged on the held-out rows, each distinct row once (the champion gate compares it with
   production on those rows, which neither was fitted to; data quality checks the inputs
   against those production sent in the whole window); it is registered with its lineage: the training part of the
   window as training data (with its SHA-256), the job and its reasons as parameters,
   production as parent. With
   ``auto_deploy`` the pipeline goes on to staging and production (the policy's rollout
   strategy, under the promotion rule: approvals still apply); without it, the version
   waits in the registry for people.
4. **The outcome** is recorded on the job (``retrain.job.finish``): the version, the
   pipeline run, the rollout, or why nothing shipped. A failed retrain fires the model's
   ``retrain-failed`` alert; production keeps its version.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.errors import MlopsError
from mlops.registry.service import ModelRegistry
from mlops.retraining.config import RetrainConfig
from mlops.retraining.exports import (
    LABEL,
    RESERVED,
    Export,
    export_labelled_window,
    export_reference,
    judging_set,
    split_window,
)
from mlops.retraining.runner import RunOutcome, RunResult, run_command
from mlops.store.retrain import JobState, RetrainJob

__all__ = ["MIN_WINDOW_ROWS", "JobReport", "execute_job", "job_environment", "model_file_in"]

log = logging.getLogger("mlops.retraining")

#: fewer labelled rows than this cannot judge a retrained version
MIN_WINDOW_ROWS = 50
#: the model files a training command may write
_MODEL_SUFFIXES = (".skops", ".onnx", ".joblib", ".pkl", ".pickle", ".ubj", ".json", ".txt")


@dataclass
class JobReport:
    """How a job ended: its final state and outcome, and what the command did."""

    state: JobState
    outcome: dict[str, Any] = field(default_factory=dict)
    run: RunResult | None = None


def job_environment(base: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: ``base`` without the server's ``MLOPS_*`` settings and
    credentials, plus the job's ``MLOPS_RETRAIN_*`` values."""
    env = {k: v for k, v in base.items() if not k.startswith("MLOPS_")
           and k not in ("MODEL_REGISTRY_PATH",)}
    env.update(values)
    return env


def model_file_in(folder: Path) -> Path | None:
    """The one model file a command wrote (``metrics.json`` aside), or None."""
    found = [p for p in sorted(folder.iterdir()) if p.is_file()
             and p.suffix.lower() in _MODEL_SUFFIXES and p.name != "metrics.json"]
    mlmodel = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / "MLmodel").is_file()]
    candidates = found + mlmodel
    return candidates[0] if len(candidates) == 1 else None


def _metrics(folder: Path) -> dict[str, float]:
    path = folder / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def execute_job(registry: ModelRegistry, job: RetrainJob, config: RetrainConfig, *,
                cancel: threading.Event | None = None,
                on_start: Callable[[int], None] | None = None,
                now: datetime | None = None) -> JobReport:
    """Run ``job`` of a model with retraining ``config`` (see the module docstring).
    Never raises for what the job did: every failure is a :class:`JobReport`."""
    settings = registry.settings
    name = job.model
    folder = settings.home / "retrain" / f"job-{job.id}"
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)  # a requeued attempt starts clean
    output = folder / "output"
    output.mkdir(parents=True)
    end = now or datetime.now(UTC)
    start = end - timedelta(seconds=float(config.data_window))
    production = _production(registry, name)
    held = settings.home / "retrain" / "holdout"  # outside the job's folder: never its input
    held.mkdir(parents=True, exist_ok=True)
    try:
        labelled = export_labelled_window(settings.artifacts_uri, name, start, end,
                                          folder / "labelled.parquet")
        window, holdout = split_window(labelled, folder / "window.parquet",
                                       held / f"job-{job.id}.parquet")
        labelled.path.unlink()
        reference = export_reference(production.get("training_data"),
                                     folder / "reference.parquet")
    except (MlopsError, OSError, ValueError) as exc:
        return JobReport(JobState.FAILED, {"error": f"exporting the data failed: {exc}"})
    data = {"window": window.to_dict(), "holdout": holdout.to_dict(),
            "reference": reference.to_dict() if reference is not None else None,
            "production_version": production.get("version")}
    env = job_environment(os.environ, {
        "MLOPS_RETRAIN_MODEL": name, "MLOPS_RETRAIN_JOB": str(job.id),
        "MLOPS_RETRAIN_REASONS": json.dumps(job.reasons, default=str),
        "MLOPS_RETRAIN_PRODUCTION_VERSION": production.get("version") or "",
        "MLOPS_RETRAIN_WINDOW": str(window.path),
        "MLOPS_RETRAIN_REFERENCE": str(reference.path) if reference is not None else "",
        "MLOPS_RETRAIN_LABEL": LABEL, "MLOPS_RETRAIN_OUTPUT": str(output)})
    if config.webhook is not None:
        return _webhook(registry, job, config, data, production, output, window, holdout,
                        cancel=cancel, on_start=on_start)
    command = list(config.command or [])
    workdir = Path(config.workdir) if config.workdir else Path.cwd()
    result = run_command(command, env=env, cwd=workdir, timeout=float(config.timeout),
                         cancel=cancel, on_start=on_start)
    outcome: dict[str, Any] = {"data": data, "command": command,
                               "exit_code": result.exit_code}
    if result.outcome is not RunOutcome.SUCCEEDED:
        state = {RunOutcome.TIMED_OUT: JobState.TIMED_OUT,
                 RunOutcome.CANCELLED: JobState.CANCELLED}.get(result.outcome, JobState.FAILED)
        outcome["error"] = result.error or f"the command ended {result.outcome.value}"
        return JobReport(state, outcome, result)
    report = close_loop(registry, job, config, output, window, holdout, production)
    report.outcome = {**outcome, **report.outcome}
    report.run = result
    return report


def _scrubbed(message: str, hook: Any) -> str:
    """``message`` without the webhook's URL, header values or body values (an HTTP
    library's error may quote them; viewers read job outcomes)."""
    from mlops.store.egress import redact_url

    values = [str(v) for v in (hook.headers or {}).values()]
    values += [str(v) for v in (hook.body or {}).values() if isinstance(v, str | int | float)]
    secrets = [(str(hook.url), redact_url(hook.url))]
    for v in values:  # as given, and as quoted in a str or bytes repr (h11's errors)
        secrets += [(v, "***"), (repr(v)[1:-1], "***"),
                    (repr(v.encode("utf-8", "replace"))[2:-1], "***")]
    for value, shown in sorted(secrets, key=lambda p: -len(p[0])):
        if len(value) >= 4:
            message = message.replace(value, shown)
    return message


def _webhook(registry: ModelRegistry, job: RetrainJob, config: RetrainConfig,
             data: dict[str, Any], production: Mapping[str, Any], output: Path,
             window: Export, holdout: Export, *, cancel: threading.Event | None,
             on_start: Callable[..., None] | None) -> JobReport:
    """Call the orchestrator with a job-scoped token, then wait (up to the timeout) for
    its report on ``/api/v1/retrain/jobs/ID/complete``."""
    import hashlib
    import secrets
    import time

    import httpx

    from mlops.store.egress import EgressPolicy, redact_url
    from mlops.store.retrain import callback_of

    assert config.webhook is not None
    hook = config.webhook
    token = secrets.token_urlsafe(32)
    if on_start is not None:
        on_start(None, hashlib.sha256(token.encode()).hexdigest())
    base = registry.settings.public_url.rstrip("/")
    body = {**(hook.body or {}), "job": job.id, "model": job.model, "reasons": job.reasons,
            "production_version": production.get("version"), "data": data,
            "callback": {"url": f"{base}/api/v1/retrain/jobs/{job.id}/complete",
                         "authorization": f"Bearer {token}"}}
    outcome: dict[str, Any] = {"data": data, "webhook": redact_url(hook.url)}  # viewers read it
    started = time.monotonic()
    try:
        target = EgressPolicy.from_settings(registry.settings).resolve_url(
            hook.url, key="webhook.url")
        pinned = target.pinned(target.addresses[0])
        with httpx.Client(timeout=30.0, follow_redirects=False) as client:
            answer = client.request(hook.method, pinned.url, json=body,
                                    headers={**hook.headers, **pinned.headers},
                                    extensions=pinned.extensions)
        if answer.status_code >= 300:
            outcome["error"] = f"the webhook answered {answer.status_code}"
            return JobReport(JobState.FAILED, outcome)
    except (MlopsError, OSError, httpx.HTTPError) as exc:
        outcome["error"] = _scrubbed(f"the webhook could not be called: {exc}", hook)
        return JobReport(JobState.FAILED, outcome)
    while True:  # the runner's heartbeat thread sets cancel when a cancel is asked for
        with registry.store.read() as s:
            report = callback_of(s, job.id)
        if report is not None:
            break
        if cancel is not None and cancel.is_set():
            outcome["error"] = "cancelled while waiting for the orchestrator"
            return JobReport(JobState.CANCELLED, outcome)
        if time.monotonic() - started > float(config.timeout):
            outcome["error"] = (f"the orchestrator did not report within "
                                f"{float(config.timeout):.0f} s")
            return JobReport(JobState.TIMED_OUT, outcome)
        time.sleep(1.0)
    outcome["callback"] = {k: v for k, v in report.items() if k != "log"}
    if report.get("status") != "succeeded":
        outcome["error"] = f"the orchestrator reported failure: {report.get('error') or '-'}"
        return JobReport(JobState.FAILED, outcome)
    source = str(report.get("model_path") or "")
    if not source:
        outcome["error"] = "the orchestrator reported success without a model_path"
        return JobReport(JobState.FAILED, outcome)
    if not source.startswith("models:/"):
        path = Path(source)
        if not path.exists():
            outcome["error"] = f"the reported model_path {source} is not readable here"
            return JobReport(JobState.FAILED, outcome)
        target_path = output / path.name
        if path.is_dir():
            shutil.copytree(path, target_path)
        else:
            shutil.copyfile(path, target_path)
    metrics = report.get("metrics") or {}
    if metrics:
        (output / "metrics.json").write_text(json.dumps(metrics))
    result = close_loop(registry, job, config, output, window, holdout, production,
                        model_uri=source if source.startswith("models:/") else None)
    result.outcome = {**outcome, **result.outcome}
    return result


def _production(registry: ModelRegistry, name: str) -> dict[str, Any]:
    """The version production serves now (None when none) and its training data."""
    from mlops.deployment.routes import RoutingService

    spec = RoutingService(registry).served(name, "production")
    if spec is None or spec.stable is None:
        return {"version": None, "training_data": None}
    mv = registry.get_version(name, spec.stable)
    return {"version": mv.version, "training_data": mv.lineage.training_data
            if mv.lineage else None}


def close_loop(registry: ModelRegistry, job: RetrainJob, config: RetrainConfig, output: Path,
               window: Export, holdout: Export, production: Mapping[str, Any], *,
               model_uri: str | None = None) -> JobReport:
    """Register the command's model (or ``model_uri``) through the pipeline, judged on the
    held-out rows (data quality against the rows it trained on), and ship it when the
    policy lets it (``config.auto_deploy``)."""
    from mlops.ci.pipeline import ModelPipeline
    from mlops.ci.policy import configured_policy

    model_file: Path | None = Path(model_uri) if model_uri else model_file_in(output)
    if model_file is None:
        return JobReport(JobState.FAILED, {"error": "the command wrote no single model file "
                                           f"into MLOPS_RETRAIN_OUTPUT ({output})"})
    judged = judging_set(holdout, holdout.path.with_name(f"job-{job.id}-judged.parquet"))
    if judged.rows < MIN_WINDOW_ROWS:
        return JobReport(JobState.FAILED, {
            "error": f"the held-out part of the labelled window has {judged.rows} distinct "
                     f"rows; at least {MIN_WINDOW_ROWS} are needed to judge a retrained "
                     "version",
            "fix": "send labels (POST /v1/models/NAME/feedback) or widen the window"})
    stage = "production" if config.auto_deploy else "register"
    metadata: dict[str, Any] = {
        "training_data": str(window.path), "parent_version": production.get("version"),
        "params": {"retrain_job": job.id, "reasons": job.reasons,
                   "window_sha256": window.sha256, "window_rows": window.rows},
        "tags": {"retrain.job": str(job.id)}, "metrics": _metrics(output),
        "description": f"retrained by job {job.id}: "
                       + "; ".join(str(r.get("reason", "")) for r in job.reasons)[:500]}
    try:
        pipeline = ModelPipeline(registry, policy=configured_policy(
            registry.settings.policy_file))  # the store's policy, never a laxer one
        # the inputs production saw in the window (both parts: input validity, no labels)
        reference = pd.concat([pd.read_parquet(window.path), pd.read_parquet(holdout.path)],
                              ignore_index=True)
        reference = reference.drop(columns=[c for c in (LABEL, *RESERVED) if c in reference])
        result = pipeline.run(model_file, job.model, judged.path, label=LABEL, stage=stage,
                              metadata=metadata, reference=reference)
    except MlopsError as exc:
        return JobReport(JobState.FAILED, {"error": f"the pipeline could not run: {exc}"})
    outcome: dict[str, Any] = {"version": result.version, "ci_run": result.run_id,
                               "pipeline": result.status}
    failed = result.failed_step
    if failed is not None and not failed.ok and failed.status != "pending":
        outcome["error"] = f"{failed.name}: {failed.reason}"
        return JobReport(JobState.FAILED, outcome)
    if config.auto_deploy:
        deploy = next((s for s in result.steps if s.name == "deploy_production"), None)
        if deploy is not None:
            outcome["deploy"] = {"status": deploy.status, "reason": deploy.reason,
                                 **{k: v for k, v in deploy.data.items() if k in (
                                     "rollout", "strategy", "state")}}
    else:
        outcome["deploy"] = {"status": "waiting", "reason": "auto_deploy is off: the version "
                             "waits for people (mlops ci promote)"}
    return JobReport(JobState.SUCCEEDED, outcome)
