"""The model pipeline: validate data -> gates -> register -> staging -> production.

Steps form a DAG (``graphlib``) and run in its order; every step has a timeout, the steps
that talk to services (MLflow, deployments, the staging gateway) are retried with
exponential back-off (``tenacity``), and the first failed step stops everything after it
(later steps are recorded as ``skipped`` with the reason). Each step's result is written
to the store as it finishes (an audit event each), the whole report at the end, on the
registered version. Gate results are reused by a re-run with the same model bytes, test
data and gate settings unless ``force=True``.

>>> result = ModelPipeline(registry).run("model.skops", "churn", "test.csv")  # doctest: +SKIP
>>> result.passed, [s.name for s in result.steps if s.status == "failed"]     # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from mlops.ci.approvals import approvals
from mlops.ci.data import TestData, file_digest, infer_task, load_test_data
from mlops.ci.gates.base import GateContext, GateResult
from mlops.ci.policy import ModelPolicy, Policy, configured_policy, gate_module
from mlops.ci.runs import RunStore, cache_key
from mlops.ci.staging import run_staging_checks, staging_gateway
from mlops.errors import (
    CIError,
    MlopsError,
    ModelNotFound,
    MonitoringError,
    StoreError,
    VersionNotFound,
)
from mlops.flavors.base import LoadedModel
from mlops.flavors.files import detect_format, load_bytes
from mlops.registry.reference import compute_profiles
from mlops.registry.service import ModelRegistry

__all__ = ["STAGES", "ModelPipeline", "PipelineResult", "StepResult"]

#: How far a run goes: ``gates`` (no side effects), ``register``, ``staging``, ``production``.
STAGES = ("gates", "register", "staging", "production")
_RETRYABLE = (httpx.HTTPError, OSError, StoreError)
_SIDE_EFFECTS = ("register", "register_mlflow", "deploy_staging", "deploy_production")


@dataclass(frozen=True)
class StepResult:
    """One step: ``passed``, ``failed``, ``skipped``, ``cached`` (a reused pass), ``timeout``,
    ``error`` (the step could not run) or ``pending`` (waiting for people: approvals)."""

    name: str
    status: str
    reason: str
    duration_s: float = 0.0
    attempts: int = 1
    gate: GateResult | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "cached")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason,
                "duration_s": round(self.duration_s, 4), "attempts": self.attempts,
                "gate": self.gate.to_dict() if self.gate else None, "data": self.data}


@dataclass(frozen=True)
class PipelineResult:
    """The outcome of a run; ``passed`` when every step that ran is ok and none failed."""

    run_id: int
    model: str
    version: str | None
    passed: bool
    status: str                   # passed | failed | awaiting_approval
    steps: list[StepResult]
    policy: dict[str, Any]
    started_at: datetime
    duration_s: float

    @property
    def gates_passed(self) -> bool:
        gates = [s for s in self.steps if s.name.startswith("gate:")]
        return bool(gates) and all(s.ok for s in gates)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status in ("failed", "error", "timeout")), None)

    def step(self, name: str) -> StepResult:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def __getitem__(self, key: str) -> Any:
        """Seed-style access: ``result["passed"]``, ``result["steps"]["gate:metrics"]``."""
        if key == "steps":
            return {s.name: s.to_dict() for s in self.steps}
        return self.to_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "model": self.model, "version": self.version,
                "passed": self.passed, "status": self.status,
                "gates_passed": self.gates_passed,
                "started_at": self.started_at.isoformat(),
                "duration_s": round(self.duration_s, 3), "policy": self.policy,
                "steps": [s.to_dict() for s in self.steps]}


class _Unloaded:
    """Stands in for the model until the security gate has passed: any use is an error, so
    no gate can run the file's code before it was scanned."""

    def __getattr__(self, name: str) -> Any:
        raise CIError("The model was used before the security gate passed.",
                      fix="Run the security gate first (this is a bug in the pipeline).")


@dataclass
class _Run:
    """Mutable state shared by the steps of one run."""

    model_name: str
    artifact: Path
    artifact_digest: str
    policy: ModelPolicy
    stage: str
    test_source: Any
    label: str | None
    sensitive: list[str]
    trust: bool
    force: bool
    gateway_url: str | None
    metadata: dict[str, Any]
    fail_fast: bool = True
    official: bool = False       # the run used the store's configured policy for this model
    #: what the gated promotion rule reads from an official run: the policy's digest and
    #: the approvals it requires (the rule never parses the policy itself)
    policy_record: dict[str, Any] = field(default_factory=dict)
    run_id: int = 0
    data: TestData | None = None
    ctx: GateContext | None = None
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    #: the candidate's own training data (a retrained version): the data-quality gate
    #: checks the test data against it, and it becomes the version's reference profile
    reference: pd.DataFrame | None = None


class ModelPipeline:
    """Run the pipeline for model files against test data under a policy."""

    def __init__(self, registry: ModelRegistry | None = None, *, policy: Policy | None = None,
                 timeouts: Mapping[str, float] | None = None, retries: int = 3,
                 output_dir: str | Path | None = None) -> None:
        self.registry = registry or ModelRegistry()
        self.policy = policy or Policy()
        self.runs = RunStore(self.registry)
        self.timeouts = {"default": 600.0, **dict(timeouts or {})}
        self.retries = retries
        self.output_dir = Path(output_dir) if output_dir is not None else \
            Path(self.registry.context.settings.home) / "ci"
        self.progress: Callable[[str, str], None] | None = None

    # ------------------------------------------------------------------ DAG
    def _graph(self, run: _Run) -> dict[str, list[str]]:
        gates = list(run.policy.gates)
        graph: dict[str, list[str]] = {"validate_data": []}
        previous = "validate_data"
        if "security" in gates:
            graph["gate:security"] = ["validate_data"]
            previous = "gate:security"
        # without fail_fast every gate runs: the model loads (through the restricted loader,
        # which refuses an unsafe file by itself) even when the security gate failed on its
        # score, so a low-scoring but loadable pickle still gets the other gates' verdicts
        graph["load_model"] = [previous] if run.fail_fast else ["validate_data"]
        previous = "load_model"
        for name in gates:
            if name == "security":
                continue
            # a chain stops at the first failed gate; without fail_fast every gate runs
            graph[f"gate:{name}"] = [previous if run.fail_fast else "load_model"]
            previous = f"gate:{name}"
        if not run.fail_fast and previous != "load_model":
            gate_steps = [f"gate:{n}" for n in gates]
            previous = gate_steps[-1]
            if STAGES.index(run.stage) >= STAGES.index("register"):
                graph["register"] = gate_steps
                previous = "register"
        if STAGES.index(run.stage) >= STAGES.index("register"):
            graph.setdefault("register", [previous])
            previous = "register"
            if os.environ.get("MLFLOW_TRACKING_URI"):
                graph["register_mlflow"] = ["register"]
                previous = "register_mlflow"
        if STAGES.index(run.stage) >= STAGES.index("staging"):
            graph["deploy_staging"] = [previous]
            graph["staging_tests"] = ["deploy_staging"]
            previous = "staging_tests"
        if run.stage == "production":
            graph["deploy_production"] = [previous]
        return graph

    def run(self, model_path: str | Path, model_name: str, test_data: str | Path | pd.DataFrame,
            *, label: str | None = None, sensitive: list[str] | None = None,
            thresholds: Mapping[str, float] | None = None, stage: str = "production",
            trust: bool = False, force: bool = False, gateway_url: str | None = None,
            metadata: Mapping[str, Any] | None = None, fail_fast: bool = True,
            reference: pd.DataFrame | None = None) -> PipelineResult:
        """Run the pipeline up to ``stage`` (see :data:`STAGES`); ``fail_fast=False`` runs
        every gate even after one failed (nothing after the gates runs then). ``reference``
        is the candidate's training data when it is not production's (a retrained
        version): data quality is then judged against it, not the champion's profile."""
        if stage not in STAGES:
            raise CIError(f"Unknown stage {stage!r}.", fix=f"Use one of {', '.join(STAGES)}.")
        artifact = Path(model_path)
        if not artifact.is_file():
            raise CIError(f"No model file at {artifact}.", fix="Check --model-path.",
                          model=model_name, path=str(artifact))
        policy = self.policy.for_model(model_name)
        record = self._official(model_name, policy)
        if thresholds:
            policy = _with_thresholds(policy, thresholds)
        run = _Run(model_name=model_name, artifact=artifact,
                   artifact_digest=file_digest(artifact), policy=policy, stage=stage,
                   test_source=test_data, label=label or policy.label,
                   sensitive=list(sensitive or policy.sensitive_features), trust=trust,
                   force=force, gateway_url=gateway_url, metadata=dict(metadata or {}),
                   fail_fast=fail_fast, official=bool(record), policy_record=record,
                   reference=reference)
        return self._execute(run)

    def run_registered(self, model_name: str, version: str,
                       test_data: str | Path | pd.DataFrame, *, label: str | None = None,
                       sensitive: list[str] | None = None, force: bool = False
                       ) -> PipelineResult:
        """Run the gates on a registered version; a pass is recorded on that version (the
        "gated" promotion rule reads it)."""
        import tempfile

        mv = self.registry.get_version(model_name, version)
        policy = self.policy.for_model(model_name)
        record = self._official(model_name, policy)
        with tempfile.TemporaryDirectory(prefix="mlops-ci-") as tmp:
            artifact = Path(tmp) / mv.artifact_name
            artifact.write_bytes(self.registry.context.artifacts.get_bytes(mv.artifact_digest))
            run = _Run(model_name=model_name, artifact=artifact,
                       artifact_digest=mv.artifact_digest, policy=policy, stage="gates",
                       test_source=test_data, label=label or policy.label,
                       sensitive=list(sensitive or policy.sensitive_features),
                       trust=mv.trusted, force=force, gateway_url=None, metadata={},
                       version=mv.version, official=bool(record), policy_record=record)
            return self._execute(run)

    def _official(self, model_name: str, policy: ModelPolicy) -> dict[str, Any]:
        """The record of the store's configured policy (its digest and the approvals it
        requires) when ``policy`` is that policy for the model, else ``{}``. Only such runs
        count for the gated promotion rule (a laxer ``--policy`` gives feedback, not a
        pass), and only while the configured policy stays the same."""
        settings = self.registry.context.settings
        digest = settings.policy_digest
        configured = configured_policy(settings.policy_file).for_model(model_name)
        if configured.to_dict() != policy.to_dict() or digest != settings.policy_digest:
            return {}  # another policy, or the file changed while it was read
        return {"policy_digest": digest, "approvals_required": configured.approvals}

    def promote(self, model_name: str, version: str) -> Any:
        """Start the production rollout with the policy's strategy (the promotion rule
        checks staging, gates and approvals)."""
        from mlops.deployment.rollouts import RolloutManager

        rollout = dict(self.policy.for_model(model_name).rollout)
        strategy = str(rollout.pop("strategy", "canary"))
        config = {**dict(rollout.pop("config", {}) or {}),
                  **({"steps": rollout["steps"]} if rollout.get("steps") else {})}
        return RolloutManager(self.registry).deploy(
            model_name, version, "production", strategy=strategy, config=config,
            reason="mlops ci promote: gates and approvals passed")

    def _execute(self, run: _Run) -> PipelineResult:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        graph = self._graph(run)
        data_digest = "pending"
        if not isinstance(run.test_source, pd.DataFrame) and Path(run.test_source).is_file():
            data_digest = file_digest(run.test_source)
        run_id = self.runs.start(run.model_name, run.artifact_digest, data_digest,
                                 run.policy.to_dict())
        run.run_id = run_id
        results: dict[str, StepResult] = {}
        for name in TopologicalSorter(graph).static_order():
            blocker = next((d for d in graph[name] if not results[d].ok), None)
            if blocker is not None:
                root = results[blocker]
                step = StepResult(name, "skipped", root.reason if root.status == "skipped"
                                  else f"not run: {blocker} did not pass ({root.status})")
            else:
                self._notify(name, "running")
                step = self._run_step(name, run, data_digest)
            results[name] = step
            self._notify(name, step.status)
            self.runs.record(run_id, run.model_name, run.version, name, step.status,
                             step.to_dict(), key=step.data.get("cache_key", ""),
                             attempts=step.attempts, duration_s=step.duration_s)
        steps = [results[n] for n in TopologicalSorter(graph).static_order()]
        failed = any(s.status in ("failed", "error", "timeout") for s in steps)
        pending = any(s.status == "pending" for s in steps)
        status = "failed" if failed else "awaiting_approval" if pending else "passed"
        result = PipelineResult(run_id, run.model_name, run.version, status == "passed",
                                status, steps, run.policy.to_dict(), started,
                                time.perf_counter() - t0)
        self.runs.finish(run_id, run.model_name, run.version, status, {
            **result.to_dict(), "official_policy": run.official, **run.policy_record,
            "champion": run.ctx.champion_version if run.ctx is not None else None})
        return result

    def _notify(self, step: str, status: str) -> None:
        if self.progress is not None:
            self.progress(step, status)

    # ------------------------------------------------------------------ one step
    def _run_step(self, name: str, run: _Run, data_digest: str) -> StepResult:
        timeout = self.timeouts.get(name, self.timeouts.get(name.split(":")[0],
                                                            self.timeouts["default"]))
        retry = name in ("register_mlflow", "deploy_staging", "staging_tests",
                         "deploy_production")
        attempts = 0
        start = time.perf_counter()

        def once() -> StepResult:
            nonlocal attempts
            attempts += 1
            return self._dispatch(name, run, data_digest)

        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"ci-{name}")
        try:
            if retry:
                retrying = Retrying(stop=stop_after_attempt(self.retries),
                                    wait=wait_exponential(multiplier=0.5, max=5),
                                    retry=retry_if_exception_type(_RETRYABLE), reraise=True)
                future = pool.submit(lambda: retrying(once))
            else:
                future = pool.submit(once)
            # a thread cannot be stopped: steps that change the store (register, deploy)
            # are waited for, so a "timeout" never hides a registration that then happens
            step = future.result(timeout=None if name in _SIDE_EFFECTS else timeout)
        except concurrent.futures.TimeoutError:
            step = StepResult(name, "timeout", f"did not finish within {timeout:g} s")
        except (MlopsError, *_RETRYABLE, RetryError) as exc:
            step = StepResult(name, "error", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a gate crashing is a failed step, not a crashed pipeline
            step = StepResult(name, "error", f"unexpected {type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return dataclasses.replace(step, duration_s=time.perf_counter() - start,
                                   attempts=max(attempts, 1))

    def _dispatch(self, name: str, run: _Run, data_digest: str) -> StepResult:
        if name == "validate_data":
            return self._validate(run)
        if name == "load_model":
            return self._load(run)
        if name.startswith("gate:"):
            return self._gate(name.split(":", 1)[1], run, data_digest)
        if name == "register":
            return self._register(run)
        if name == "register_mlflow":
            return self._mlflow(run)
        if name == "deploy_staging":
            return self._deploy(run, "staging")
        if name == "staging_tests":
            return self._staging_tests(run)
        if name == "deploy_production":
            return self._production(run)
        raise CIError(f"Unknown step {name!r}.", fix="This is a bug in the pipeline.")

    def _validate(self, run: _Run) -> StepResult:
        data = load_test_data(run.test_source, run.label)
        run.data = data
        missing = [c for c in run.sensitive if c not in data.frame.columns]
        if missing:
            return StepResult("validate_data", "failed",
                              f"sensitive feature column(s) {missing} are not in the test data")
        if data.label is None:
            return StepResult("validate_data", "failed",
                              "no label column found (looked for "
                              "label/target/y/class/outcome); give --label COLUMN")
        run.ctx = GateContext(
            model=_Unloaded(),  # type: ignore[arg-type]
            model_name=run.model_name, artifact_path=run.artifact, frame=data.frame,
            X=data.features(exclude=run.sensitive), y=data.y, task="unknown",
            artifact_format=detect_format(run.artifact.name, run.artifact.read_bytes()),
            trusted=run.trust, sensitive=run.sensitive,
            output_dir=self.output_dir / run.model_name / run.artifact_digest[:12])
        return StepResult("validate_data", "passed",
                          f"{len(data.frame):,} rows, {len(data.frame.columns)} columns, label "
                          f"{data.label!r}", data={"rows": len(data.frame),
                                                   "sha256": data.digest,
                                                   "label": data.label})

    def _load(self, run: _Run) -> StepResult:
        assert run.ctx is not None and run.data is not None
        raw = run.artifact.read_bytes()
        loaded, _ = load_bytes(raw, run.artifact.name, trust=run.trust)
        loaded.name = run.model_name
        X = run.data.features(loaded.input_columns, exclude=run.sensitive)
        task = infer_task(run.data.y, loaded.classes)
        champion, champion_version, reference, signature = self._champion(run.model_name,
                                                                          run.version)
        if run.reference is not None:
            reference = compute_profiles(run.reference, None,
                                         model_name=run.model_name)["features"]
        run.ctx = dataclasses.replace(run.ctx, model=loaded, X=X, task=task, champion=champion,
                                      champion_version=champion_version, reference=reference,
                                      signature=signature, artifact_format=detect_format(
                                          run.artifact.name, raw))
        return StepResult("load_model", "passed",
                          f"{loaded.flavor} model, {task}, {X.shape[1]} input column(s)"
                          + (f"; champion {champion_version}" if champion_version else
                             "; no production version yet"),
                          data={"flavor": loaded.flavor, "task": task,
                                "champion": champion_version})

    def _champion(self, model: str, candidate: str | None
                  ) -> tuple[LoadedModel | None, str | None, Any, Any]:
        from mlops.deployment.routes import RoutingService

        try:  # what production serves now (its stable version), as the gateway answers
            spec = RoutingService(self.registry).served(model, "production")
            if spec is None or spec.stable is None:
                return None, None, None, None
            mv = self.registry.get_version(model, spec.stable)
        except (ModelNotFound, VersionNotFound):
            return None, None, None, None
        if mv.version == candidate:  # the candidate is the production version itself
            return None, None, None, None
        champion = self.registry.load_model(model, mv.version)
        try:
            reference = self.registry.reference_profile(model, mv.version)
        except MonitoringError:
            reference = None
        signature = mv.signature if mv.signature is not None and mv.signature.inputs else None
        return champion, mv.version, reference, signature

    def _gate(self, gate: str, run: _Run, data_digest: str) -> StepResult:
        assert run.ctx is not None
        config = run.policy.gates[gate]
        key = cache_key(f"gate:{gate}", run.artifact_digest, data_digest,
                        [config.model_dump(), run.model_name, run.ctx.champion_version,
                         run.sensitive, run.data.label if run.data else None, run.trust,
                         self._reference_digest(run.model_name, run.ctx.champion_version)
                         if run.reference is None else _frame_digest(run.reference)])
        if not run.force and data_digest != "pending":
            found = self.runs.cached(key)
            if found is not None and found.get("gate"):
                cached = GateResult(**{**found["gate"],
                                       "warnings": tuple(found["gate"].get("warnings", ()))})
                self._collect(run, gate, cached)
                return StepResult(f"gate:{gate}", "cached",
                                  f"reused the passed result of an earlier run: "
                                  f"{cached.reason}", gate=cached, data={"cache_key": key})
        result = gate_module(gate).run(run.ctx, config)
        self._collect(run, gate, result)
        return StepResult(f"gate:{gate}", "passed" if result.passed else "failed",
                          result.reason, gate=result, data={"cache_key": key})

    def _reference_digest(self, model: str, version: str | None) -> str | None:
        """The champion's reference profile (the data-quality gate reads it)."""
        if version is None:
            return None
        infos = self.registry.reference_profiles(model, version)
        return next((i.digest for i in infos if i.kind == "features"), None)

    @staticmethod
    def _collect(run: _Run, gate: str, result: GateResult) -> None:
        if gate == "metrics" and isinstance(result.actual, dict):
            run.metrics.update({k: float(v) for k, v in result.actual.items()
                                if isinstance(v, int | float)})

    def _register(self, run: _Run) -> StepResult:
        assert run.ctx is not None and run.data is not None
        meta = {**run.metadata, **run.metrics}
        version = self.registry.register(
            run.model_name, run.artifact, metadata=meta, trust=run.trust,
            input_example=run.ctx.X.head(10),
            reference=run.ctx.X if run.reference is None else run.reference,
            tags={"ci.run": "pipeline", "ci.data_sha256": run.data.digest[:16]})
        run.version = version.version
        # every gate passed (register depends on them): the "gated" promotion rule may
        # now let this version into production, before the run's report is final
        if run.policy.gates:  # a policy without gates passes nothing
            self.runs.mark_gates_passed(run.run_id, version.version, official=run.official,
                                        champion=run.ctx.champion_version,
                                        policy=run.policy_record)
        return StepResult("register", "passed", f"registered {run.model_name} "
                                                f"{version.version} (sha256 "
                                                f"{version.artifact_digest[:12]})",
                          data={"version": version.version})

    def _mlflow(self, run: _Run) -> StepResult:
        from mlops.ci.mlflow_sync import register_in_mlflow

        assert run.ctx is not None
        uri = os.environ["MLFLOW_TRACKING_URI"]
        reg = register_in_mlflow(uri, run.model_name, run.artifact, run.ctx.model, run.ctx.X,
                                 run.metrics, {"mlops_version": run.version or "",
                                               "tier": run.policy.tier,
                                               **run.policy.rollout})
        return StepResult("register_mlflow", "passed",
                          f"MLflow run {reg.run_id[:8]}, registered version {reg.version}",
                          data=dataclasses.asdict(reg))

    def _deploy(self, run: _Run, environment: str) -> StepResult:
        from mlops.deployment.rollouts import RolloutManager

        assert run.version is not None
        manager = RolloutManager(self.registry)
        current = manager.status(run.model_name, environment)
        if current is not None and current.state == "progressing":
            raise CIError(f"{run.model_name} has an active rollout in {environment}.",
                          fix=f"mlops rollout abort {run.model_name} --env {environment}")
        rollout = manager.deploy(run.model_name, run.version, environment, strategy="full",
                                 reason=f"pipeline: {environment} after passed gates")
        return StepResult(f"deploy_{environment}", "passed",
                          f"{run.version} is {rollout.state} in {environment}",
                          data={"rollout": rollout.id})

    def _staging_tests(self, run: _Run) -> StepResult:
        assert run.ctx is not None and run.version is not None
        expected = run.ctx.y_pred
        mv = self.registry.get_version(run.model_name, run.version)
        if mv.runtimes:  # the gateway executes the compiled runtime: compare with it
            served = self.registry.load_model(run.model_name, run.version, runtime="auto")
            expected = served.predict(run.ctx.X)
        if run.gateway_url:
            report = run_staging_checks(run.gateway_url, run.model_name, run.version,
                                        run.ctx.X, expected)
        else:
            with staging_gateway(self.registry.context.settings) as url:
                report = run_staging_checks(url, run.model_name, run.version, run.ctx.X,
                                            expected)
        return StepResult("staging_tests", "passed" if report.passed else "failed",
                          report.reason, data=report.checks)

    def _production(self, run: _Run) -> StepResult:
        from mlops.deployment.rollouts import RolloutManager

        assert run.version is not None
        configured = configured_policy(self.registry.context.settings.policy_file)
        need = max(run.policy.approvals,
                   configured.for_model(run.model_name).approvals)
        have = approvals(self.registry, run.model_name, run.version)
        if len(have) < need:
            return StepResult("deploy_production", "pending",
                              f"the {run.policy.tier}-risk policy needs {need} approval(s), "
                              f"{len(have)} given: mlops ci approve {run.model_name} "
                              f"{run.version} --reason \"...\", then mlops ci promote {run.model_name} "
                              f"{run.version}", data={"approvals": have, "required": need})
        rollout = dict(run.policy.rollout)
        strategy = str(rollout.pop("strategy", "canary"))
        config = {**dict(rollout.pop("config", {}) or {}),
                  **({"steps": rollout["steps"]} if rollout.get("steps") else {})}
        started = RolloutManager(self.registry).deploy(
            run.model_name, run.version, "production", strategy=strategy, config=config,
            reason="pipeline: gates, staging tests and approvals passed")
        return StepResult("deploy_production", "passed",
                          f"{strategy} rollout of {run.version} started ({started.state})",
                          data={"rollout": started.id, "strategy": strategy})


def _frame_digest(frame: pd.DataFrame) -> str:
    """A digest of a frame's values and column names (for the gate cache key)."""
    import hashlib

    values = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(values + repr(list(frame.columns)).encode()).hexdigest()


def _with_thresholds(policy: ModelPolicy, thresholds: Mapping[str, float]) -> ModelPolicy:
    """The seed's ``validation_metrics`` become the metrics gate's minimums."""
    module = gate_module("metrics")
    current = policy.gates.get("metrics")
    merged = current.model_dump() if current is not None else {}
    lower_is_better = {"log_loss", "mae", "rmse"}
    for key, value in thresholds.items():
        name = "f1" if key == "f1_score" else key
        old = merged.get(name)
        # never looser than the policy: a higher minimum, a lower maximum
        merged[name] = value if old is None else (min(old, value) if name in lower_is_better
                                                  else max(old, value))
    gates = dict(policy.gates)
    gates["metrics"] = module.Config.model_validate(merged)
    from mlops.ci.policy import GATE_ORDER

    return dataclasses.replace(policy, gates={n: gates[n] for n in GATE_ORDER if n in gates})
