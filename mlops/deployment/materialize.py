"""Materialise what each environment serves as plain files, for tools that read a path.

When ``staging_model_path`` / ``production_model_path`` are set (``MLOPS_STAGING_MODEL_PATH``,
``MLOPS_PRODUCTION_MODEL_PATH``, or the seed README's ``STAGING_MODEL_PATH`` /
``PRODUCTION_MODEL_PATH``), :func:`materialize` makes ``{path}/{model}`` show the stable
version that environment serves (the one rule:
:func:`mlops.store.routes.served_routes`): the version's artifact file, copied byte for
byte from the artifact store (verified against its SHA-256, never loaded), and
``mlops-model.json`` (name, version, environment, flavor, format, the files with their
SHA-256 and size, materialised_at)::

    models/production/
        churn -> .versions/churn/1.2.0          the link readers open
        .versions/churn/1.2.0/model.skops
        .versions/churn/1.2.0/mlops-model.json
        .versions/churn/1.1.0/...               the previous version, kept for a rollback

A new version is written to a temporary folder renamed into ``.versions``, then the link is
switched by renaming a fresh link over it, so a reader sees the old version or the new
one, never half of one. A model that is already right is not touched, so the call is cheap
enough for every controller pass. A model the environment no longer serves loses its link.
Only links into ``.versions`` are ever removed; a process lock on ``{path}/.lock``
serialises the CLI and a server on the same machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mlops.config import Settings
from mlops.errors import ConfigError, DeploymentError, MaterializeError, MlopsError
from mlops.store.artifacts import ArtifactStore
from mlops.store.context import Context
from mlops.store.routes import served_routes
from mlops.store.schema import ModelRow, VersionRow

__all__ = ["MANIFEST", "Materialized", "materialize", "model_paths"]

#: the description written next to the model files
MANIFEST = "mlops-model.json"
_VERSIONS = ".versions"
_LOCK = ".lock"
#: which setting holds each environment's folder
_SETTINGS = {"staging": "staging_model_path", "production": "production_model_path"}


@dataclass(frozen=True)
class Materialized:
    """One model's link in one environment's folder after a pass.

    ``version`` is what ``path`` now shows (None: the environment no longer serves the
    model and its link was removed); ``previous`` what it showed before; ``changed`` whether
    this pass changed anything."""

    model: str
    environment: str
    version: str | None
    path: Path
    changed: bool
    previous: str | None = None


@dataclass(frozen=True)
class _Served:
    model: str
    version: str
    digest: str
    file: str
    size: int
    flavor: str
    format: str


def model_paths(settings: Settings) -> dict[str, Path]:
    """Environment -> folder, for each configured path (empty when none is set)."""
    paths = {env: value for env, key in _SETTINGS.items()
             if (value := getattr(settings, key)) is not None}
    for env in paths:
        if env not in settings.environments:
            raise ConfigError(
                f"{_SETTINGS[env]} is set but {env!r} is not one of the environments "
                f"{settings.environments}.",
                fix=f"Add {env!r} to MLOPS_ENVIRONMENTS or unset the "
                    f"{env.upper()}_MODEL_PATH variables.")
    if len(paths) == 2 and paths["staging"] == paths["production"]:
        raise ConfigError(
            f"Staging and production are materialised to the same folder {paths['staging']}.",
            fix="Give each environment its own folder, e.g. models/staging and "
                "models/production.")
    return paths


def materialize(ctx: Context, paths: Mapping[str, Path] | None = None,
                *, now: datetime | None = None) -> list[Materialized]:
    """Bring every configured folder (``paths``, default :func:`model_paths`) in line with
    what its environment serves; returns one entry per served or removed model.

    Raises :class:`MaterializeError` after the pass when some models failed (the others are
    done), and :class:`DeploymentError` when a folder cannot be used at all."""
    paths = model_paths(ctx.settings) if paths is None else paths
    results: list[Materialized] = []
    failures: list[tuple[str, str, MlopsError]] = []
    for environment, folder in paths.items():
        with _locked(Path(folder)) as root:
            # read under the lock: a pass that waited for another acts on the newer state
            served, missing = _read_served(ctx, environment)
            failures.extend((name, environment, exc) for name, exc in missing.items())
            for item in served:
                try:
                    results.append(_switch(ctx.artifacts, root, environment, item, now))
                except MlopsError as exc:
                    failures.append((item.model, environment, exc))
                except OSError as exc:
                    failures.append((item.model, environment, _os_error(root, exc)))
            keep = {item.model for item in served} | set(missing)
            try:
                results.extend(_remove_unserved(root, environment, keep))
            except OSError as exc:
                failures.append(("*", environment, _os_error(root, exc)))
    if failures:
        text = "; ".join(f"{model} in {env}: {exc.message}" for model, env, exc in failures)
        fixes = list(dict.fromkeys(exc.fix for _, _, exc in failures if exc.fix))
        raise MaterializeError(f"Could not materialise every served model: {text}",
                               fix=" ".join(fixes) or None, results=results,
                               failures=failures)
    return results


# ------------------------------------------------------------------------------ reading
def _read_served(ctx: Context, environment: str
                 ) -> tuple[list[_Served], dict[str, MlopsError]]:
    """What ``environment`` serves, with each stable version's artifact; models that cannot
    be materialised come back as errors (their links are left as they are)."""
    served: list[_Served] = []
    missing: dict[str, MlopsError] = {}
    with ctx.store.read() as s:
        for name, spec in sorted(served_routes(s, environment).items()):
            if spec.stable is None:
                continue
            try:
                _check_component(name, "model name", model=True)
                _check_component(spec.stable, "version", model=False)
            except DeploymentError as exc:
                missing[name] = exc
                continue
            row = s.scalar(select(VersionRow).join(ModelRow, ModelRow.id == VersionRow.model_id)
                           .where(ModelRow.name == name, VersionRow.version == spec.stable))
            if row is None:
                missing[name] = DeploymentError(
                    f"{environment} serves {name} {spec.stable}, which is not registered.",
                    fix=f"Deploy a registered version: mlops deploy {name} VERSION --env "
                        f"{environment}.", model=name, version=spec.stable)
                continue
            try:
                _check_component(row.artifact_name, "artifact file name", model=False)
                if row.artifact_name == MANIFEST:
                    raise DeploymentError(
                        f"The artifact of {name} {spec.stable} is named {MANIFEST}, the "
                        "name of the description file.",
                        fix="Register the model file under another name.", model=name,
                        version=spec.stable)
            except DeploymentError as exc:
                missing[name] = exc
                continue
            served.append(_Served(name, row.version, row.artifact_digest, row.artifact_name,
                                  row.artifact_size, row.flavor,
                                  str((row.extra or {}).get("format", ""))))
    return served, missing


def _check_component(name: str, what: str, *, model: bool) -> None:
    """Refuse a name that could leave the folder or clash with the files kept there."""
    bad = (not name or name in {".", ".."} or any(c in name for c in "/\\\0")
           or os.path.isabs(name) or (model and name.startswith(".")))
    if bad:
        raise DeploymentError(
            f"The {what} {name!r} cannot be materialised as a path: it is empty, contains "
            "'/', '\\' or NUL, is '.' or '..'" + (", or starts with '.'" if model else "")
            + ".",
            fix=("Register the model again under a plain name and deploy that" if model else
                 "Register the model from a file with a plain name and deploy that version")
            + "; the other models are materialised.", name=name)


# ------------------------------------------------------------------------------ writing
@contextlib.contextmanager
def _locked(root: Path) -> Iterator[Path]:
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / _VERSIONS).mkdir(exist_ok=True)
        fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _os_error(root, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)  # releases the lock


def _os_error(root: Path, exc: OSError) -> DeploymentError:
    return DeploymentError(f"Cannot write the served models to {root}: {exc}.",
                           fix=f"Make {root} a writable local folder, or unset its "
                               "*_MODEL_PATH variable.", path=str(root))


def _target(item: _Served) -> str:
    return f"{_VERSIONS}/{item.model}/{item.version}"


def _is_ours(link: Path) -> str | None:
    """The version a link made here points at, None for anything else."""
    if not link.is_symlink():
        return None
    parts = os.readlink(link).split("/")
    if len(parts) == 3 and parts[0] == _VERSIONS and parts[1] == link.name:
        return parts[2]
    return None


def _intact(folder: Path, item: _Served, environment: str) -> bool:
    """The version folder holds this version's file (by size) and its description (by
    digest); the file was verified when it was written."""
    try:
        meta = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return bool(meta.get("name") == item.model and meta.get("version") == item.version
                    and meta.get("environment") == environment
                    and meta.get("files") == [{"name": item.file, "sha256": item.digest,
                                               "size": item.size}]
                    and (folder / item.file).stat().st_size == item.size)
    except (OSError, ValueError, AttributeError):
        return False


def _switch(artifacts: ArtifactStore, root: Path, environment: str, item: _Served,
            now: datetime | None) -> Materialized:
    link = root / item.model
    if (link.exists() or link.is_symlink()) and _is_ours(link) is None:
        raise DeploymentError(
            f"{link} exists and was not made by mlops.",
            fix=f"Move {link} away: mlops keeps {root}/MODEL as a link to the served "
                "version.", model=item.model, path=str(link))
    previous = _is_ours(link)
    versions = root / _VERSIONS / item.model
    folder = versions / item.version
    if previous == item.version and _intact(folder, item, environment):
        return Materialized(item.model, environment, item.version, link, False, previous)
    if not _intact(folder, item, environment):
        _write_version(artifacts, versions, folder, item, environment, now)
    tmp = root / f".tmp-link-{uuid.uuid4().hex}"
    try:
        os.symlink(_target(item), tmp)
        os.replace(tmp, link)  # atomic: readers see the old link or the new one
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    _prune(versions, {item.version, previous})
    return Materialized(item.model, environment, item.version, link, True, previous)


def _write_version(artifacts: ArtifactStore, versions: Path, folder: Path, item: _Served,
                   environment: str, now: datetime | None) -> None:
    """Write the version into a temporary folder, then rename it into place."""
    versions.mkdir(parents=True, exist_ok=True)
    data = artifacts.get_bytes(item.digest)  # verified against its SHA-256; never loaded
    tmp = versions / f".tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        manifest = json.dumps(_manifest(item, environment, now), indent=2, sort_keys=True)
        for name, content in ((item.file, data), (MANIFEST, manifest.encode() + b"\n")):
            with open(tmp / name, "xb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp / name, 0o444)  # readers read; nobody edits a served model in place
        if folder.exists() or folder.is_symlink():  # a damaged copy: out of the way first
            stale = versions / f".tmp-{uuid.uuid4().hex}"
            os.rename(folder, stale)
            _delete(stale)
        os.rename(tmp, folder)
    finally:
        if tmp.exists():
            _delete(tmp)


def _delete(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _prune(versions: Path, keep: set[str | None]) -> None:
    """Keep the listed versions; leftovers of interrupted writes go too (the lock is held,
    so nobody else is writing)."""
    if not versions.is_dir():
        return
    for entry in versions.iterdir():
        if entry.name not in keep:
            _delete(entry)


def _remove_unserved(root: Path, environment: str, served: set[str]) -> list[Materialized]:
    out = []
    for link in sorted(root.iterdir()):
        if link.name.startswith(".") or link.name in served:
            continue
        version = _is_ours(link)
        if version is None:
            continue  # not ours: leave it
        link.unlink()
        _prune(root / _VERSIONS / link.name, {version})
        out.append(Materialized(link.name, environment, None, link, True, version))
    return out


def _manifest(item: _Served, environment: str, now: datetime | None) -> dict[str, Any]:
    return {"name": item.model, "version": item.version, "environment": environment,
            "flavor": item.flavor, "format": item.format,
            "files": [{"name": item.file, "sha256": item.digest, "size": item.size}],
            "materialised_at": (now or datetime.now(UTC)).isoformat()}
