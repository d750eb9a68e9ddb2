"""Kubernetes manifests from a cluster description: plain objects, KServe
InferenceServices, Argo Rollouts (``mlops k8s render``)."""

from __future__ import annotations

from mlops.k8s.objects import ClusterSpec, Flavor, PlanStep, ServedModel, k8s_name
from mlops.k8s.render import render, to_yaml, write_manifests

__all__ = ["ClusterSpec", "Flavor", "PlanStep", "ServedModel", "k8s_name", "render",
           "to_yaml", "write_manifests"]
