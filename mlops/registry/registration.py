"""Registering a version: the checks, the file's safety scan and load, the version number,
and the one transaction that writes the rows and the audit event.

``path`` may also be an MLflow model directory or a ``models:/`` URI
(:mod:`mlops.registry.mlflow_source`): its model file then takes the same way as any other,
and its ``MLmodel`` supplies the signature and the input example.

Slow work (hashing, copying the artifact, loading the model to check it) happens before
that transaction, so a crash never leaves a half-made version: at worst an unreferenced
blob in the content-addressed artifact store. Version numbers are never handed out twice,
even after a delete.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import DuplicateVersion, RegistryError, UnsafeModel, VersionNotFound
from mlops.flavors.base import LoadedModel
from mlops.flavors.files import detect_format, load_bytes, safety_check, unparseable
from mlops.flavors.mlflow_model import check_declared_format, merge_signature
from mlops.flavors.signature import fit_signature, infer_signature
from mlops.identity import Role
from mlops.registry.compile import prepare_runtime, record_runtime
from mlops.registry.lineage import Lineage
from mlops.registry.mlflow_source import resolve_model_path
from mlops.registry.reference import attach_profiles, compute_profiles, put_profiles
from mlops.registry.types import ModelVersion
from mlops.registry.views import to_version
from mlops.store.audit import append_event, list_events
from mlops.store.catalog import (
    audit_refused_file,
    audit_subject,
    audit_trust_override,
    has_version,
)
from mlops.store.context import Context
from mlops.store.schema import MetricRow, ModelRow, VersionRow, VersionTagRow, utcnow
from mlops.store.versions import next_version, parse_version

__all__ = [
    "check_name",
    "check_tag",
    "check_text",
    "finite_metric",
    "json_safe",
    "register_version",
    "retired_versions",
    "top_versions",
]

_LINEAGE_KEYS = {"training_data", "git_commit", "params", "parent_version", "mlflow_run_id"}


def register_version(
    ctx: Context,
    name: str,
    path: str | os.PathLike[str] | None = None,
    *,
    model: Any = None,
    version: str | None = None,
    bump: str = "patch",
    metadata: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
    input_example: Any = None,
    training_frame: Any = None,
    reference: Any = None,
    training_data: str | None = None,
    params: Mapping[str, Any] | None = None,
    parent_version: str | None = None,
    mlflow_run_id: str | None = None,
    trust: bool = False,
    tracking_uri: str | None = None,
    compile: str | None = None,
) -> ModelVersion:
    """Register a model file (``path``) or an in-memory ``model`` as a new version.

    ``path`` may be an MLflow model directory or a ``models:/NAME/VERSION`` URI, resolved
    against ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``).

    ``compile="onnx"`` also compiles it (:mod:`mlops.registry.compile`), checked on the
    input example, ``reference`` and ``training_frame`` rows; a model that does not compile
    exactly is refused and nothing is registered.

    The version is ``version`` when given (validated, must be new), otherwise the
    highest existing version bumped by ``bump`` (``patch``/``minor``/``major``).
    Numeric ``metadata`` values become metrics; ``training_data``, ``params``,
    ``parent_version``, ``git_commit`` and ``mlflow_run_id`` become lineage; other
    text values become tags. ``reference`` (or else ``training_frame``) is profiled once
    for drift monitoring (see :mod:`mlops.registry.reference`).
    """
    check_name(name)
    ctx.require(Role.DEVELOPER, f"register a version of {name}")
    if version is not None:
        version = str(parse_version(version, model=name))
    if (path is None) == (model is None):
        raise RegistryError("Give exactly one of path= (a model file) or model= (an object).",
                            fix="register(name, 'model.skops') or register(name, model=clf).",
                            model=name)
    meta = dict(metadata or {})
    all_metrics, all_tags, lineage = _split_metadata(meta, name)
    all_metrics.update({str(k): finite_metric(str(k), v, name) for k, v in (metrics or {}).items()})
    all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    for key, value in all_tags.items():
        check_tag(key, value, name)
    for key in all_metrics:
        check_tag(key, "", name)
    lineage.training_data = training_data or lineage.training_data
    lineage.params = json_safe({**lineage.params, **dict(params or {})})
    lineage.parent_version = parent_version or lineage.parent_version
    lineage.mlflow_run_id = mlflow_run_id or lineage.mlflow_run_id
    description = description or str(meta.get("description", ""))
    check_text("description", description, name)

    with tempfile.TemporaryDirectory(prefix="mlops-reg-") as tmp:
        try:
            mlf = None if path is None else resolve_model_path(path, tracking_uri, Path(tmp),
                                                               model=name)
        except UnsafeModel as exc:  # an MLflow model that would run code on load
            audit_refused_file(ctx, name, version, "register", exc, None)
            raise
        if mlf is not None:
            input_example = mlf.input_example if input_example is None else input_example
            lineage.mlflow_run_id = lineage.mlflow_run_id or mlf.run_id
            meta.setdefault("mlflow", mlf.info)
        file = mlf.file if mlf is not None else Path(path) if path is not None \
            else _serialise(model, Path(tmp))
        if not file.is_file():
            raise RegistryError(f"No model file at {file}.",
                                fix="Check the path; register a single model file.",
                                model=name, path=str(file))
        data = file.read_bytes()
        fmt = detect_format(file.name, data)
        if mlf is not None:
            check_declared_format(mlf, fmt)
        if lineage.parent_version is not None:
            lineage.parent_version = str(parse_version(lineage.parent_version, model=name))
        _precheck(ctx, name, version, lineage.parent_version)
        report = safety_check(fmt, data)
        if not report.safe and trust and unparseable(report) is None:
            # the override is on record before any of the file's code can run
            audit_trust_override(ctx, name, None, "register", report, data)
        try:
            loaded, report = load_bytes(data, file.name, trust=trust, fmt=fmt, report=report)
        except UnsafeModel as exc:
            audit_refused_file(ctx, name, version, "register", exc, data)
            raise
        example = input_example if input_example is not None else training_frame
        signature = infer_signature(example, loaded) if example is not None else None
        if mlf is not None:
            signature = fit_signature(merge_signature(mlf.signature, signature), loaded,
                                      mlf.label)
        sample = _example_rows(example, loaded) if example is not None else None
        ref_data = reference if reference is not None else training_frame
        profiles = put_profiles(ctx.artifacts, compute_profiles(
            ref_data, loaded, model_name=name)) if ref_data is not None else []
        prepared = None if compile is None else prepare_runtime(
            loaded, signature, {"input_example": input_example, "reference": reference,
                                "training_frame": training_frame},
            to=compile, what=f"the new version of {name}",
            fix="Give at least 20 rows as the input example (--input-example FILE; "
                "input_example=, reference= or training_frame= in Python), or register "
                "without --compile and run `mlops models compile` with --data.")
        ref = ctx.artifacts.put_bytes(data)
        runtime_ref = None if prepared is None else \
            ctx.artifacts.put_bytes(prepared.compiled.data)
    lineage.fill()
    overridden = trust and not report.safe

    with ctx.store.write() as s:
        mrow = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if mrow is None:
            mrow = ModelRow(name=name, description="")
            s.add(mrow)
            s.flush()
            append_event(s, actor=ctx.actor, action="model.create", subject=audit_subject(name))
        top = top_versions(s, mrow.id, name)
        if version is None:
            version = next_version(top, bump, model=name)
        elif version in retired_versions(s, name):
            raise DuplicateVersion(
                f"Model {name!r} had a version {version} that was deleted.",
                fix=f"Choose a new number (next: {next_version(top, 'patch')}); numbers "
                    "are never reused, so approvals and gate results of the deleted "
                    "version cannot pass to another file.", model=name, version=version)
        elif has_version(s, mrow.id, version):
            raise DuplicateVersion(
                f"Model {name!r} already has version {version}.",
                fix=f"Leave the version out to get {next_version(top, 'patch')}, or "
                    "choose a new one; versions are immutable.",
                model=name, version=version,
            )
        if lineage.parent_version and not has_version(s, mrow.id,
                                                            lineage.parent_version):
            raise VersionNotFound(
                f"Parent version {lineage.parent_version} of {name!r} does not exist.",
                fix="Name an existing version as parent_version.", model=name,
                version=lineage.parent_version,
            )
        sv = parse_version(version)
        row = VersionRow(
            model_id=mrow.id, version=version, major=sv.major, minor=sv.minor,
            patch=sv.patch, prerelease=sv.prerelease or "", stage="None",
            description=description, artifact_digest=ref.digest,
            artifact_name=Path(file.name).name[-255:], artifact_size=ref.size,
            flavor=loaded.flavor, trusted=overridden,
            signature=signature.to_dict() if signature else {},
            lineage=lineage.to_dict(),
            extra={"format": fmt, "metadata": json_safe(meta),
                   **({"input_example": sample} if sample else {})},
            created_by=ctx.actor,
        )
        s.add(row)
        s.flush()
        s.add_all(MetricRow(version_id=row.id, key=k, value=v) for k, v in all_metrics.items())
        s.add_all(VersionTagRow(version_id=row.id, key=k, value=v)
                  for k, v in all_tags.items())
        attach_profiles(s, row, profiles, "reference" if reference is not None
                        else "training_frame")
        mrow.updated_at = utcnow()
        append_event(s, actor=ctx.actor, action="version.register",
                     subject=audit_subject(name, version),
                     payload={"sha256": ref.digest, "flavor": loaded.flavor, "format": fmt,
                              "metrics": all_metrics, "tags": all_tags,
                              "lineage": lineage.to_dict(),
                              "profiles": {p.kind: p.digest for p in profiles}})
        if prepared is not None and runtime_ref is not None:
            record_runtime(s, ctx, mrow, row, prepared, runtime_ref, when="register")
        s.flush()
        return to_version(s, row, name)



def _precheck(ctx: Context, name: str, version: str | None, parent: str | None) -> None:
    """Refuse a duplicate version or a missing parent before the file is loaded (the
    write transaction checks again)."""
    with ctx.store.read() as s:
        mrow = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if mrow is None:
            if parent is not None:
                raise VersionNotFound(f"Parent version {parent} of {name!r} does not exist.",
                                      fix="Name an existing version as parent_version.",
                                      model=name, version=parent)
            return
        if version is not None and has_version(s, mrow.id, version):
            raise DuplicateVersion(
                f"Model {name!r} already has version {version}.",
                fix=f"Leave the version out to get "
                    f"{next_version(top_versions(s, mrow.id), 'patch')}, or choose a "
                    "new one; versions are immutable.", model=name, version=version)
        if parent is not None and not has_version(s, mrow.id, parent):
            raise VersionNotFound(f"Parent version {parent} of {name!r} does not exist.",
                                  fix="Name an existing version as parent_version.",
                                  model=name, version=parent)



def retired_versions(session: Session, name: str) -> set[str]:
    """Version numbers ``name`` had that no longer exist (deleted versions, or versions
    of a deleted model of the same name): never handed out again."""
    events = list_events(session, subject=f"model/{name}", action="version.register",
                         limit=1_000_000)
    ever = {e.subject.rsplit("/", 1)[1] for e in events
            if e.subject.startswith(f"model/{name}/") and e.subject.count("/") == 2}
    model = session.scalar(select(ModelRow.id).where(ModelRow.name == name))
    alive = set() if model is None else set(session.scalars(
        select(VersionRow.version).where(VersionRow.model_id == model)))
    return ever - alive

def top_versions(session: Session, model_id: int, name: str | None = None
                  ) -> list[str]:
    """The versions sharing the highest MAJOR.MINOR.PATCH (pre-releases included),
    counting retired numbers of ``name`` too."""
    retired = retired_versions(session, name) if name is not None else set()
    if retired:
        numbers = [*session.scalars(select(VersionRow.version).where(
            VersionRow.model_id == model_id)), *retired]
        best = max(parse_version(v).finalize_version() for v in numbers)
        return [v for v in numbers if parse_version(v).finalize_version() == best]
    top = session.execute(
        select(VersionRow.major, VersionRow.minor, VersionRow.patch)
        .where(VersionRow.model_id == model_id)
        .order_by(VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())
        .limit(1)).first()
    if top is None:
        return []
    return list(session.scalars(select(VersionRow.version).where(
        VersionRow.model_id == model_id, VersionRow.major == top[0],
        VersionRow.minor == top[1], VersionRow.patch == top[2])))


def check_name(name: str) -> None:
    """A model name is 1-255 printable characters, without ``/`` or ``\\``, surrounding
    spaces or a leading ``.``: it names folders (the prediction log, materialised files)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 255 or name != name.strip() \
            or "/" in name or "\\" in name or name.startswith(".") or not name.isprintable():
        raise RegistryError(f"{name!r} is not a valid model name.",
                            fix="Use 1-255 printable characters without '/', '\\', surrounding "
                                "spaces or a leading '.'.")


def check_text(field: str, value: str, model: str) -> None:
    """Free text (a description, a tag) holds no NUL character: PostgreSQL cannot store
    one, so neither store takes it."""
    if "\x00" in value:
        raise RegistryError(f"The {field} contains a NUL character (\\x00).",
                            fix="Remove it; the store was left unchanged.", model=model)


def check_tag(key: str, value: str, model: str) -> None:
    check_text("tag key", key, model)
    check_text(f"value of tag {key!r}", value, model)
    if not key or len(key) > 255:
        raise RegistryError(f"Key {key!r} must be 1-255 characters.",
                            fix="Use a short key such as team or dataset.", model=model)
    if len(value) > 1024:
        raise RegistryError(f"The value of tag {key!r} is {len(value)} characters; the limit is "
                            "1024.", fix="Store long text in the description.", model=model)


def finite_metric(key: str, value: Any, model: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RegistryError(f"Metric {key!r} must be a number, got {value!r}.",
                            fix="Pass numbers as metrics; text goes into tags.",
                            model=model) from None
    if not math.isfinite(number):
        raise RegistryError(f"Metric {key!r} is {number}; metrics must be finite.",
                            fix="Drop the metric or fix its computation.", model=model)
    return number


def _split_metadata(meta: Mapping[str, Any], model: str
                    ) -> tuple[dict[str, float], dict[str, str], Lineage]:
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    lineage = Lineage()
    for key, value in meta.items():
        if key in _LINEAGE_KEYS:
            if key == "params":
                if not isinstance(value, Mapping):
                    raise RegistryError("metadata['params'] must be a dict.",
                                        fix="Pass params as {'name': value}.", model=model)
                lineage.params = dict(value)
            else:
                setattr(lineage, key, str(value))
        elif key in {"description", "tags", "metrics"}:
            if key == "tags" and isinstance(value, Mapping):
                tags.update({str(k): str(v) for k, v in value.items()})
            elif key == "metrics" and isinstance(value, Mapping):
                metrics.update({str(k): finite_metric(str(k), v, model) for k, v in value.items()})
        elif isinstance(value, bool):
            tags[key] = str(value).lower()
        elif isinstance(value, int | float) or hasattr(value, "dtype"):
            metrics[key] = finite_metric(key, value, model)
        elif isinstance(value, str):
            tags[key] = value
    return metrics, tags, lineage


def json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _serialise(model: Any, folder: Path) -> Path:
    """Write an in-memory model to a file: skops when it round-trips with trusted types
    only, else joblib (which the pickle scanner checks like any other file)."""
    import skops.io as sio

    from mlops.flavors.files import safety_check

    target = folder / "model.skops"
    try:
        sio.dump(model, target)
        portable = safety_check("skops", target.read_bytes()).safe
    except Exception:  # skops cannot persist every object
        portable = False
    if portable:
        return target
    import joblib  # the fallback: scanned like any other pickle on load

    target = folder / "model.joblib"
    joblib.dump(model, target)
    return target


def _example_rows(example: Any, model: LoadedModel, limit: int = 10) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of the input example as JSON-safe records (for smoke requests)."""
    from mlops.flavors.base import to_frame

    frame = to_frame(example, model.input_columns if not hasattr(example, "columns") else None)
    rows = frame.head(limit).to_dict("records")
    return [{str(k): json_safe(v) for k, v in row.items()} for row in rows]
