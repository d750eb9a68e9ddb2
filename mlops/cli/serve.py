"""``mlops serve``: the inference gateway on 127.0.0.1:8000."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from mlops.cli.output import console


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback "
                                           "needs --auth (or --insecure).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    grpc_port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Also serve the V2 protocol over gRPC (inference.GRPCInferenceService) on this "
             "port of --host; with --workers N every worker shares it (SO_REUSEPORT).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    env: Annotated[str, typer.Option(help="Environment whose routes to serve.")] = "production",
    model: Annotated[str | None, typer.Option(help="Model that /invocations serves.")] = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Serve only this model (repeatable); requests for others answer 404. Default: "
             "every model the environment deploys.")] = None,
    log_predictions: Annotated[bool, typer.Option(help="Write the prediction log.")] = True,
    log_proba: Annotated[bool, typer.Option(
        help="Compute and log class probabilities on every request (one more model call "
             "per batch).")] = False,
    max_batch: Annotated[int, typer.Option(min=1, max=100_000,
                                           help="Rows per batched predict; 1 disables.")] = 64,
    max_wait_us: Annotated[int, typer.Option(min=0, max=1_000_000,
                                             help="Longest wait to fill a batch.")] = 500,
    max_inflight: Annotated[int, typer.Option(min=1, max=1_000_000,
                                              help="Past this, answer 503.")] = 512,
    max_body_mb: Annotated[float, typer.Option(min=0.001, max=4096.0,
                                               help="Request body limit.")] = 8.0,
    max_rows: Annotated[int, typer.Option(
        min=1, max=100_000_000,
        help="Rows per inference request; past this, 413.")] = 100_000,
    body_timeout: Annotated[float, typer.Option(
        min=0.1, max=3600.0,
        help="Seconds a client has to send its whole request body; after that, 408.")] = 30.0,
    predict_timeout: Annotated[float, typer.Option(
        min=0.01, max=86_400.0,
        help="Seconds a model has to predict a batch; after that, 504, and the version's "
             "requests get 503 until its call returns.")] = 30.0,
    controller_interval: Annotated[float, typer.Option(
        min=0.05, max=86_400.0,
        help="Seconds between rollout analyses (roles all and control).")] = 5.0,
    role: Annotated[str, typer.Option(
        help="all: gateway and control API; gateway: inference only; control: the REST API "
             "at /api only.")] = "all",
    auth: Annotated[bool | None, typer.Option(
        "--auth/--no-auth",
        help="Team mode: every /api request needs a token (default: MLOPS_AUTH).")] = None,
    insecure: Annotated[bool, typer.Option(
        help="Allow a non-loopback --host without --auth (a warning is logged).")] = False,
) -> None:
    """Serve the models deployed in an environment (V2, KServe V1 and MLflow protocols)."""
    from mlops.api.server import ROLES
    from mlops.api.server import serve as run
    from mlops.errors import ConfigError
    from mlops.registry.registration import check_name
    from mlops.serving import GatewayConfig

    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")
    if not all(math.isfinite(v) for v in (max_body_mb, controller_interval, body_timeout,
                                          predict_timeout)):
        raise ConfigError("--max-body-mb, --controller-interval, --body-timeout and "
                          "--predict-timeout must be finite numbers.",
                          fix="Pass e.g. --max-body-mb 8 --controller-interval 5 "
                              "--body-timeout 30 --predict-timeout 30.")

    served = tuple(dict.fromkeys(only or ()))
    for name in served:
        check_name(name)
    if model is not None and served and model not in served:
        raise ConfigError(f"--model {model} is not among --only {', '.join(served)}: "
                          "/invocations would answer 404.",
                          fix=f"Add --only {model}, or leave --model out.")
    if model is None and len(served) == 1:
        model = served[0]  # one model served: /invocations serves it, as MLflow's does
    config = GatewayConfig(environment=env, default_model=model, log_predictions=log_predictions,
                           max_batch=max_batch, max_wait_us=max_wait_us,
                           max_inflight=max_inflight,
                           max_body_bytes=int(max_body_mb * 1024 * 1024),
                           body_timeout=body_timeout, max_rows=max_rows,
                           predict_timeout=predict_timeout,
                           controller_interval=controller_interval, log_proba=log_proba,
                           grpc_port=grpc_port, only=served)
    what = {"all": f"gateway for [bold]{env}[/] and control API (/api)",
            "gateway": f"gateway for [bold]{env}[/]", "control": "control API (/api)"}[role]
    mode = "team mode (tokens required)" if auth or (auth is None and _auth_setting()) \
        else "single-user mode"
    grpc = f" and gRPC on {host}:{grpc_port}" if grpc_port is not None else ""
    if served and role != "control":
        what += f" (only {', '.join(served)})"
    console.print(f"mlops {what} on http://{host}:{port}{grpc} "
                  f"({workers} worker{'s' if workers > 1 else ''}, {mode}); Ctrl-C stops it")
    run(config, role=role, host=host, port=port, workers=workers, auth=auth,
        insecure=insecure)


def _auth_setting() -> bool:
    from mlops.config import get_settings

    return get_settings().auth
