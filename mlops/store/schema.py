"""SQLAlchemy tables of the metadata store (one declarative base for all layers).

Alembic migrations in ``mlops/store/migrations`` create exactly these tables; a test
checks that the migrated schema and this module agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ABTestRow",
    "AlertRow",
    "AlertRuleRow",
    "AliasRow",
    "AnalysisRow",
    "AuditEventRow",
    "Base",
    "BaselineRow",
    "CIRunRow",
    "CIStepRow",
    "CounterRow",
    "DeploymentRow",
    "KpiRow",
    "KpiValueRow",
    "LeaseRow",
    "MetricRow",
    "MetricSnapshotRow",
    "ModelRow",
    "ModelTagRow",
    "MonitorStateRow",
    "ProfileRow",
    "RetrainConfigRow",
    "RetrainDecisionRow",
    "RetrainJobRow",
    "RolloutRow",
    "TokenRow",
    "VersionRow",
    "VersionTagRow",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class ModelRow(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[VersionRow]] = relationship(back_populates="model")


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_version"),
        Index("ix_model_versions_stage", "model_id", "stage"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    prerelease: Mapped[str] = mapped_column(String(64), default="")
    stage: Mapped[str] = mapped_column(String(16), default="None")
    description: Mapped[str] = mapped_column(Text, default="")
    artifact_digest: Mapped[str] = mapped_column(String(64))
    artifact_name: Mapped[str] = mapped_column(String(255))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    flavor: Mapped[str] = mapped_column(String(32))
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[ModelRow] = relationship(back_populates="versions")


class MetricRow(Base):
    __tablename__ = "model_version_metrics"
    __table_args__ = (Index("ix_metrics_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ModelTagRow(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class VersionTagRow(Base):
    __tablename__ = "version_tags"
    __table_args__ = (Index("ix_version_tags_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024), default="")


class AliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))


class ABTestRow(Base):
    """A fixed traffic split between two versions, set up from the registry.

    ``traffic_split`` is the share of traffic sent to ``version_b`` (0..1). The deployment
    layer turns an active row into an ``ab_test`` deployment.
    """

    __tablename__ = "ab_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version_a: Mapped[str] = mapped_column(String(64))
    version_b: Mapped[str] = mapped_column(String(64))
    traffic_split: Mapped[float] = mapped_column(Float)
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEventRow(Base):
    """One link of the hash chain. ``hash = sha256(canonical JSON of the other fields)``."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(512), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class DeploymentRow(Base):
    """What the gateway serves for (model, environment).

    ``stable_version`` takes the traffic; during a rollout ``candidate_version`` receives
    ``candidate_weight`` percent of it (``mode="split"``: canary, A/B, blue-green) or a mirrored
    copy of that share (``mode="shadow"``: the client always gets the stable answer). Sticky
    assignment hashes ``salt`` with the unit key. The deployment layer drives these rows;
    every change bumps the ``routing`` counter, which gateway workers poll.
    """

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("model_id", "environment", name="uq_deployment_env"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(64))
    stable_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_weight: Mapped[float] = mapped_column(Float, default=0.0)
    mode: Mapped[str] = mapped_column(String(16), default="split")
    strategy: Mapped[str] = mapped_column(String(32), default="full")
    state: Mapped[str] = mapped_column(String(32), default="stable")
    salt: Mapped[str] = mapped_column(String(64))
    unit_field: Mapped[str | None] = mapped_column(String(255), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CounterRow(Base):
    """Monotonic change counters (``routing``) that workers poll cheaply."""

    __tablename__ = "change_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class RolloutRow(Base):
    """A progressive delivery of ``candidate_version`` into (model, environment).

    The state machine lives here, not in a process: a controller that is killed and started
    again reads the same step, weight and timers. ``monitor`` is the controller's memory
    between passes (:class:`mlops.deployment.memory.RolloutMemory`: the sequential tests'
    state under ``analysis``, the bandit's weights under ``bandit``).
    """

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_active", "model_id", "environment", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(32))
    stable_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_version: Mapped[str] = mapped_column(String(64))
    steps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="progressing")
    reason: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    monitor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    step_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnalysisRow(Base):
    """One analysis of a rollout step, with every number it decided on."""

    __tablename__ = "rollout_analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"),
                                            index=True)
    step_index: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LeaseRow(Base):
    """Leader election without a coordinator: the holder renews before ``expires_at``."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProfileRow(Base):
    """A reference profile of a version (``kind`` ``features`` or ``outputs``).

    The profile itself (sorted samples, bin edges, category counts) is a content-addressed
    blob in the artifact store; this row points at it and summarises it.
    """

    __tablename__ = "reference_profiles"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    n_rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BaselineRow(Base):
    """Baseline metrics of a model (``version`` ``""`` = whichever version is served)."""

    __tablename__ = "monitoring_baselines"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MetricSnapshotRow(Base):
    """One metric of one evaluated window: the time series behind ``mlops monitor``.

    ``version`` and ``environment`` are ``""`` for "all".
    """

    __tablename__ = "metric_snapshots"
    __table_args__ = (
        Index("ix_snapshots_series", "model_id", "environment", "version", "metric",
              "window_end"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64), default="")
    environment: Mapped[str] = mapped_column(String(64), default="")
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRuleRow(Base):
    """An alert rule as data; ``model_id`` NULL applies it to every model."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("name", name="uq_alert_rule_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=True)
    environment: Mapped[str] = mapped_column(String(64), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRow(Base):
    """One incident of a rule on one (model, version, environment): firing until resolved.

    ``fingerprint`` identifies the series (rule, model, version, environment); at most one
    incident per fingerprint is ``firing`` at a time, which is how alerts are deduplicated.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_fingerprint_state", "fingerprint", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64), default="")
    environment: Mapped[str] = mapped_column(String(64), default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="firing")
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    evaluations: Mapped[int] = mapped_column(Integer, default=1)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MonitorStateRow(Base):
    """Small JSON state of background monitors (concept-drift detectors, cursors)."""

    __tablename__ = "monitor_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CIRunRow(Base):
    """One run of the model pipeline: inputs by digest, outcome, the whole report.

    ``version`` is set once the run registered the model. Gate results are reused by later
    runs with the same model digest, test-data digest and gate settings.
    """

    __tablename__ = "ci_runs"
    __table_args__ = (Index("ix_ci_runs_inputs", "model_name", "artifact_digest", "data_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    artifact_digest: Mapped[str] = mapped_column(String(64))
    data_digest: Mapped[str] = mapped_column(String(64))
    policy_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="running")
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CIStepRow(Base):
    """One step of a pipeline run with its result (a gate result for gate steps)."""

    __tablename__ = "ci_steps"
    __table_args__ = (Index("ix_ci_steps_cache", "cache_key", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("ci_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    cache_key: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TokenRow(Base):
    """An API token: only an argon2 hash of the secret is kept (``mlops tokens create``)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)


class KpiRow(Base):
    """A business KPI of a model: what it measures, in which unit, its baseline and target
    (both levels of the KPI), and which direction is better (``mlops kpi define``)."""

    __tablename__ = "kpis"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_kpi_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    unit: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8), default="higher")
    baseline: Mapped[float] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KpiValueRow(Base):
    """One recorded value of a KPI (``mlops kpi record``); ``version`` is NULL for a value
    of the model as a whole."""

    __tablename__ = "kpi_values"
    __table_args__ = (Index("ix_kpi_values_series", "kpi_id", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    kpi_id: Mapped[int] = mapped_column(ForeignKey("kpis.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(255), default="")


class RetrainConfigRow(Base):
    """A model's retraining configuration (``mlops retrain triggers set``): the training
    command or webhook, the guardrails and the triggers, as validated JSON."""

    __tablename__ = "retrain_configs"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(Text, default="")  # the YAML as it was given
    updated_by: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RetrainJobRow(Base):
    """One retraining job: why (its reasons, coalesced), its state, how it ran (holder,
    pid, log, wall time, peak memory) and what came of it (``outcome``: the version, the
    pipeline run, the rollout, or why not)."""

    __tablename__ = "retrain_jobs"
    __table_args__ = (Index("ix_retrain_jobs_queue", "state", "priority", "created_at"),
                      Index("ix_retrain_jobs_model", "model_id", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=2)  # 0 critical ... 3 low
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    log: Mapped[str] = mapped_column(Text, default="")
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RetrainDecisionRow(Base):
    """A decision about retraining a model: a job queued or joined, or a retrain skipped
    and why. Repeats of the same skip are counted on one row (``count``, ``last_at``)."""

    __tablename__ = "retrain_decisions"
    __table_args__ = (Index("ix_retrain_decisions_model", "model_id", "last_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # queued | joined | skipped
    reason: Mapped[str] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
