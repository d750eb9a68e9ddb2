"""Finding registered models and versions in the metadata store, and loading one.

The lookup rules every package shares: a model by name, a version by number (a leading
``v`` accepted), a reference that may be a number, an alias, a stage or ``latest``
(:func:`resolve_version`), and :func:`load_version`, which reads a version's artifact,
verifies its digest, checks it against the allow list and loads it (the registry's
``load_model`` and the gateway both call it).

A version may also hold compiled runtimes (``extra["runtimes"]``, written by
:mod:`mlops.registry.compile`): ``load_version(..., runtime="onnx")`` loads one, and
``runtime="auto"`` (the gateway) loads the compiled one when it exists, else the original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import FlavorError, ModelNotFound, RegistryError, UnsafeModel, VersionNotFound
from mlops.flavors.base import LoadedModel
from mlops.flavors.compile import RUNTIMES, load_compiled
from mlops.flavors.files import (
    SafetyReport,
    detect_format,
    load_bytes,
    load_skops_if_default_trusted,
    safety_check,
    unparseable,
)
from mlops.flavors.signature import Signature
from mlops.identity import Role
from mlops.store.audit import append_event
from mlops.store.context import Context
from mlops.store.schema import AliasRow, ModelRow, VersionRow
from mlops.store.versions import normalize_stage, parse_version

__all__ = [
    "LoadedVersion",
    "audit_refused_file",
    "audit_subject",
    "audit_trust_override",
    "has_version",
    "load_version",
    "model_row",
    "resolve_version",
    "runtime_digests",
    "version_row",
]


def audit_subject(model: str, version: str | None = None) -> str:
    """The audit subject of a model or of one of its versions."""
    return f"model/{model}" if version is None else f"model/{model}/{version}"


def model_row(session: Session, name: str) -> ModelRow:
    """The model named ``name``; raises :class:`ModelNotFound`."""
    row = session.scalar(select(ModelRow).where(ModelRow.name == name))
    if row is None:
        raise ModelNotFound(f"No registered model named {name!r}.",
                            fix="Check the name with `mlops models list`.", model=name)
    return row


def version_row(session: Session, model: ModelRow, version: str) -> VersionRow:
    """Version number ``version`` of ``model`` (``v1.2.0`` finds ``1.2.0``); raises
    :class:`VersionNotFound`."""
    text = version.strip()
    row = session.scalar(select(VersionRow).where(VersionRow.model_id == model.id,
                                                  VersionRow.version == text))
    if row is None and text[:1] in {"v", "V"}:
        row = session.scalar(select(VersionRow).where(VersionRow.model_id == model.id,
                                                      VersionRow.version == text[1:]))
    if row is None:
        raise VersionNotFound(
            f"Model {model.name!r} has no version {version!r}.",
            fix=f"See its versions with `mlops models show {model.name}`.",
            model=model.name, version=version,
        )
    return row


def has_version(session: Session, model_id: int, version: str) -> bool:
    """Does the model have this exact version number?"""
    return session.scalar(select(VersionRow.id).where(
        VersionRow.model_id == model_id, VersionRow.version == version)) is not None


def resolve_version(session: Session, name: str, version: str | None = None,
                    stage: str | None = None, alias: str | None = None) -> VersionRow:
    """The version a reference names. ``version`` may be a number, an alias, a stage name
    or ``latest``; ``stage`` and ``alias`` name one directly; nothing at all means the
    highest version."""
    if version is not None and stage is None and alias is None:
        # fast path: an exact version number, one indexed query
        exact = session.scalar(select(VersionRow).join(ModelRow).where(
            ModelRow.name == name, VersionRow.version == version.strip()))
        if exact is not None:
            return exact
    model = model_row(session, name)
    if version is not None and stage is None and alias is None:
        ref = version.strip()
        if ref.lower() == "latest":
            version = None
        elif ref.lower() in {"staging", "production", "archived"}:
            stage, version = ref, None
        else:
            alias_row = session.get(AliasRow, (model.id, ref))
            if alias_row is not None:
                found = session.get(VersionRow, alias_row.version_id)
                assert found is not None
                return found
            return version_row(session, model, ref)
    if alias is not None:
        alias_row = session.get(AliasRow, (model.id, alias))
        if alias_row is None:
            raise VersionNotFound(f"Model {name!r} has no alias {alias!r}.",
                                  fix=f"Set it with `mlops models alias {name} {alias} VERSION`.",
                                  model=name)
        found = session.get(VersionRow, alias_row.version_id)
        assert found is not None
        return found
    query = select(VersionRow).where(VersionRow.model_id == model.id)
    if stage is not None:
        canonical = normalize_stage(stage, model=name)
        query = query.where(VersionRow.stage == canonical)
    rows = session.scalars(query).all()
    if not rows:
        where = f" in stage {normalize_stage(stage)}" if stage else ""
        raise VersionNotFound(f"Model {name!r} has no version{where}.",
                              fix=f"Promote one with `mlops models promote {name} VERSION "
                                  f"{normalize_stage(stage) if stage else 'Staging'}`.",
                              model=name)
    return max(rows, key=lambda r: parse_version(r.version))


@dataclass(frozen=True)
class LoadedVersion:
    """A loaded version, with the number it resolved to, its signature, the runtime that
    was loaded (``onnx`` for a compiled one, else the original's flavor) and its digest."""

    model: LoadedModel
    version: str
    signature: Signature | None
    runtime: str = ""
    digest: str = ""


def audit_trust_override(ctx: Context, name: str, version: str | None, when: str,
                         report: SafetyReport, data: bytes) -> None:
    """Commit a trust override (an admin's ``trust=True`` for a file that is not on the
    allow list) to the audit log before the file is deserialised."""
    ctx.require(Role.ADMIN, f"load a {report.format} file of {name} that is not on the "
                            "allow list (trust=True)")
    with ctx.store.write() as s:
        append_event(s, actor=ctx.actor, action="security.trust_override",
                     subject=audit_subject(name, version),
                     payload={"when": when, "sha256": hashlib.sha256(data).hexdigest(),
                              "format": report.format, "offending": list(report.offending)})


_REFUSALS_SEEN: set[tuple[str, str, str | None, str, str | None]] = set()


def audit_refused_file(ctx: Context, name: str, version: str | None, when: str,
                       exc: UnsafeModel, data: bytes | None) -> None:
    """Record a model file refused as unsafe (a security event the usage audit and the
    compliance reports read). Its own transaction: the refusal stands, and is still
    raised, if this write fails. A load refused again (a gateway retrying a route, a
    client asking for the version) is recorded once per process and file."""
    digest = None if data is None else hashlib.sha256(data).hexdigest()
    payload: dict[str, object] = {"when": when, "message": exc.message[:500],
                                  "offending": [str(o)[:200] for o in exc.offending[:20]]}
    if digest is not None:
        payload["sha256"] = digest
    key = (ctx.settings.database_url, name, version, when, digest)
    if when == "load":
        if key in _REFUSALS_SEEN:
            return
        if len(_REFUSALS_SEEN) > 10_000:
            _REFUSALS_SEEN.clear()
        _REFUSALS_SEEN.add(key)
    try:
        with ctx.store.write() as s:
            append_event(s, actor=ctx.actor, action="security.model_refused",
                         subject=audit_subject(name, version), payload=payload)
    except Exception:  # the store is down: the caller's refusal is what matters
        return


def load_version(ctx: Context, name: str, version: str | None = None, *,
                 stage: str | None = None, alias: str | None = None,
                 trust: bool = False, runtime: str = "original") -> LoadedVersion:
    """Load a version as a uniform predictor, verifying its digest and checking the file
    against the allow list again.

    A file that is not on the allow list loads only when the version was registered with
    ``trust=True``, or when an admin passes ``trust=True`` here (recorded in the audit log
    first).

    ``runtime``: ``original`` (the registered file), a compiled runtime by name (``onnx``),
    or ``auto``: the compiled runtime when the version has one, else the original.
    """
    if runtime not in ("original", "auto", *RUNTIMES):
        raise RegistryError(f"Unknown runtime {runtime!r}.",
                            fix=f"Use one of original, auto, {', '.join(RUNTIMES)}.",
                            model=name)
    cols = (VersionRow.version, VersionRow.artifact_digest, VersionRow.artifact_name,
            VersionRow.extra, VersionRow.trusted, VersionRow.signature)
    with ctx.store.read() as s:
        found: Any = None
        if version is not None and stage is None and alias is None:
            found = s.execute(select(*cols).join(ModelRow).where(
                ModelRow.name == name, VersionRow.version == version.strip())).first()
        if found is None:
            row = resolve_version(s, name, version, stage, alias)
            found = (row.version, row.artifact_digest, row.artifact_name, row.extra,
                     row.trusted, row.signature)
    number, digest, filename, extra, trusted, sig = found
    fmt = str(extra.get("format", "")) or None
    signature = Signature.from_dict(sig)
    compiled = _runtime_record(extra, runtime, name, number)
    if compiled is not None:
        return _load_compiled(ctx, name, number, signature, *compiled)
    data = ctx.artifacts.get_bytes(digest)
    try:
        loaded = load_skops_if_default_trusted(data) if fmt == "skops" else None
        if loaded is None:
            report = safety_check(fmt or detect_format(filename, data), data)
            if not report.safe and trust and not trusted and unparseable(report) is None:
                audit_trust_override(ctx, name, number, "load", report, data)
            loaded, report = load_bytes(data, filename, trust=trust or trusted, fmt=fmt,
                                        report=report)
    except UnsafeModel as exc:  # the stored file changed, or the allow list tightened
        exc.context.setdefault("model", name)
        exc.context.setdefault("version", number)
        audit_refused_file(ctx, name, number, "load", exc, data)
        raise
    except FlavorError as exc:
        exc.context.setdefault("model", name)
        exc.context.setdefault("version", number)
        raise
    loaded.name, loaded.version = name, number
    if signature and loaded.input_columns is None and not signature.positional:
        loaded.input_columns = signature.columns
    loaded.info.setdefault("runtime", loaded.flavor)
    return LoadedVersion(loaded, number, signature, loaded.flavor, digest)


def _runtime_record(extra: dict[str, Any], runtime: str, name: str, number: str
                    ) -> tuple[str, dict[str, Any]] | None:
    """(runtime, record) of the compiled runtime to load, or None for the original."""
    runtimes = extra.get("runtimes") or {}
    if runtime == "original":
        return None
    if runtime == "auto":
        chosen = next((r for r in RUNTIMES if r in runtimes), None)
        return None if chosen is None else (chosen, runtimes[chosen])
    if runtime not in runtimes:
        raise RegistryError(
            f"Version {number} of {name!r} has no {runtime} runtime.",
            fix=f"Compile it: mlops models compile {name} {number} --to {runtime} "
                "--data FILE", model=name, version=number)
    return runtime, runtimes[runtime]


def _load_compiled(ctx: Context, name: str, number: str, signature: Signature | None,
                   runtime: str, record: dict[str, Any]) -> LoadedVersion:
    """A compiled runtime: its bytes are verified against the digest recorded when it
    passed the equality check; an ONNX graph imports no code."""
    digest = str(record["digest"])
    data = ctx.artifacts.get_bytes(digest)
    columns = record.get("input_columns") or (
        signature.columns if signature and not signature.positional else None)
    try:
        loaded = load_compiled(data, classes=record.get("classes"),
                               has_proba=bool(record.get("has_proba")), input_columns=columns)
    except FlavorError as exc:
        exc.context.setdefault("model", name)
        exc.context.setdefault("version", number)
        raise
    loaded.name, loaded.version = name, number
    loaded.info["format"] = runtime
    return LoadedVersion(loaded, number, signature, runtime, digest)


def runtime_digests(session: Session, keys: Iterable[tuple[str, str]]) -> dict[
        tuple[str, str], str]:
    """For (model, version) pairs, the digest of what ``load_version(runtime="auto")``
    loads: the compiled runtime's when there is one, else the original file's. A loaded
    copy whose digest differs is out of date (the version was compiled since)."""
    wanted = set(keys)
    names = {name for name, _ in wanted}
    numbers = {number for _, number in wanted}
    out: dict[tuple[str, str], str] = {}
    if not names:
        return out
    for name, number, digest, extra in session.execute(
            select(ModelRow.name, VersionRow.version, VersionRow.artifact_digest,
                   VersionRow.extra).join(ModelRow).where(ModelRow.name.in_(names),
                                                          VersionRow.version.in_(numbers))):
        if (name, number) not in wanted:
            continue
        runtimes = (extra or {}).get("runtimes") or {}
        chosen = next((r for r in RUNTIMES if r in runtimes), None)
        out[(name, number)] = str(runtimes[chosen]["digest"]) if chosen else digest
    return out
