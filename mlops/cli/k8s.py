"""``mlops k8s render``: Kubernetes manifests from the registry's state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.output import console, err_console, open_registry

__all__ = ["k8s_app"]

k8s_app = typer.Typer(no_args_is_help=True,
                      help="Kubernetes manifests (plain, KServe, Argo Rollouts).")


@k8s_app.command("render")
def render(
    env: Annotated[str, typer.Option(help="Environment whose gateway to render.")
                   ] = "production",
    replicas: Annotated[int, typer.Option(min=1, max=1000, help="Gateway replicas (the "
                                          "autoscaler's minimum).")] = 2,
    max_replicas: Annotated[int | None, typer.Option(
        min=1, max=1000, help="The autoscaler's maximum (default: 3 x --replicas).")] = None,
    flavor: Annotated[str, typer.Option(help="plain, kserve or argo.")] = "plain",
    out: Annotated[Path | None, typer.Option(help="Write one file per object here "
                                             "(default: print one YAML stream).")] = None,
    image: Annotated[str | None, typer.Option(help="Container image (default: "
                                              "mlops:VERSION, built from the Dockerfile).")
                     ] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace of every object.")
                         ] = None,
    name: Annotated[str, typer.Option(help="Prefix of every object's name.")] = "mlops",
    artifacts_uri: Annotated[str | None, typer.Option(
        help="Object storage the pods share (default: MLOPS_ARTIFACTS_URI).")] = None,
    prometheus_url: Annotated[str | None, typer.Option(
        help="Prometheus the Argo analysis queries.")] = None,
) -> None:
    """Write the manifests of ENV's gateway, control plane and monitoring. The database URL
    and the AWS keys are read from a Secret the manifests name but never contain."""
    from mlops.deployment.cluster import cluster_spec
    from mlops.k8s import render as render_objects
    from mlops.k8s import to_yaml, write_manifests
    from mlops.k8s.objects import SECRET_KEYS

    spec = cluster_spec(open_registry(), env, replicas=replicas,
                        max_replicas=max_replicas, image=image, name=name,
                        namespace=namespace, artifacts_uri=artifacts_uri,
                        prometheus_url=prometheus_url)
    objects = render_objects(spec, flavor)
    if out is None:
        typer.echo(to_yaml(objects), nl=False)
    else:
        paths = write_manifests(objects, out)
        console.print(f"wrote {len(paths)} manifests ({flavor}) to {out}")
    secret = (f"kubectl create secret generic {spec.secret_name}"
              + "".join(f" --from-literal={k}=..." for k in SECRET_KEYS))
    err_console.print(f"The pods read {', '.join(SECRET_KEYS)} from the Secret "
                      f"{spec.secret_name!r}; create it first: {secret}", soft_wrap=True)
