"""Alert incidents: fire once, deduplicate, resolve, cooldown, acknowledge, audit, notify a
real webhook (and survive a dead one)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import MonitoringError
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.rules import AlertRule
from mlops.registry.service import ModelRegistry
from mlops.store.egress import EgressPolicy

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
#: the test webhooks listen on loopback, which the egress policy refuses unless listed
LOOPBACK = EgressPolicy.from_allow(["127.0.0.1/32"])


class _Hook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


class _Handler(BaseHTTPRequestHandler):
    server: _Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of the server's access log."""


@pytest.fixture
def hook() -> Iterator[_Hook]:
    srv = _Hook()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def model(registry: ModelRegistry, skops_file: Path) -> str:
    registry.register("churn", skops_file)
    return "churn"


def _rule(**kw: Any) -> AlertRule:
    spec = {"name": "error-rate", "metric": "error_rate", "comparator": ">", "threshold": 0.05,
            "min_samples": 10, "cooldown": 600, "severity": "critical", **kw}
    return AlertRule.model_validate(spec)


def _eval(manager: AlertManager, value: float, n: int = 100, at: datetime = T0,
          metric: str = "error_rate") -> list[str]:
    out = manager.evaluate("churn", "1.0.0", "production",
                           lambda r: Observation(value, n) if r.metric == metric else None,
                           {"accuracy": 0.9}, now=at)
    return [f"{t.rule}:{t.change}" for t in out]


def test_fires_once_then_deduplicates_then_resolves(registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule())
    assert _eval(manager, 0.10) == ["error-rate:fired"]
    assert _eval(manager, 0.12, at=T0 + timedelta(minutes=1)) == []  # still firing: deduped
    assert _eval(manager, 0.20, at=T0 + timedelta(minutes=2)) == []
    (alert,) = manager.alerts("churn", state="firing")
    assert alert.evaluations == 3 and alert.value == 0.20 and alert.severity == "critical"
    assert _eval(manager, 0.01, at=T0 + timedelta(minutes=3)) == ["error-rate:resolved"]
    assert manager.alerts("churn", state="firing") == []
    actions = [e.action for e in registry.audit_log(subject="model/churn", limit=20)]
    assert actions.count("alert.fire") == 1 and actions.count("alert.resolve") == 1


def test_cooldown_suppresses_flapping(registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule(cooldown=600))
    _eval(manager, 0.10)
    _eval(manager, 0.01, at=T0 + timedelta(minutes=1))  # resolved at +1 min
    assert _eval(manager, 0.10, at=T0 + timedelta(minutes=5)) == ["error-rate:suppressed"]
    assert _eval(manager, 0.10, at=T0 + timedelta(minutes=12)) == ["error-rate:fired"]
    assert len(manager.alerts("churn")) == 2


def test_too_few_samples_or_missing_metric_change_nothing(registry: ModelRegistry,
                                                          model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule(min_samples=500))
    assert _eval(manager, 0.9, n=499) == []
    assert _eval(manager, 0.9, metric="latency_p99_ms") == []
    assert manager.alerts("churn") == []


def test_baseline_relative_default_rule(registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    fired = _eval(manager, 0.80, n=300, metric="accuracy")  # baseline 0.9, limit 0.855
    assert fired == ["accuracy-drop:fired"]
    (alert,) = manager.alerts("churn")
    assert alert.threshold == pytest.approx(0.855) and "baseline" in alert.message


def test_ack_is_recorded(registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule())
    _eval(manager, 0.5)
    (alert,) = manager.alerts("churn")
    acked = manager.ack(alert.id, note="looking")
    assert acked.acked_by == "tester" and acked.state == "firing"
    assert registry.audit_log(action="alert.ack", limit=1)[0].payload["note"] == "looking"
    with pytest.raises(MonitoringError, match="No alert with id"):
        manager.ack(9999)


def test_webhook_gets_firing_and_resolved_payloads(registry: ModelRegistry, model: str,
                                                   hook: _Hook) -> None:
    manager = AlertManager(registry, default_channels=[], egress=LOOPBACK)
    manager.put_rule(_rule(channels=[{"type": "webhook", "url": hook.url}]))
    _eval(manager, 0.10)
    _eval(manager, 0.01, at=T0 + timedelta(minutes=1))
    manager.flush(10)
    states = [b["state"] for b in hook.bodies]
    assert states == ["firing", "resolved"]
    assert hook.bodies[0]["model"] == "churn" and hook.bodies[0]["severity"] == "critical"
    assert hook.bodies[0]["value"] == pytest.approx(0.10)
    manager.close()


def test_dead_webhook_never_stalls_evaluation(registry: ModelRegistry, model: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    manager = AlertManager(registry, default_channels=[], egress=LOOPBACK)
    manager.put_rule(_rule(channels=[{"type": "webhook", "url": dead, "retries": 2}]))
    start = time.monotonic()
    assert _eval(manager, 0.10) == ["error-rate:fired"]
    assert time.monotonic() - start < 2.0  # delivery happens in the background
    manager.close()


def test_bad_channel_is_refused_when_the_rule_is_stored(registry: ModelRegistry,
                                                        model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    with pytest.raises(MonitoringError):
        manager.put_rule(_rule(channels=[{"type": "pager", "url": "x"}]))
    assert [r.name for r in manager.rules("churn") if r.name == "error-rate" and r.channels] == []


def test_stored_rule_replaces_the_default_of_the_same_name(registry: ModelRegistry,
                                                           model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule(name="error-rate", threshold=0.5))
    rules = {r.name: r for r in manager.rules("churn")}
    assert rules["error-rate"].threshold == 0.5
    manager.delete_rule("error-rate")
    assert {r.name: r for r in manager.rules("churn")}["error-rate"].threshold == 0.05


def test_a_version_switch_continues_the_incident(registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule())
    assert _eval(manager, 0.10) == ["error-rate:fired"]
    later = manager.evaluate("churn", "1.0.1", "production",  # 1.0.1 now serves
                             lambda r: Observation(0.10, 100) if r.metric == "error_rate"
                             else None, now=T0 + timedelta(minutes=1))
    assert later == []  # the same environment-wide series: no second page
    resolved = manager.evaluate("churn", "1.0.1", "production",
                                lambda r: Observation(0.0, 100) if r.metric == "error_rate"
                                else None, now=T0 + timedelta(minutes=2))
    assert [t.change for t in resolved] == ["resolved"]
    assert manager.alerts("churn", state="firing") == []


def test_deleting_a_rule_resolves_its_incidents_and_keeps_history(
        registry: ModelRegistry, model: str) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(_rule(name="custom", threshold=0.05))
    _eval(manager, 0.10)
    manager.delete_rule("custom")
    (incident,) = [a for a in manager.alerts("churn") if a.rule == "custom"]
    assert incident.state == "resolved"
    assert "custom" not in {r.name for r in manager.rules("churn")}
    with pytest.raises(MonitoringError, match="built-in rule"):
        manager.delete_rule("latency-p99")
    with pytest.raises(MonitoringError, match="No alert rule named 'nope'"):
        manager.delete_rule("nope")
