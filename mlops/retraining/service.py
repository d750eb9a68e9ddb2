"""Retraining as people and the scheduler use it: configurations, jobs, decisions, passes.

:class:`RetrainService` checks roles (configuring, which decides what the server executes,
takes an administrator; triggering and cancelling a developer; reading a viewer) and records every change in the audit chain (:mod:`mlops.store.retrain`).
:meth:`RetrainService.run_pass` is one pass of the scheduler that ``mlops serve`` runs on
its leader: interrupted jobs are marked (and queued again when the model's configuration
says so), each configured model's triggers are evaluated (:mod:`~mlops.retraining.triggers`),
signals become one job per model (coalesced, every reason kept), every decision not to
retrain is recorded with its reason, and queued jobs start while fewer than the limit run
and no rollout of their model is in progress.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.types import ACTIVE
from mlops.errors import ConfigError, MlopsError, RegistryError
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.retraining.config import RetrainConfig, parse_config
from mlops.retraining.loop import JobReport, execute_job
from mlops.retraining.triggers import Signal, TriggerHistory, evaluate_triggers
from mlops.store import retrain as rows
from mlops.store.egress import EgressPolicy
from mlops.store.retrain import (
    ConfigRecord,
    JobState,
    RetrainDecision,
    RetrainJob,
)

__all__ = ["HEARTBEAT_SECONDS", "PassReport", "RetrainService"]

log = logging.getLogger("mlops.retraining")

#: a running job's holder notes it is alive this often; three missed beats interrupt it
HEARTBEAT_SECONDS = 10.0


@dataclass
class PassReport:
    """What one scheduler pass did."""

    interrupted: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    shipped: list[int] = field(default_factory=list)  # approved versions now rolling out
    errors: list[str] = field(default_factory=list)


class RetrainService:
    """Retraining of the registry's models (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, *, holder: str | None = None,
                 concurrency: int = 1) -> None:
        self.registry = registry
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self._threads: dict[int, threading.Thread] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._stopping = False

    @property
    def store(self) -> Any:
        return self.registry.store

    # ------------------------------------------------------------------ configuration
    def set_config(self, model: str, text: str, source: str = "retrain.yaml"
                   ) -> ConfigRecord:
        """Validate and store ``model``'s configuration (YAML text)."""
        # the configuration names what the server executes: an administrator's decision
        self.registry.require(Role.ADMIN, f"configure retraining of {model} (its command "
                                          "runs on the server)")
        config = parse_config(text, source=source)
        if config.webhook is not None:  # refused now, as alert channels are, not at the call
            EgressPolicy.from_settings(self.registry.settings).check_url(
                config.webhook.url, key="webhook.url", error=ConfigError)
        with self.store.write() as s:
            return rows.put_config(s, model, config.to_dict(), text,
                                   actor=self.registry.actor)

    def config(self, model: str) -> RetrainConfig | None:
        with self.store.read() as s:
            record = rows.get_config(s, model)
        return None if record is None else RetrainConfig.from_dict(record.spec, source=
            f"the stored configuration of {model}")

    def config_record(self, model: str) -> ConfigRecord | None:
        with self.store.read() as s:
            return rows.get_config(s, model)

    def delete_config(self, model: str) -> bool:
        self.registry.require(Role.ADMIN, f"configure retraining of {model}")
        with self.store.write() as s:
            return rows.delete_config(s, model, actor=self.registry.actor)

    # ------------------------------------------------------------------ jobs
    def run(self, model: str, reason: str = "", priority: str = "high") -> RetrainJob:
        """Queue a job by hand (joins a queued one); needs a configuration."""
        self.registry.require(Role.DEVELOPER, f"retrain {model}")
        if self.config(model) is None:
            raise ConfigError(f"{model} has no retraining configuration.",
                              fix=f"Set one first: mlops retrain triggers set {model} FILE.")
        why = reason.strip() or "asked for by hand"
        item = {"trigger": "manual", "kind": "manual", "reason": why,
                "by": self.registry.actor, "at": datetime.now(UTC).isoformat()}
        with self.store.write() as s:
            job, joined = rows.queue_job(s, model, [item], priority=priority,
                                         actor=self.registry.actor)
            rows.record_decision(s, model, "manual", "joined" if joined else "queued", why,
                                 job.id)
        return job

    def jobs(self, model: str | None = None, *, limit: int = 50) -> list[RetrainJob]:
        with self.store.read() as s:
            return rows.list_jobs(s, model, limit=limit)

    def job(self, job_id: int) -> tuple[RetrainJob, str]:
        with self.store.read() as s:
            return rows.get_job(s, job_id)

    def cancel(self, job_id: int) -> RetrainJob:
        with self.store.read() as s:
            job, _ = rows.get_job(s, job_id)
        self.registry.require(Role.DEVELOPER, f"cancel retraining of {job.model}")
        with self.store.write() as s:
            return rows.request_cancel(s, None, job_id, actor=self.registry.actor)

    def job_token_hash(self, job_id: int) -> str | None:
        """The SHA-256 of a running webhook job's callback token (None otherwise)."""
        with self.store.read() as s:
            return rows.job_token_hash(s, job_id)

    def complete(self, job_id: int, payload: dict[str, Any]) -> None:
        """Keep a webhook job's reported outcome (the caller checked the job's token)."""
        with self.store.write() as s:
            if not rows.record_callback(s, job_id, payload):
                raise RegistryError(f"Job {job_id} is not waiting for a report (it ended, or "
                                    "reported already).",
                                    fix="Report once, while the job runs.")

    def decisions(self, model: str, *, limit: int = 50) -> list[RetrainDecision]:
        with self.store.read() as s:
            return rows.list_decisions(s, model, limit=limit)

    # ------------------------------------------------------------------ the scheduler
    def history(self, model: str, now: datetime) -> TriggerHistory:
        from mlops.deployment.routes import RoutingService

        with self.store.read() as s:
            h = rows.trigger_history(s, model, now)
            record = rows.get_config(s, model)
        spec = RoutingService(self.registry).served(model, "production")
        return TriggerHistory(last_fired=h.last_fired, fired_today=h.fired_today,
                              model_runs_today=h.model_runs_today,
                              last_training=h.last_training,
                              production_version=spec.stable if spec else None,
                              configured_at=record.updated_at if record else None)

    def run_pass(self, now: datetime | None = None, *, wait: bool = False) -> PassReport:
        """One pass (see the module docstring); ``wait`` runs started jobs to their end
        before returning (tests, ``mlops retrain run --wait``)."""
        now = now or datetime.now(UTC)
        report = PassReport()
        with self.store.read() as s:
            models = rows.configured_models(s)
        configs = {m: c for m in models if (c := self._config_or_none(m, report)) is not None}
        stale = now - timedelta(seconds=3 * HEARTBEAT_SECONDS)
        with self.store.write() as s:
            running_here = set(self._threads)
            gone = rows.interrupt_stale(s, older_than=stale, requeue=[
                m for m, c in configs.items() if c.requeue_interrupted])
        report.interrupted = [j.id for j in gone if j.id not in running_here]
        for model, config in configs.items():
            try:
                self._evaluate(model, config, now, report)
            except MlopsError as exc:
                report.errors.append(f"{model}: {exc.message}")
        self._start_jobs(configs, report, wait=wait)
        self._ship_approved(configs, report)
        return report

    def _ship_approved(self, configs: dict[str, RetrainConfig], report: PassReport) -> None:
        """Start the rollout of a retrained version that waited for its approvals
        (``auto_deploy``) once people have given them: the loop goes on by itself."""
        from mlops.ci.approvals import approvals, required_approvals
        from mlops.ci.pipeline import ModelPipeline
        from mlops.ci.policy import configured_policy

        with self.store.read() as s:
            done = rows.list_jobs(s, states=[JobState.SUCCEEDED.value], limit=200)
        for job in done:
            config = configs.get(job.model)
            version = job.outcome.get("version")
            if config is None or not config.auto_deploy or not version \
                    or (job.outcome.get("deploy") or {}).get("status") != "pending":
                continue
            try:
                if len(approvals(self.registry, job.model, version)) < \
                        required_approvals(self.registry, job.model, version):
                    continue
                pipeline = ModelPipeline(self.registry, policy=configured_policy(
                    self.registry.settings.policy_file))
                rollout = pipeline.promote(job.model, version)
            except MlopsError as exc:
                with self.store.write() as s:
                    rows.record_decision(s, job.model, "deploy", "skipped",
                                         f"{version} approved but not shipped: {exc.message}")
                continue
            deploy = {"status": "passed", "reason": f"approved: {rollout.strategy} rollout "
                      f"of {version} started ({rollout.state})", "rollout": rollout.id,
                      "strategy": rollout.strategy}
            with self.store.write() as s:
                rows.record_deploy(s, job.id, deploy, actor="system:retrain")
            report.shipped.append(job.id)

    def _config_or_none(self, model: str, report: PassReport) -> RetrainConfig | None:
        try:
            return self.config(model)
        except (MlopsError, ValueError) as exc:
            report.errors.append(f"{model}: its stored configuration no longer validates "
                                 f"({exc})")
            return None

    def _evaluate(self, model: str, config: RetrainConfig, now: datetime,
                  report: PassReport) -> None:
        signals, skips = evaluate_triggers(self.registry, model, config,
                                           self.history(model, now), now)
        with self.store.write() as s:
            for skip in skips:
                rows.record_decision(s, model, skip.trigger, "skipped", skip.reason)
                report.skipped.append(f"{model}/{skip.trigger}: {skip.reason}")
            if not signals:
                return
            priority = min((sig.priority for sig in signals), key=_rank)
            job, joined = rows.queue_job(s, model, [_reason(sig) for sig in signals],
                                         priority=str(priority), actor="system:retrain")
            for sig in signals:
                rows.record_decision(s, model, sig.trigger, "joined" if joined else "queued",
                                     sig.reason, job.id)
        if not joined:
            report.queued.append(job.id)

    def _start_jobs(self, configs: dict[str, RetrainConfig], report: PassReport, *,
                    wait: bool) -> None:
        rolling = [m for m in configs if self._rollout_in_progress(m)]
        with self.store.read() as s:
            queued = {j.model for j in rows.list_jobs(s, states=[JobState.QUEUED.value],
                                                      limit=1000)}
        if rolling:
            with self.store.write() as s:
                for model in sorted(set(rolling) & queued):
                    rows.record_decision(s, model, "queue", "skipped",
                                         "a rollout of this model is in progress; the job "
                                         "waits for it to end")
        while True:
            with self.store.write() as s:
                job = rows.claim_next(s, self.holder, limit=self.concurrency,
                                      exclude_models=[*rolling, *(
                                          m for m in queued if m not in configs)])
            if job is None:
                break
            report.started.append(job.id)
            thread = threading.Thread(target=self._run_job, args=(job, configs[job.model]),
                                      name=f"retrain-job-{job.id}", daemon=True)
            self._threads[job.id] = thread
            thread.start()
            if wait:
                thread.join()
        if wait:
            for thread in list(self._threads.values()):
                thread.join()

    def _rollout_in_progress(self, model: str) -> bool:
        for env in self.registry.settings.environments:
            with contextlib.suppress(RegistryError):
                status = RolloutManager(self.registry).status(model, env)
                if status is not None and status.state in ACTIVE:
                    return True
        return False

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the jobs this process runs (their process groups are killed); they end
        ``interrupted`` and are queued again when their configuration says so."""
        self._stopping = True
        for event in list(self._cancels.values()):
            event.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def _run_job(self, job: RetrainJob, config: RetrainConfig) -> None:
        cancel = threading.Event()
        self._cancels[job.id] = cancel
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS / 2):
                with contextlib.suppress(Exception), self.store.write() as s:
                    if not rows.heartbeat(s, job.id, self.holder):
                        cancel.set()

        def started(pid: int | None, token_hash: str | None = None) -> None:
            with contextlib.suppress(Exception), self.store.write() as s:
                rows.set_pid(s, job.id, self.holder, pid, token_hash)

        beating = threading.Thread(target=beat, name=f"retrain-beat-{job.id}", daemon=True)
        beating.start()
        try:
            result = self._execute(job, config, cancel, started)
        except Exception as exc:  # a bug must not leave the job running forever
            log.exception("retraining job %s failed", job.id)
            result = JobReport(JobState.FAILED, {"error": f"internal error: {exc}"})
        finally:
            stop.set()
        run = result.run
        interrupted = self._stopping and result.state is JobState.CANCELLED
        if interrupted:
            result.state = JobState.INTERRUPTED
            result.outcome["interrupted"] = "the server stopped while the job ran"
        with self.store.write() as s:
            rows.finish_job(s, job.id, self.holder, result.state, outcome=result.outcome,
                            log=run.log if run else "",
                            wall_seconds=run.wall_seconds if run else None,
                            peak_rss_mb=run.peak_rss_mb if run else None)
            if interrupted and config.requeue_interrupted:
                rows.queue_job(s, job.model, [*job.reasons, {
                    "trigger": "requeue", "reason": f"job {job.id} was interrupted by a "
                                                    "server stop"}],
                               priority=job.priority, actor="system:retrain")
        if result.state not in (JobState.SUCCEEDED, JobState.CANCELLED, JobState.INTERRUPTED):
            self._alert(job, result)
        self._threads.pop(job.id, None)
        self._cancels.pop(job.id, None)

    def _execute(self, job: RetrainJob, config: RetrainConfig, cancel: threading.Event,
                 started: Callable[..., None]) -> JobReport:
        return execute_job(self.registry, job, config, cancel=cancel, on_start=started)

    def _alert(self, job: RetrainJob, result: JobReport) -> None:
        """Fire the model's ``retrain-failed`` alert (production keeps its version)."""
        from mlops.monitoring.alerts import AlertManager, Observation
        from mlops.monitoring.rules import AlertRule

        alerts = AlertManager(self.registry)
        try:
            if not any(r.name == RETRAIN_RULE for r in alerts.rules(job.model)):
                alerts.put_rule(AlertRule(
                    name=RETRAIN_RULE, metric="custom:retrain_failed", comparator=">=",
                    threshold=1, cooldown=0,
                    min_samples=1, model=job.model, severity="high",
                    description="a retraining job failed or its version was rejected; "
                                "production keeps its version"))
            version = str(result.outcome.get("version") or "")
            alerts.evaluate(job.model, version, "production",
                            lambda rule: Observation(1.0, 1) if rule.name == RETRAIN_RULE
                            else None)
            alerts.flush()
        except MlopsError as exc:
            log.warning("could not raise the retrain-failed alert of job %s: %s", job.id, exc)


#: the alert rule a failed retrain fires
RETRAIN_RULE = "retrain-failed"
__all__ += ["RETRAIN_RULE"]


def _rank(priority: Any) -> int:
    return rows.PRIORITIES.index(str(priority))


def _reason(sig: Signal) -> dict[str, Any]:
    return {"trigger": sig.trigger, "kind": str(sig.kind), "reason": sig.reason,
            "priority": str(sig.priority), "expected_gain": sig.expected_gain,
            "at": sig.at.isoformat(), "detail": sig.detail}
