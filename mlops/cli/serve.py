"""``mlops serve``: the inference gateway on 127.0.0.1:8000."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.cli.output import console


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    env: Annotated[str, typer.Option(help="Environment whose routes to serve.")] = "production",
    model: Annotated[str | None, typer.Option(help="Model that /invocations serves.")] = None,
    log_predictions: Annotated[bool, typer.Option(help="Write the prediction log.")] = True,
    log_proba: Annotated[bool, typer.Option(
        help="Compute and log class probabilities on every request (one more model call "
             "per batch).")] = False,
    max_batch: Annotated[int, typer.Option(help="Rows per batched predict; 1 disables.")] = 64,
    max_wait_us: Annotated[int, typer.Option(help="Longest wait to fill a batch.")] = 500,
    max_inflight: Annotated[int, typer.Option(help="Past this, answer 503.")] = 512,
    max_body_mb: Annotated[float, typer.Option(help="Request body limit.")] = 8.0,
    controller_interval: Annotated[float, typer.Option(
        help="Seconds between rollout analyses (roles all and control).")] = 5.0,
    role: Annotated[str, typer.Option(
        help="all: gateway and control API; gateway: inference only; control: the REST API "
             "at /api only.")] = "all",
) -> None:
    """Serve the models deployed in an environment (V2, KServe V1 and MLflow protocols)."""
    from mlops.api.server import ROLES
    from mlops.api.server import serve as run
    from mlops.errors import ConfigError
    from mlops.serving.app import GatewayConfig

    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")

    config = GatewayConfig(environment=env, default_model=model, log_predictions=log_predictions,
                           max_batch=max_batch, max_wait_us=max_wait_us,
                           max_inflight=max_inflight,
                           max_body_bytes=int(max_body_mb * 1024 * 1024),
                           controller_interval=controller_interval, log_proba=log_proba)
    what = {"all": f"gateway for [bold]{env}[/] and control API (/api)",
            "gateway": f"gateway for [bold]{env}[/]", "control": "control API (/api)"}[role]
    console.print(f"mlops {what} on http://{host}:{port} "
                  f"({workers} worker{'s' if workers > 1 else ''}); Ctrl-C stops it")
    run(config, role=role, host=host, port=port, workers=workers)
