"""Monitoring endpoints of the control-plane API: status, metric history, alerts, rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mlops.api.auth import shown_to
from mlops.identity import Role
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.rules import load_rules
from mlops.monitoring.snapshots import snapshot_series
from mlops.registry.promotion import check_environment

__all__ = ["AckBody", "BaselineBody", "add_monitoring_routes"]

_STRICT = ConfigDict(extra="forbid")
Name = Annotated[str, Path(min_length=1, max_length=255)]
EnvQuery = Annotated[str | None, Query(max_length=64)]


class BaselineBody(BaseModel):
    model_config = _STRICT
    metrics: dict[str, float]
    version: str | None = Field(None, max_length=64)


class AckBody(BaseModel):
    model_config = _STRICT
    note: str = Field("", max_length=2000)


class RuleBody(BaseModel):
    model_config = _STRICT
    spec: dict[str, Any] = Field(description="The rule's fields (see mlops.monitoring.rules).")


Operation = Callable[[str, str, Role], Callable[[Any], Any]]


def add_monitoring_routes(monitor: ModelMonitor, op: Operation) -> None:
    """Operations under ``/v1/monitor``, ``/v1/alerts`` and ``/v1/alert-rules``, declared
    with ``op`` (the least role each needs; see :func:`mlops.api.app.create_api`)."""
    registry = monitor.registry

    def acting(request: Request) -> ModelMonitor:
        return monitor.acting_as(request.state.principal)

    def known(environment: str | None) -> None:
        """An environment named in a query must be one the store has (MLOPS_ENVIRONMENTS):
        a made-up one was reported on as if it served the latest version."""
        if environment is not None:
            check_environment(registry.context.settings, environment)

    @op("GET", "/v1/monitor/{name}", Role.VIEWER)
    def status(name: Name, environment: EnvQuery = None) -> dict[str, Any]:
        known(environment)
        return monitor.status(name, environment).to_dict()

    @op("GET", "/v1/monitor/{name}/series/{metric}", Role.VIEWER)
    def series(name: Name, metric: Annotated[str, Path(max_length=128)],
               environment: EnvQuery = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:
        registry.get_model(name)
        known(environment)
        points = snapshot_series(registry, name, metric, environment=environment, limit=limit)
        return [{**asdict(p), "window_start": p.window_start.isoformat(),
                 "window_end": p.window_end.isoformat()} for p in points]

    @op("POST", "/v1/monitor/{name}/evaluate", Role.DEVELOPER)
    def evaluate(request: Request, name: Name,
                 environment: Annotated[str, Query(max_length=64)] = "production"
                 ) -> dict[str, Any]:
        known(environment)
        return acting(request).evaluate(name, environment).to_dict()

    @op("PUT", "/v1/monitor/{name}/baseline", Role.DEVELOPER)
    def baseline(request: Request, name: Name, body: BaselineBody) -> dict[str, float]:
        return acting(request).set_baseline(name, body.metrics, body.version)

    @op("DELETE", "/v1/monitor/{name}/baseline/{metric}", Role.DEVELOPER)
    def remove_baseline(request: Request, name: Name,
                        metric: Annotated[str, Path(max_length=128)],
                        version: Annotated[str | None, Query(max_length=64)] = None
                        ) -> dict[str, float]:
        """Remove one baseline metric (PUT adds and replaces); returns those left."""
        return acting(request).remove_baseline(name, [metric], version)

    @op("GET", "/v1/alerts", Role.VIEWER)
    def alerts(model: Annotated[str | None, Query(max_length=255)] = None,
               state: Literal["firing", "resolved"] | None = None,
               environment: EnvQuery = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return [a.to_dict() for a in monitor.alerts.alerts(
            model, state=state, environment=environment, limit=limit)]

    @op("POST", "/v1/alerts/{alert_id}/ack", Role.DEVELOPER)
    def ack(request: Request, alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
            body: AckBody | None = None) -> dict[str, Any]:
        return acting(request).alerts.ack(alert_id, note=body.note if body else "").to_dict()

    @op("GET", "/v1/alert-rules", Role.VIEWER)
    def rules(request: Request, model: Annotated[str | None, Query(max_length=255)] = None
              ) -> list[dict[str, Any]]:
        """Channel URLs and headers are secrets: shown whole to admins only."""
        shown = [r.to_dict() for r in monitor.alerts.rules(model)]
        return [shown_to(request, r) for r in shown]

    @op("PUT", "/v1/alert-rules/{rule_name}", Role.DEVELOPER)
    def put_rule(request: Request, rule_name: Annotated[str, Path(max_length=128)],
                 body: RuleBody) -> dict[str, Any]:
        rule = load_rules([{**body.spec, "name": rule_name}], egress=monitor.alerts.egress)[0]
        return acting(request).alerts.put_rule(rule).to_dict()

    @op("DELETE", "/v1/alert-rules/{rule_name}", Role.DEVELOPER)
    def delete_rule(request: Request, rule_name: Annotated[str, Path(max_length=128)]
                    ) -> dict[str, Any]:
        acting(request).alerts.delete_rule(rule_name)
        return {"deleted": rule_name}
