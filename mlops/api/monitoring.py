"""Monitoring endpoints of the control-plane API: status, metric history, alerts, rules."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.rules import load_rules
from mlops.monitoring.snapshots import snapshot_series

__all__ = ["AckBody", "BaselineBody", "monitoring_router"]


class BaselineBody(BaseModel):
    metrics: dict[str, float]
    version: str | None = None


class AckBody(BaseModel):
    note: str = ""


class RuleBody(BaseModel):
    spec: dict[str, Any] = Field(description="The rule's fields (see mlops.monitoring.rules).")


def monitoring_router(monitor: ModelMonitor) -> APIRouter:
    """Routes under ``/v1/monitor`` and ``/v1/alerts`` for one monitor."""
    router = APIRouter()
    registry = monitor.registry

    @router.get("/v1/monitor/{name}")
    def status(name: str, environment: str | None = None) -> dict[str, Any]:
        return monitor.status(name, environment).to_dict()

    @router.get("/v1/monitor/{name}/series/{metric}")
    def series(name: str, metric: str, environment: str | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
        registry.get_model(name)
        points = snapshot_series(registry, name, metric, environment=environment,
                                 limit=max(1, min(limit, 10_000)))
        return [{**asdict(p), "window_start": p.window_start.isoformat(),
                 "window_end": p.window_end.isoformat()} for p in points]

    @router.post("/v1/monitor/{name}/evaluate")
    def evaluate(name: str, environment: str = "production") -> dict[str, Any]:
        return monitor.evaluate(name, environment).to_dict()

    @router.put("/v1/monitor/{name}/baseline")
    def baseline(name: str, body: BaselineBody) -> dict[str, float]:
        return monitor.set_baseline(name, body.metrics, body.version)

    @router.get("/v1/alerts")
    def alerts(model: str | None = None, state: str | None = None,
               environment: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [a.to_dict() for a in monitor.alerts.alerts(
            model, state=state, environment=environment, limit=max(1, min(limit, 1000)))]

    @router.post("/v1/alerts/{alert_id}/ack")
    def ack(alert_id: int, body: AckBody | None = None) -> dict[str, Any]:
        return monitor.alerts.ack(alert_id, note=body.note if body else "").to_dict()

    @router.get("/v1/alert-rules")
    def rules(model: str | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in monitor.alerts.rules(model)]

    @router.put("/v1/alert-rules/{rule_name}")
    def put_rule(rule_name: str, body: RuleBody) -> dict[str, Any]:
        rule = load_rules([{**body.spec, "name": rule_name}])[0]
        return monitor.alerts.put_rule(rule).to_dict()

    @router.delete("/v1/alert-rules/{rule_name}")
    def delete_rule(rule_name: str) -> dict[str, Any]:
        monitor.alerts.delete_rule(rule_name)
        return {"deleted": rule_name}

    return router
