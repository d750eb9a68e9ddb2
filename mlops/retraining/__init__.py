"""Retraining: a model that drifts or decays is retrained, checked and shipped, within the
guardrails its configuration sets.

- :mod:`~mlops.retraining.config` - a model's configuration: the training command or
  webhook, guardrails, triggers (YAML, errors with their line)
- :mod:`~mlops.retraining.triggers` - evaluating triggers against what monitoring recorded
- :mod:`~mlops.retraining.runner` - run a training command in its own process group, with a
  timeout, cancel, a capped log and its peak memory
- :mod:`~mlops.retraining.exports` - the labelled window and the reference data, as Parquet
- :mod:`~mlops.retraining.loop` - one job: data out, training, and the loop back through the
  CI pipeline and the rollout
- :mod:`~mlops.retraining.service` - configurations, jobs and decisions, role-checked, and
  the scheduler's pass
"""

from __future__ import annotations

from mlops.retraining.config import (
    QUALITY_METRICS,
    AlertTrigger,
    DriftTrigger,
    ManualTrigger,
    PerformanceTrigger,
    Priority,
    RetrainConfig,
    ScheduleTrigger,
    Trigger,
    TriggerKind,
    VolumeTrigger,
    Webhook,
    format_duration,
    parse_config,
    parse_duration,
)
from mlops.retraining.exports import LABEL, Export, export_labelled_window, export_reference
from mlops.retraining.loop import JobReport, execute_job
from mlops.retraining.runner import (
    DEFAULT_LOG_LIMIT,
    LogBuffer,
    RunOutcome,
    RunResult,
    cap_log,
    run_command,
)
from mlops.retraining.service import RETRAIN_RULE, PassReport, RetrainService
from mlops.retraining.triggers import (
    STALE_AFTER,
    Signal,
    Skip,
    TriggerHistory,
    evaluate_triggers,
    guardrail,
    labelled_rows_since,
)

__all__ = [
    "DEFAULT_LOG_LIMIT",
    "LABEL",
    "QUALITY_METRICS",
    "RETRAIN_RULE",
    "STALE_AFTER",
    "AlertTrigger",
    "DriftTrigger",
    "Export",
    "JobReport",
    "LogBuffer",
    "ManualTrigger",
    "PassReport",
    "PerformanceTrigger",
    "Priority",
    "RetrainConfig",
    "RetrainService",
    "RunOutcome",
    "RunResult",
    "ScheduleTrigger",
    "Signal",
    "Skip",
    "Trigger",
    "TriggerHistory",
    "TriggerKind",
    "VolumeTrigger",
    "Webhook",
    "cap_log",
    "evaluate_triggers",
    "execute_job",
    "export_labelled_window",
    "export_reference",
    "format_duration",
    "guardrail",
    "labelled_rows_since",
    "parse_config",
    "parse_duration",
    "run_command",
]
