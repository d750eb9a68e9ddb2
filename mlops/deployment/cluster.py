"""What a Kubernetes rendering of one environment needs, read from the registry: the
models the environment serves (the routing service's answer) and the settings the pods
share. :func:`mlops.k8s.render` turns it into manifests (``mlops k8s render``)."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import mlops
from mlops.deployment.routes import RoutingService
from mlops.errors import ConfigError, DeploymentError
from mlops.k8s import ClusterSpec, ServedModel
from mlops.registry.service import ModelRegistry

__all__ = ["cluster_spec"]

_CREDENTIALS = re.compile(r"^[a-z0-9+.-]+://[^/@]*:[^/@]*@", re.IGNORECASE)


def cluster_spec(registry: ModelRegistry, environment: str, *, replicas: int = 2,
                 max_replicas: int | None = None, image: str | None = None,
                 name: str = "mlops", namespace: str | None = None,
                 artifacts_uri: str | None = None, prometheus_url: str | None = None
                 ) -> ClusterSpec:
    """The :class:`~mlops.k8s.ClusterSpec` of ``environment``. Replicas share nothing on
    disk, so the artifact store must be object storage (``--artifacts-uri s3://...`` or
    ``MLOPS_ARTIFACTS_URI``); the database URL and credentials stay in the Secret."""
    settings = registry.context.settings
    if environment not in settings.environments:
        raise DeploymentError(f"Unknown environment {environment!r}.",
                              fix=f"Use one of {', '.join(settings.environments)}.")
    uri = artifacts_uri or settings.artifacts_uri
    if "://" not in uri or uri.startswith(("file://", "local://", "memory://")):
        raise ConfigError(f"The artifact store {uri!r} is a local folder, which pods on "
                          "other machines cannot share.",
                          fix="Pass --artifacts-uri s3://BUCKET/PREFIX (or set "
                              "MLOPS_ARTIFACTS_URI) to object storage the cluster reaches.")
    if _CREDENTIALS.match(uri):
        raise ConfigError("The artifact store URI holds credentials, which would land in a "
                          "ConfigMap.",
                          fix="Leave them out of the URI; put AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY in the Secret.")
    config = {"MLOPS_ARTIFACTS_URI": uri}
    for key in ("AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        if os.environ.get(key):
            config[key] = os.environ[key]
    served = RoutingService(registry).serving(environment)
    models = tuple(ServedModel(m, spec.stable, spec.candidate, spec.weight, str(spec.mode))
                   for m, spec in sorted(served.items()) if spec.stable or spec.candidate)
    spec = ClusterSpec(environment=environment, models=models, replicas=replicas,
                       max_replicas=max_replicas, image=image or f"mlops:{mlops.__version__}",
                       name=name, namespace=namespace, config=config,
                       version=mlops.__version__)
    return spec if prometheus_url is None else replace(spec, prometheus_url=prometheus_url)
