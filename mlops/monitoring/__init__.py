"""Monitoring: reference profiles, drift, performance windows, health, alerts, the evaluator.

- :mod:`~mlops.monitoring.monitor` - :class:`ModelMonitor`, the service (offline and in serve)
- :mod:`~mlops.monitoring.performance` - windows over the prediction log with DuckDB
- :mod:`~mlops.monitoring.window` - logged inputs of a window, for drift checks
- :mod:`~mlops.monitoring.rules` / :mod:`~mlops.monitoring.alerts` - rules, incidents
- :mod:`~mlops.monitoring.channels` - log, webhook and Slack delivery, never blocking
- :mod:`~mlops.monitoring.health` - the composite health score
- :mod:`~mlops.monitoring.snapshots` - metric history
- :mod:`~mlops.monitoring.evaluator` - the periodic job in ``mlops serve``
- :mod:`~mlops.monitoring.model_monitor` / :mod:`~mlops.monitoring.drift_detector` - seed APIs
"""

from __future__ import annotations

from mlops.monitoring.alerts import Alert, AlertManager, AlertTransition, Observation
from mlops.monitoring.channels import (
    Channel,
    DeliveryResult,
    Dispatcher,
    LogChannel,
    Notification,
    SlackChannel,
    WebhookChannel,
    channel_from_config,
)
from mlops.monitoring.drift_detector import DriftDetector
from mlops.monitoring.evaluator import Evaluator
from mlops.monitoring.health import HealthPart, HealthScore, health_score, health_status
from mlops.monitoring.model_monitor import get_model_monitor
from mlops.monitoring.monitor import Evaluation, ModelMonitor, MonitorStatus, PerformanceCheck
from mlops.monitoring.performance import (
    PerformanceWindow,
    labelled_rows,
    per_version_windows,
    performance_series,
    performance_window,
)
from mlops.monitoring.rules import DEFAULT_RULES, AlertRule, load_rules, parse_duration
from mlops.monitoring.snapshots import (
    Snapshot,
    latest_by_deployment,
    latest_snapshots,
    snapshot_series,
)
from mlops.monitoring.window import LoggedWindow, read_window

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertTransition",
    "Channel",
    "DeliveryResult",
    "Dispatcher",
    "DriftDetector",
    "Evaluation",
    "Evaluator",
    "HealthPart",
    "HealthScore",
    "LogChannel",
    "LoggedWindow",
    "ModelMonitor",
    "MonitorStatus",
    "Notification",
    "Observation",
    "PerformanceCheck",
    "PerformanceWindow",
    "SlackChannel",
    "Snapshot",
    "WebhookChannel",
    "channel_from_config",
    "get_model_monitor",
    "health_score",
    "health_status",
    "labelled_rows",
    "latest_by_deployment",
    "latest_snapshots",
    "load_rules",
    "parse_duration",
    "per_version_windows",
    "performance_series",
    "performance_window",
    "read_window",
    "snapshot_series",
]
