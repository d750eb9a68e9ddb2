"""The plain flavor: the gateway and control Deployments and everything around them.

Objects: a ConfigMap (settings, nothing secret); the gateway Deployment (stateless,
``mlops serve --role gateway``), its Service, HorizontalPodAutoscaler, PodDisruptionBudget
and NetworkPolicy; the control Deployment (``--role control``: the API, the dashboard and
the controllers, two replicas of which one leads through a PostgreSQL advisory lock), its
Service, PodDisruptionBudget and NetworkPolicy; a Prometheus Operator ServiceMonitor that
scrapes ``/metrics`` of both. The Secret is referenced by name, never rendered.
"""

from __future__ import annotations

from typing import Any

from mlops.k8s.objects import (
    GRPC_PORT,
    HTTP_PORT,
    ClusterSpec,
    container,
    metadata,
    pod_spec,
    selector,
)

__all__ = ["config_map", "control_objects", "gateway_args", "gateway_objects",
           "gateway_pod", "plain_manifests", "service_monitor"]


def gateway_args(spec: ClusterSpec, *, port: int = HTTP_PORT, model: str | None = None,
                 grpc: bool = True) -> list[str]:
    """``mlops serve`` for a gateway pod: all interfaces, team mode (tokens)."""
    args = ["serve", "--role", "gateway", "--host", "0.0.0.0", "--port", str(port),
            "--env", spec.environment, "--auth"]
    if grpc:
        args += ["--grpc-port", str(GRPC_PORT)]
    if model is not None:  # one model's server (KServe): it loads that model alone
        args += ["--model", model, "--only", model]
    return args


def config_map(spec: ClusterSpec) -> dict[str, Any]:
    data = {"MLOPS_AUTH": "on", **spec.config}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(spec, spec.object_name("config"), "config"), "data": data}


def gateway_pod(spec: ClusterSpec) -> dict[str, Any]:
    """The gateway's pod template (shared by the Deployment and the Argo Rollout)."""
    return {"metadata": {"labels": selector(spec, "gateway"),
                         "annotations": {"prometheus.io/scrape": "true",
                                         "prometheus.io/path": "/metrics",
                                         "prometheus.io/port": str(HTTP_PORT)}},
            "spec": pod_spec([container(spec, gateway_args(spec))])}


def _service(spec: ClusterSpec, component: str, *, grpc: bool, name: str | None = None
             ) -> dict[str, Any]:
    ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    if grpc:
        ports.append({"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc",
                      "protocol": "TCP", "appProtocol": "grpc"})
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(spec, name or spec.object_name(component), component),
            "spec": {"type": "ClusterIP", "selector": selector(spec, component),
                     "ports": ports}}


def _pdb(spec: ClusterSpec, component: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(spec, spec.object_name(component), component),
            "spec": {"maxUnavailable": 1,
                     "selector": {"matchLabels": selector(spec, component)}}}


def _network_policy(spec: ClusterSpec, component: str, ports: list[int]) -> dict[str, Any]:
    """Ingress to the component's pods only on its serving ports (callers, the load
    balancer, Prometheus); egress is left to the cluster's policy (PostgreSQL, S3)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(spec, spec.object_name(component), component),
            "spec": {"podSelector": {"matchLabels": selector(spec, component)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": p}
                                            for p in ports]}]}}


def gateway_objects(spec: ClusterSpec, *, workload: bool = True) -> list[dict[str, Any]]:
    """The gateway's Service, HPA, PDB and NetworkPolicy, and (``workload``) Deployment."""
    name = spec.object_name("gateway")
    out: list[dict[str, Any]] = []
    if workload:
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": metadata(spec, name, "gateway"),
                    "spec": {"replicas": spec.replicas,
                             "selector": {"matchLabels": selector(spec, "gateway")},
                             "strategy": {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 1,
                                                            "maxUnavailable": 0}},
                             "template": gateway_pod(spec)}})
    out += [_service(spec, "gateway", grpc=True),
            {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": metadata(spec, name, "gateway"),
             "spec": {"scaleTargetRef": {"apiVersion": "apps/v1" if workload else
                                         "argoproj.io/v1alpha1",
                                         "kind": "Deployment" if workload else "Rollout",
                                         "name": name},
                      "minReplicas": spec.replicas, "maxReplicas": spec.max_or_default,
                      "metrics": [{"type": "Resource", "resource": {
                          "name": "cpu", "target": {"type": "Utilization",
                                                    "averageUtilization": 70}}}]}},
            _pdb(spec, "gateway"),
            _network_policy(spec, "gateway", [HTTP_PORT, GRPC_PORT])]
    return out


def control_objects(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The control plane: two replicas, one leading (PostgreSQL advisory lock), so a
    lost pod hands the controllers over within seconds."""
    name = spec.object_name("control")
    args = ["serve", "--role", "control", "--host", "0.0.0.0", "--port", str(HTTP_PORT),
            "--auth"]
    gateway = f"http://{spec.object_name('gateway')}:80"
    pod = pod_spec([container(spec, args, grpc=False,
                              env={"MLOPS_GATEWAY_URL": gateway,
                                   "MLOPS_GATEWAY_ENV": spec.environment})])
    leader = {"mlops.dev/leader-election": "postgresql advisory lock (one leader among the "
                                           "replicas; needs MLOPS_DATABASE_URL on PostgreSQL)"}
    return [{"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": metadata(spec, name, "control", leader),
             "spec": {"replicas": 2, "selector": {"matchLabels": selector(spec, "control")},
                      "template": {"metadata": {"labels": selector(spec, "control")},
                                   "spec": pod}}},
            _service(spec, "control", grpc=False), _pdb(spec, "control"),
            _network_policy(spec, "control", [HTTP_PORT])]


def service_monitor(spec: ClusterSpec) -> dict[str, Any]:
    """Prometheus Operator: scrape ``/metrics`` of every gateway and control pod; the
    pod's Argo Rollouts template hash is kept as a label, for the canary's analysis."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": metadata(spec, spec.object_name("metrics"), "metrics"),
            "spec": {"selector": {"matchLabels": {
                         "app.kubernetes.io/name": "mlops",
                         "app.kubernetes.io/instance": spec.name,
                         "mlops.dev/environment": spec.env_name}},
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s",
                                    "relabelings": [{
                                        "sourceLabels": [
                                            "__meta_kubernetes_pod_label_rollouts_pod_"
                                            "template_hash"],
                                        "targetLabel": "rollouts_pod_template_hash"}]}]}}


def plain_manifests(spec: ClusterSpec) -> list[dict[str, Any]]:
    return [config_map(spec), *gateway_objects(spec), *control_objects(spec),
            service_monitor(spec)]
