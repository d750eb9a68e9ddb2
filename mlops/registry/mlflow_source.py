"""Where an MLflow model comes from: a local model directory, or a ``models:/NAME/VERSION``
(``models:/NAME@alias``, ``runs:/RUN/PATH``) URI on an MLflow tracking server.

Only explicit user actions reach a tracking server (registering a URI, ``mlops models
import-mlflow``). mlflow is imported when needed; its errors become
:class:`~mlops.errors.RegistryError` naming the URI and the fix. What the directory holds is
read by :mod:`mlops.flavors.mlflow_model`, never by mlflow's own loader.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from mlops.errors import MlopsError, RegistryError
from mlops.flavors.mlflow_model import MlflowModel, is_mlflow_model_dir, read_mlflow_model

__all__ = [
    "download_model",
    "is_mlflow_uri",
    "open_client",
    "redact_uri",
    "require_mlflow",
    "resolve_model_path",
    "tracking_uri_or_env",
]

_URI_SCHEMES = ("models:/", "runs:/")


def is_mlflow_uri(path: Any) -> bool:
    """``models:/...`` or ``runs:/...``."""
    return isinstance(path, str) and path.startswith(_URI_SCHEMES)


def require_mlflow(error: type[MlopsError] = RegistryError,
                   message: str = "Reading an MLflow registry needs the mlflow package.",
                   fix: str = "pip install mlflow") -> ModuleType:
    """The mlflow module, or ``error`` with the fix when it is not installed. MLflow's
    telemetry (a thread that calls its servers from this process) stays off unless the
    user turned it on: mlops only reads and writes an MLflow store through it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError as exc:
        raise error(message, fix=fix) from exc
    return mlflow


def tracking_uri_or_env(tracking_uri: str | None, what: str) -> str:
    """``tracking_uri``, else ``MLFLOW_TRACKING_URI``; never mlflow's implicit default."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.strip():
        raise RegistryError(f"{what} needs an MLflow tracking server, and none is set.",
                            fix="Pass --tracking-uri URI (tracking_uri= in Python) or set "
                                "MLFLOW_TRACKING_URI, e.g. sqlite:///mlflow.db or "
                                "http://mlflow:5000.")
    return uri


def redact_uri(uri: str) -> str:
    """``uri`` without credentials (``user:password@``) or a query string, for tags and
    messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri.split("?", 1)[0].rsplit("@", 1)[-1]
    if "@" not in parts.netloc and not parts.query:
        return uri
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def open_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` bound to ``tracking_uri`` (and ``MLFLOW_REGISTRY_URI`` when set);
    the process-wide mlflow tracking URI is left alone."""
    mlflow = require_mlflow()
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    try:
        return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    except Exception as exc:  # MlflowException and the store's own errors
        raise RegistryError(f"Cannot open the MLflow tracking server {redact_uri(tracking_uri)}:"
                            f" {exc}.", fix="Check the tracking URI and your credentials.",
                            ) from exc


def download_model(uri: str, tracking_uri: str, dst: Path) -> Path:
    """Download the MLflow model at ``uri`` into ``dst``; the local directory.

    A ``models:/`` URI is resolved with a client bound to ``tracking_uri`` first (mlflow's
    own resolver reads the process-wide registry URI, whatever ``registry_uri`` says)."""
    mlflow = require_mlflow()
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    dst.mkdir(parents=True, exist_ok=True)
    try:
        source = _files_uri(open_client(tracking_uri), uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=tracking_uri,
            registry_uri=registry_uri)
    except RegistryError:
        raise
    except Exception as exc:  # MlflowException, OSError, the artifact store's errors
        raise RegistryError(
            f"Cannot download {uri} from {redact_uri(tracking_uri)}: "
            f"{type(exc).__name__}: {str(exc)[:500]}.",
            fix="Check the model name and version or alias (the MLflow UI lists them), the "
                "tracking URI and your credentials.") from exc
    return Path(local)


#: How many ``models:/`` or ``runs:/`` references a download may follow (an MLflow 3
#: version points at its logged model's ``models:/m-...``: one step).
_MAX_HOPS = 3


def _files_uri(client: Any, uri: str) -> str:
    """Where the files of ``uri`` are: ``models:/`` and ``runs:/`` references (a version's
    source may be one) are resolved with ``client``, bound to the tracking URI asked for,
    never by mlflow's process-wide default (which would read another registry, or create
    ``./mlflow.db``); a chain of more than :data:`_MAX_HOPS` is refused."""
    source = uri
    for _ in range(_MAX_HOPS + 1):
        if source.startswith("models:/"):
            source = _artifact_uri(client, source)
        elif source.startswith("runs:/"):
            run_id, _, sub = source[len("runs:/"):].strip("/").partition("/")
            base = str(client.get_run(run_id).info.artifact_uri).rstrip("/")
            source = f"{base}/{sub}" if sub else base
        else:
            return source
    raise RegistryError(f"{uri} refers to other models or runs more than {_MAX_HOPS} times "
                        f"(last: {source}).",
                        fix="Point the version's source at the model's files.")


def _artifact_uri(client: Any, uri: str) -> str:
    """Where the files of ``models:/NAME/VERSION[/PATH]``, ``models:/NAME@ALIAS``,
    ``models:/NAME/STAGE`` or ``models:/MODEL_ID`` are; other URIs as they are."""
    if not uri.startswith("models:/"):
        return uri
    head, _, sub = uri[len("models:/"):].strip("/").partition("/")
    name, at, alias = head.partition("@")
    if not at and not sub:  # an MLflow 3 logged model id (models:/m-...)
        return str(client.get_logged_model(name).artifact_location)
    if at:
        version = str(client.get_model_version_by_alias(name, alias).version)
    else:
        ref, _, sub = sub.partition("/")
        if ref.isdigit():
            version = ref
        else:  # a stage (MLflow 2's models:/NAME/Production)
            latest = client.get_latest_versions(name, [ref])
            if not latest:
                raise RegistryError(f"{uri}: model {name!r} has no version in stage {ref!r}.",
                                    fix="Name a version number or an alias instead.",
                                    model=name)
            version = str(latest[0].version)
    base = str(client.get_model_version_download_uri(name, version)).rstrip("/")
    return f"{base}/{sub}" if sub else base


def resolve_model_path(path: str | os.PathLike[str], tracking_uri: str | None, tmp: Path,
                       *, model: str | None = None) -> MlflowModel | None:
    """The MLflow model at ``path`` (a model directory, or a URI downloaded into ``tmp``);
    None when ``path`` is anything else (a model file, or nothing at all)."""
    if is_mlflow_uri(path):
        uri = str(path)
        local = download_model(uri, tracking_uri_or_env(tracking_uri, f"Registering {uri}"),
                               tmp / "mlflow-model")
        if not is_mlflow_model_dir(local):
            raise RegistryError(f"{uri} is not an MLflow model (no MLmodel file).",
                                fix="Point at a logged model: models:/NAME/VERSION, "
                                    "models:/NAME@ALIAS or runs:/RUN_ID/ARTIFACT_PATH.",
                                model=model)
        found = read_mlflow_model(local, label=uri)
        return replace(found, info={**found.info, "source": uri})
    p = Path(path)
    if p.is_dir():
        if not is_mlflow_model_dir(p):
            raise RegistryError(f"{p} is a directory without an MLmodel file.",
                                fix="Register a single model file, or an MLflow model "
                                    "directory (the folder that holds MLmodel).",
                                model=model, path=str(p))
        return read_mlflow_model(p)
    return None
