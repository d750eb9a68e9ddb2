"""What a rendering needs to know (:class:`ClusterSpec`), and the shared pieces of every
manifest: names, labels, the pod's hardened container and its probes.

Nothing here reads the registry: the application layer gathers a :class:`ClusterSpec`
(:func:`mlops.deployment.cluster.cluster_spec`) and the flavors turn it into plain
Kubernetes objects (dicts, as ``kubectl apply`` takes them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlops.errors import ConfigError

__all__ = ["CONFIG_KEYS", "GRPC_PORT", "HTTP_PORT", "SECRET_KEYS", "ClusterSpec", "Flavor",
           "PlanStep", "ServedModel", "container", "k8s_name", "labels", "metadata",
           "pod_spec", "selector"]

HTTP_PORT = 8000
GRPC_PORT = 8001
#: the writable folders of a pod whose root filesystem is read-only
_HOME, _TMP = "/var/lib/mlops", "/tmp"
#: settings the ConfigMap may carry (nothing secret)
CONFIG_KEYS = ("MLOPS_ARTIFACTS_URI", "MLOPS_AUTH", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
#: what the referenced Secret holds (its values are never rendered)
SECRET_KEYS = ("MLOPS_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


class Flavor(StrEnum):
    PLAIN = "plain"    # Deployments, Services, HPA, PDB, NetworkPolicies, ServiceMonitor
    KSERVE = "kserve"  # one InferenceService per served model (custom OIP v2 predictor)
    ARGO = "argo"      # an Argo Rollouts Rollout of the gateway and its AnalysisTemplate


@dataclass(frozen=True)
class ServedModel:
    """What the environment serves for one model (as the routing service answers it)."""

    name: str
    stable: str | None
    candidate: str | None = None
    weight: float = 0.0
    mode: str = "split"


@dataclass(frozen=True)
class PlanStep:
    """A canary step of the Argo flavor: ``weight`` percent, then a pause (``None``:
    until a person promotes)."""

    weight: float
    pause_seconds: float | None = 0.0


@dataclass(frozen=True)
class ClusterSpec:
    """Everything a rendering needs; validated on creation."""

    environment: str
    models: tuple[ServedModel, ...] = ()
    replicas: int = 2
    max_replicas: int | None = None
    image: str = "mlops:latest"
    name: str = "mlops"
    namespace: str | None = None
    config: dict[str, str] = field(default_factory=dict)
    secret_name: str = "mlops-secrets"
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"
    canary: tuple[PlanStep, ...] = ()
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    latency_budget_ms: float = 1000.0
    version: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= 1000:
            raise ConfigError(f"--replicas {self.replicas} is out of range.",
                              fix="Use 1 to 1000 gateway replicas.")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError(f"--max-replicas {self.max_replicas} is below --replicas "
                              f"{self.replicas}.", fix="Give a maximum at least the minimum.")
        if not _IMAGE.match(self.image):
            raise ConfigError(f"{self.image!r} is not a container image reference.",
                              fix="Use e.g. registry.example.com/mlops:0.1.0.")
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if value is not None and (len(value) > 40 or not _DNS_LABEL.match(value)):
                raise ConfigError(f"--{what} {value!r} is not a Kubernetes name.",
                                  fix="Use lowercase letters, digits and '-' (at most 40).")
        for what, value in (("cpu", self.cpu_request), ("cpu", self.cpu_limit),
                            ("memory", self.memory_request), ("memory", self.memory_limit)):
            if not _QUANTITY.match(value):
                raise ConfigError(f"{value!r} is not a Kubernetes {what} quantity.",
                                  fix="Use e.g. 500m or 2 for CPU, 512Mi or 2Gi for memory.")
        unknown = sorted(set(self.config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)} may not go into the ConfigMap.",
                              fix=f"Put only {', '.join(CONFIG_KEYS)} there; secrets go into "
                                  f"the Secret {self.secret_name!r}.")

    @property
    def max_or_default(self) -> int:
        return self.max_replicas or max(self.replicas * 3, self.replicas + 1)

    @property
    def env_name(self) -> str:
        return k8s_name(self.environment, limit=20)

    def object_name(self, component: str) -> str:
        return f"{self.name}-{component}-{self.env_name}"[:63].rstrip("-")


def k8s_name(text: str, *, limit: int = 63) -> str:
    """``text`` as a DNS-1123 label (lowercase, ``-``), with a short hash of the original
    when anything had to change, so two models never get one name."""
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{clean[:limit - 7].rstrip('-')}-{digest}"


def labels(spec: ClusterSpec, component: str) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "mlops",
           "app.kubernetes.io/instance": spec.name,
           "app.kubernetes.io/component": component,
           "app.kubernetes.io/managed-by": "mlops-k8s-render",
           "mlops.dev/environment": spec.env_name}
    if spec.version:
        out["app.kubernetes.io/version"] = spec.version
    return out


def selector(spec: ClusterSpec, component: str) -> dict[str, str]:
    """The labels a Service, PDB or policy selects the component's pods by."""
    keep = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
            "app.kubernetes.io/component", "mlops.dev/environment")
    return {k: v for k, v in labels(spec, component).items() if k in keep}


def metadata(spec: ClusterSpec, name: str, component: str,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": labels(spec, component)}
    if spec.namespace:
        out["namespace"] = spec.namespace
    if annotations:
        out["annotations"] = annotations
    return out


def _probe(path: str, port: int, *, initial: int, period: int, failures: int
           ) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": initial,
            "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}


def container(spec: ClusterSpec, args: list[str], *, name: str = "mlops",
              port: int = HTTP_PORT, grpc: bool = True,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """The hardened container: non-root, read-only root filesystem, no capabilities, no
    privilege escalation; requests and limits; liveness and readiness probes; settings
    from the ConfigMap and the Secret (referenced, never copied)."""
    ports = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if grpc:
        ports.append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    variables = {"MLOPS_HOME": _HOME, "TMPDIR": _TMP, "PYTHONDONTWRITEBYTECODE": "1",
                 **(env or {})}
    return {
        "name": name, "image": spec.image, "imagePullPolicy": "IfNotPresent",
        "command": ["mlops"], "args": args, "ports": ports,
        "env": [{"name": k, "value": v} for k, v in variables.items()],
        "envFrom": [{"configMapRef": {"name": spec.object_name("config")}},
                    {"secretRef": {"name": spec.secret_name}}],
        "resources": {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                      "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit}},
        "livenessProbe": _probe("/v2/health/live", port, initial=10, period=10, failures=6),
        "readinessProbe": _probe("/v2/health/ready", port, initial=5, period=5, failures=3),
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "home", "mountPath": _HOME},
                         {"name": "tmp", "mountPath": _TMP}],
    }


def pod_spec(containers: list[dict[str, Any]], *, grace: int = 45) -> dict[str, Any]:
    """A pod that mounts no service-account token and runs as the image's non-root user;
    ``grace`` covers the server's drain (30 s) and the prediction log's flush."""
    return {"automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": grace, "containers": containers,
            "volumes": [{"name": "home", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]}
