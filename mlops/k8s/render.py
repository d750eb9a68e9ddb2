"""Render a :class:`~mlops.k8s.objects.ClusterSpec` in a flavor, as YAML documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops.errors import ConfigError
from mlops.k8s.argo import argo_manifests
from mlops.k8s.kserve import kserve_manifests
from mlops.k8s.objects import ClusterSpec, Flavor
from mlops.k8s.plain import plain_manifests

__all__ = ["render", "to_yaml", "write_manifests"]


def render(spec: ClusterSpec, flavor: Flavor | str = Flavor.PLAIN) -> list[dict[str, Any]]:
    """The Kubernetes objects of ``flavor`` (``plain``, ``kserve`` or ``argo``)."""
    try:
        chosen = Flavor(flavor)
    except ValueError:
        raise ConfigError(f"Unknown flavor {flavor!r}.",
                          fix=f"Use one of {', '.join(f.value for f in Flavor)}.") from None
    if chosen is Flavor.KSERVE and not spec.models:
        raise ConfigError(f"Nothing is served in {spec.environment}, so there is no "
                          "InferenceService to render.",
                          fix=f"Deploy a model first (mlops deploy NAME VERSION --env "
                              f"{spec.environment}), or render --flavor plain.")
    build = {Flavor.PLAIN: plain_manifests, Flavor.KSERVE: kserve_manifests,
             Flavor.ARGO: argo_manifests}[chosen]
    return build(spec)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """One multi-document YAML stream (``kubectl apply -f -`` takes it)."""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def write_manifests(objects: list[dict[str, Any]], out: Path) -> list[Path]:
    """One file per object (``NN-kind-name.yaml``) in ``out``; returns the paths."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, obj in enumerate(objects, 1):
            path = out / f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
            paths.append(path)
    except OSError as exc:
        raise ConfigError(f"Cannot write the manifests to {out}: {exc.strerror or exc}.",
                          fix="Choose a writable --out folder.") from exc
    return paths
