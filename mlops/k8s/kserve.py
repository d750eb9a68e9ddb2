"""The KServe flavor: one ``InferenceService`` per served model whose predictor is this
server, a custom container that speaks the Open Inference Protocol (V2) on port 8080.

KServe then owns the pods (scaling, revisions); inside a predictor the gateway still
routes between the model's versions as the registry says (a canary stays a canary).
"""

from __future__ import annotations

from typing import Any

from mlops.k8s.objects import ClusterSpec, container, k8s_name, metadata, pod_spec
from mlops.k8s.plain import config_map, gateway_args

__all__ = ["KSERVE_PORT", "inference_service", "kserve_manifests"]

#: the port KServe expects a custom predictor container to listen on
KSERVE_PORT = 8080


def inference_service(spec: ClusterSpec, model: str) -> dict[str, Any]:
    box = container(spec, gateway_args(spec, port=KSERVE_PORT, model=model, grpc=False),
                    name="kserve-container", port=KSERVE_PORT, grpc=False)
    pod = pod_spec([box])
    predictor: dict[str, Any] = {
        "minReplicas": spec.replicas, "maxReplicas": spec.max_or_default,
        "containers": pod["containers"], "volumes": pod["volumes"],
        "securityContext": pod["securityContext"],
        "automountServiceAccountToken": pod["automountServiceAccountToken"],
        "terminationGracePeriodSeconds": pod["terminationGracePeriodSeconds"]}
    meta = metadata(spec, k8s_name(f"{model}-{spec.env_name}"), "predictor",
                    {"serving.kserve.io/deploymentMode": "RawDeployment",
                     "mlops.dev/model": model})
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": meta, "spec": {"predictor": predictor}}


def kserve_manifests(spec: ClusterSpec) -> list[dict[str, Any]]:
    return [config_map(spec), *(inference_service(spec, m.name) for m in spec.models)]
