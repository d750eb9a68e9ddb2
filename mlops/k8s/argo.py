"""The Argo Rollouts flavor: the gateway as a ``Rollout`` (a new image or configuration
reaches its pods step by step) and an ``AnalysisTemplate`` that judges the new pods from
this gateway's own Prometheus metrics.

The analysis compares nothing across versions of a model (the gateway's own rollouts do
that, with always-valid tests): it guards the pods. Its queries select the canary pods by
the ``rollouts_pod_template_hash`` label that the ServiceMonitor copies from each pod.
"""

from __future__ import annotations

from typing import Any

from mlops.k8s.objects import ClusterSpec, PlanStep, metadata, selector
from mlops.k8s.plain import (
    config_map,
    control_objects,
    gateway_objects,
    gateway_pod,
    service_monitor,
)

__all__ = ["ERROR_RATE_LIMIT", "analysis_queries", "analysis_template", "argo_manifests",
           "rollout"]

#: the largest share of 5xx answers the canary pods may give
ERROR_RATE_LIMIT = 0.01
_HASH = "{{args.canary-hash}}"


def analysis_queries(spec: ClusterSpec) -> dict[str, str]:
    """The PromQL of each analysis metric (names only metrics the gateway exports)."""
    pods = f'environment="{spec.environment}",rollouts_pod_template_hash="{_HASH}"'
    rate = f"sum(rate(mlops_requests_total{{{pods}}}[2m]))"
    return {
        "error-rate": f'(sum(rate(mlops_requests_total{{{pods},code=~"5.."}}[2m])) '
                      f"or vector(0)) / clamp_min({rate}, 1e-9)",
        "latency-p99": "histogram_quantile(0.99, sum by (le) (rate("
                       f"mlops_request_duration_seconds_bucket{{{pods}}}[2m]))) or vector(0)",
        "model-errors": f"sum(increase(mlops_prediction_errors_total{{{pods}}}[2m])) "
                        "or vector(0)",
    }


def analysis_template(spec: ClusterSpec) -> dict[str, Any]:
    queries = analysis_queries(spec)
    limits = {"error-rate": f"result[0] <= {ERROR_RATE_LIMIT}",
              "latency-p99": f"result[0] <= {spec.latency_budget_ms / 1000:g}",
              "model-errors": "result[0] == 0"}
    metrics = [{"name": name, "interval": "1m", "failureLimit": 2,
                "successCondition": limits[name],
                "provider": {"prometheus": {"address": spec.prometheus_url,
                                            "query": query}}}
               for name, query in queries.items()]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": metadata(spec, spec.object_name("analysis"), "gateway"),
            "spec": {"args": [{"name": "canary-hash"}], "metrics": metrics}}


def _steps(plan: tuple[PlanStep, ...]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for step in plan:
        steps.append({"setWeight": round(step.weight)})
        if step.weight >= 100:
            continue
        if step.pause_seconds is None:
            steps.append({"pause": {}})  # until a person promotes
        elif step.pause_seconds > 0:
            steps.append({"pause": {"duration": f"{round(step.pause_seconds)}s"}})
    return steps


def rollout(spec: ClusterSpec) -> dict[str, Any]:
    name = spec.object_name("gateway")
    plan = spec.canary or (PlanStep(10, 300), PlanStep(50, 300), PlanStep(100))
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": metadata(spec, name, "gateway"),
            "spec": {"replicas": spec.replicas, "revisionHistoryLimit": 3,
                     "selector": {"matchLabels": selector(spec, "gateway")},
                     "template": gateway_pod(spec),
                     "strategy": {"canary": {
                         "canaryService": f"{name}-canary", "stableService": name,
                         "maxSurge": 1, "maxUnavailable": 0,
                         "analysis": {"templates": [{"templateName":
                                                     spec.object_name("analysis")}],
                                      "startingStep": 1,
                                      "args": [{"name": "canary-hash", "valueFrom": {
                                          "podTemplateHashValue": "Latest"}}]},
                         "steps": _steps(plan)}}}}


def argo_manifests(spec: ClusterSpec) -> list[dict[str, Any]]:
    gateway = gateway_objects(spec, workload=False)
    service = next(o for o in gateway if o["kind"] == "Service")
    canary = {**service, "metadata": {**service["metadata"],
                                      "name": f"{service['metadata']['name']}-canary"}}
    return [config_map(spec), rollout(spec), analysis_template(spec), *gateway, canary,
            *control_objects(spec), service_monitor(spec)]
