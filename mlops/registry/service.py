"""The model registry: versions, stages, aliases, tags, metrics, lineage, search, loading.

>>> reg = ModelRegistry(home="/tmp/mlops-doc")                      # doctest: +SKIP
>>> v = reg.register("churn", model=clf, input_example=X[:5])      # doctest: +SKIP
>>> reg.promote("churn", v.version, "production")                  # doctest: +SKIP
>>> reg.load_model("churn", stage="production").predict(X)         # doctest: +SKIP

Every state change is one serialised transaction that writes the rows and the audit event
together (see :mod:`mlops.store.db`). Slow work (hashing, copying the artifact, loading the
model to check it) happens before that transaction, so a crash never leaves a half-made
version: at worst an unreferenced blob in the content-addressed artifact store.
"""

from __future__ import annotations

import copy
import math
import os
import secrets
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from mlops.config import Settings, get_settings
from mlops.errors import (
    DuplicateVersion,
    FlavorError,
    InvalidVersion,
    ModelNotFound,
    RegistryError,
    VersionNotFound,
)
from mlops.flavors.base import LoadedModel
from mlops.flavors.files import (
    SafetyReport,
    detect_format,
    load_bytes,
    load_skops_if_default_trusted,
    safety_check,
    unparseable,
)
from mlops.identity import Principal, Role, require
from mlops.registry.lineage import Lineage
from mlops.registry.promotion import Verdict, check_serving_change, environment_for_stage
from mlops.registry.reference import (
    ProfileInfo,
    attach_profiles,
    compute_profiles,
    load_profile,
    profile_rows,
    put_profiles,
)
from mlops.registry.search import compile_clauses, parse_query
from mlops.registry.signature import Signature, infer_signature
from mlops.registry.types import ABTest, ModelVersion, RegisteredModel
from mlops.registry.versions import (
    next_version,
    normalize_stage,
    parse_version,
    validate_alias,
)
from mlops.stats.profile import ReferenceProfile
from mlops.store.artifacts import ArtifactStore
from mlops.store.audit import (
    AuditEvent,
    VerifyResult,
    append_event,
    list_events,
    parse_checkpoint,
    verify_chain,
)
from mlops.store.counters import ROUTING, bump_counter
from mlops.store.credentials import principal_from_settings
from mlops.store.db import MetadataStore
from mlops.store.schema import (
    ABTestRow,
    AliasRow,
    DeploymentRow,
    MetricRow,
    ModelRow,
    ModelTagRow,
    VersionRow,
    VersionTagRow,
    utcnow,
)

__all__ = ["ModelRegistry"]

_LINEAGE_KEYS = {"training_data", "git_commit", "params", "parent_version", "mlflow_run_id"}


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _subject(model: str, version: str | None = None) -> str:
    return f"model/{model}" if version is None else f"model/{model}/{version}"


class ModelRegistry:
    """Registered models and their versions, in the metadata and artifact stores."""

    def __init__(self, settings: Settings | None = None, *, principal: Principal | None = None,
                 **overrides: Any) -> None:
        self.settings = settings or get_settings(**overrides)
        self.store = MetadataStore(self.settings.database_url)
        self.artifacts = ArtifactStore(self.settings.artifacts_uri)
        #: who acts: the local user (single-user mode), or the holder of MLOPS_TOKEN / the
        #: request's token (team mode); every audit event names them
        self.principal = principal or principal_from_settings(self.settings, self.store)

    @property
    def actor(self) -> str:
        return self.principal.name

    def acting_as(self, principal: Principal) -> ModelRegistry:
        """This registry (same stores) acting for ``principal``: one per API request."""
        clone = copy.copy(self)
        clone.principal = principal
        return clone

    def require(self, role: Role, action: str) -> None:
        """Raise unless the acting principal holds ``role`` (see :mod:`mlops.identity`)."""
        require(self.principal, role, action)

    # ------------------------------------------------------------------ helpers
    def _model_row(self, session: Session, name: str) -> ModelRow:
        row = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise ModelNotFound(f"No registered model named {name!r}.",
                                fix="Check the name with `mlops models list`.", model=name)
        return row

    def _version_row(self, session: Session, model: ModelRow, version: str) -> VersionRow:
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

    def _resolve(self, session: Session, name: str, version: str | None = None,
                 stage: str | None = None, alias: str | None = None) -> VersionRow:
        if version is not None and stage is None and alias is None:
            # fast path: an exact version number, one indexed query
            exact = session.scalar(select(VersionRow).join(ModelRow).where(
                ModelRow.name == name, VersionRow.version == version.strip()))
            if exact is not None:
                return exact
        model = self._model_row(session, name)
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
                return self._version_row(session, model, ref)
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

    def _precheck(self, name: str, version: str | None, parent: str | None) -> None:
        """Refuse a duplicate version or a missing parent before the file is loaded (the
        write transaction checks again)."""
        with self.store.read() as s:
            mrow = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if mrow is None:
                if parent is not None:
                    raise VersionNotFound(f"Parent version {parent} of {name!r} does not exist.",
                                          fix="Name an existing version as parent_version.",
                                          model=name, version=parent)
                return
            if version is not None and self._has_version(s, mrow.id, version):
                raise DuplicateVersion(
                    f"Model {name!r} already has version {version}.",
                    fix=f"Leave the version out to get "
                        f"{next_version(self._top_versions(s, mrow.id), 'patch')}, or choose a "
                        "new one; versions are immutable.", model=name, version=version)
            if parent is not None and not self._has_version(s, mrow.id, parent):
                raise VersionNotFound(f"Parent version {parent} of {name!r} does not exist.",
                                      fix="Name an existing version as parent_version.",
                                      model=name, version=parent)

    def _audit_override(self, name: str, version: str | None, when: str,
                        report: SafetyReport, data: bytes) -> None:
        """Commit the trust override to the audit log before the file is deserialised."""
        import hashlib

        self.require(Role.ADMIN, f"load a {report.format} file of {name} that is not on the "
                                 "allow list (trust=True)")
        with self.store.write() as s:
            append_event(s, actor=self.actor, action="security.trust_override",
                         subject=_subject(name, version),
                         payload={"when": when, "sha256": hashlib.sha256(data).hexdigest(),
                                  "format": report.format, "offending": list(report.offending)})

    @staticmethod
    def _retired(session: Session, name: str) -> set[str]:
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

    def _top_versions(self, session: Session, model_id: int, name: str | None = None
                      ) -> list[str]:
        """The versions sharing the highest MAJOR.MINOR.PATCH (pre-releases included),
        counting retired numbers of ``name`` too."""
        retired = self._retired(session, name) if name is not None else set()
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

    @staticmethod
    def _has_version(session: Session, model_id: int, version: str) -> bool:
        return session.scalar(select(VersionRow.id).where(
            VersionRow.model_id == model_id, VersionRow.version == version)) is not None

    def _to_version(self, session: Session, row: VersionRow, model_name: str) -> ModelVersion:
        aliases = session.scalars(select(AliasRow.alias).where(AliasRow.version_id == row.id)).all()
        tags = {k: v for k, v in session.execute(
            select(VersionTagRow.key, VersionTagRow.value).where(VersionTagRow.version_id == row.id))}
        metrics = {k: v for k, v in session.execute(
            select(MetricRow.key, MetricRow.value).where(MetricRow.version_id == row.id))}
        return ModelVersion(
            model=model_name, version=row.version, stage=row.stage, flavor=row.flavor,
            format=str(row.extra.get("format", "")), artifact_digest=row.artifact_digest,
            artifact_name=row.artifact_name, artifact_size=row.artifact_size,
            trusted=row.trusted, description=row.description, created_by=row.created_by,
            created_at=_utc(row.created_at), updated_at=_utc(row.updated_at),
            aliases=sorted(aliases), tags=tags, metrics=metrics,
            signature=Signature.from_dict(row.signature), lineage=Lineage.from_dict(row.lineage),
            metadata=dict(row.extra.get("metadata", {})),
            input_example=row.extra.get("input_example"),
        )

    # ------------------------------------------------------------------ register
    def register(
        self,
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
    ) -> ModelVersion:
        """Register a model file (``path``) or an in-memory ``model`` as a new version.

        The version is ``version`` when given (validated, must be new), otherwise the
        highest existing version bumped by ``bump`` (``patch``/``minor``/``major``).
        Numeric ``metadata`` values become metrics; ``training_data``, ``params``,
        ``parent_version``, ``git_commit`` and ``mlflow_run_id`` become lineage; other
        text values become tags. ``reference`` (or else ``training_frame``) is profiled once
        for drift monitoring (see :mod:`mlops.registry.reference`).
        """
        _check_name(name)
        self.require(Role.DEVELOPER, f"register a version of {name}")
        if version is not None:
            version = str(parse_version(version, model=name))
        if (path is None) == (model is None):
            raise RegistryError("Give exactly one of path= (a model file) or model= (an object).",
                                fix="register(name, 'model.skops') or register(name, model=clf).",
                                model=name)
        meta = dict(metadata or {})
        all_metrics, all_tags, lineage = _split_metadata(meta, name)
        all_metrics.update({str(k): _finite(str(k), v, name) for k, v in (metrics or {}).items()})
        all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        for key, value in all_tags.items():
            _check_tag(key, value, name)
        for key in all_metrics:
            _check_tag(key, "", name)
        lineage.training_data = training_data or lineage.training_data
        lineage.params = _json_safe({**lineage.params, **dict(params or {})})
        lineage.parent_version = parent_version or lineage.parent_version
        lineage.mlflow_run_id = mlflow_run_id or lineage.mlflow_run_id
        description = description or str(meta.get("description", ""))

        with tempfile.TemporaryDirectory(prefix="mlops-reg-") as tmp:
            file = Path(path) if path is not None else _serialise(model, Path(tmp))
            if not file.is_file():
                raise RegistryError(f"No model file at {file}.",
                                    fix="Check the path; register a single model file.",
                                    model=name, path=str(file))
            data = file.read_bytes()
            fmt = detect_format(file.name, data)
            if lineage.parent_version is not None:
                lineage.parent_version = str(parse_version(lineage.parent_version, model=name))
            self._precheck(name, version, lineage.parent_version)
            report = safety_check(fmt, data)
            if not report.safe and trust and unparseable(report) is None:
                # the override is on record before any of the file's code can run
                self._audit_override(name, None, "register", report, data)
            loaded, report = load_bytes(data, file.name, trust=trust, fmt=fmt, report=report)
            example = input_example if input_example is not None else training_frame
            signature = infer_signature(example, loaded) if example is not None else None
            sample = _example_rows(example, loaded) if example is not None else None
            ref_data = reference if reference is not None else training_frame
            profiles = put_profiles(self.artifacts, compute_profiles(
                ref_data, loaded, model_name=name)) if ref_data is not None else []
            ref = self.artifacts.put_bytes(data)
        lineage.fill()
        overridden = trust and not report.safe

        with self.store.write() as s:
            mrow = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if mrow is None:
                mrow = ModelRow(name=name, description="")
                s.add(mrow)
                s.flush()
                append_event(s, actor=self.actor, action="model.create", subject=_subject(name))
            top = self._top_versions(s, mrow.id, name)
            if version is None:
                version = next_version(top, bump, model=name)
            elif version in self._retired(s, name):
                raise DuplicateVersion(
                    f"Model {name!r} had a version {version} that was deleted.",
                    fix=f"Choose a new number (next: {next_version(top, 'patch')}); numbers "
                        "are never reused, so approvals and gate results of the deleted "
                        "version cannot pass to another file.", model=name, version=version)
            elif self._has_version(s, mrow.id, version):
                raise DuplicateVersion(
                    f"Model {name!r} already has version {version}.",
                    fix=f"Leave the version out to get {next_version(top, 'patch')}, or "
                        "choose a new one; versions are immutable.",
                    model=name, version=version,
                )
            if lineage.parent_version and not self._has_version(s, mrow.id,
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
                extra={"format": fmt, "metadata": _json_safe(meta),
                       **({"input_example": sample} if sample else {})},
                created_by=self.actor,
            )
            s.add(row)
            s.flush()
            s.add_all(MetricRow(version_id=row.id, key=k, value=v) for k, v in all_metrics.items())
            s.add_all(VersionTagRow(version_id=row.id, key=k, value=v)
                      for k, v in all_tags.items())
            attach_profiles(s, row, profiles, "reference" if reference is not None
                            else "training_frame")
            mrow.updated_at = utcnow()
            append_event(s, actor=self.actor, action="version.register",
                         subject=_subject(name, version),
                         payload={"sha256": ref.digest, "flavor": loaded.flavor, "format": fmt,
                                  "metrics": all_metrics, "tags": all_tags,
                                  "lineage": lineage.to_dict(),
                                  "profiles": {p.kind: p.digest for p in profiles}})
            s.flush()
            return self._to_version(s, row, name)

    def register_model(self, model_name: str, model_path: str | os.PathLike[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Seed API: register and return the new version string."""
        return self.register(model_name, model_path, metadata=metadata, **kwargs).version

    # ------------------------------------------------------------------ read
    def get_version(self, name: str, version: str | None = None, *, stage: str | None = None,
                    alias: str | None = None) -> ModelVersion:
        """One version by number, stage, alias, or the latest (``version=None``)."""
        with self.store.read() as s:
            return self._to_version(s, self._resolve(s, name, version, stage, alias), name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self.store.read() as s:
            model = self._model_row(s, name)
            rows = s.scalars(select(VersionRow).where(VersionRow.model_id == model.id)).all()
            out = [self._to_version(s, r, name) for r in rows]
        return sorted(out, key=lambda v: parse_version(v.version))

    def get_model(self, name: str) -> RegisteredModel:
        with self.store.read() as s:
            return self._summaries(s, [self._model_row(s, name)])[0]

    def list_models(self) -> list[RegisteredModel]:
        with self.store.read() as s:
            return self._summaries(s, list(s.scalars(select(ModelRow).order_by(ModelRow.name))))

    def _summaries(self, s: Session, models: list[ModelRow]) -> list[RegisteredModel]:
        ids = [m.id for m in models]
        versions: dict[int, list[tuple[str, str, int]]] = {i: [] for i in ids}
        for mid, ver, stage, vid in s.execute(
                select(VersionRow.model_id, VersionRow.version, VersionRow.stage, VersionRow.id)
                .where(VersionRow.model_id.in_(ids))):
            versions[mid].append((ver, stage, vid))
        aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
        for mid, alias, vid in s.execute(select(AliasRow.model_id, AliasRow.alias,
                                                AliasRow.version_id)
                                         .where(AliasRow.model_id.in_(ids))):
            aliases[mid][alias] = vid
        tags: dict[int, dict[str, str]] = {i: {} for i in ids}
        for mid, key, value in s.execute(select(ModelTagRow.model_id, ModelTagRow.key,
                                                ModelTagRow.value)
                                         .where(ModelTagRow.model_id.in_(ids))):
            tags[mid][key] = value
        out = []
        for m in models:
            vs = versions[m.id]
            by_id = {vid: ver for ver, _, vid in vs}
            stages: dict[str, str] = {}
            for ver, stage, _ in sorted(vs, key=lambda t: parse_version(t[0])):
                if stage != "None":
                    stages[stage] = ver
            latest = max((v for v, _, _ in vs), key=parse_version) if vs else None
            out.append(RegisteredModel(
                name=m.name, description=m.description, created_at=_utc(m.created_at),
                updated_at=_utc(m.updated_at), latest_version=latest, version_count=len(vs),
                stages=stages, aliases={a: by_id[v] for a, v in aliases[m.id].items()},
                tags=tags[m.id]))
        return out

    def search(self, query: str = "", *, limit: int = 1000) -> list[ModelVersion]:
        """Versions matching a filter such as ``accuracy > 0.9 and stage = production``."""
        condition = compile_clauses(parse_query(query))
        with self.store.read() as s:
            rows = s.execute(
                select(VersionRow, ModelRow.name).join(ModelRow, VersionRow.model_id == ModelRow.id)
                .where(condition)
                .order_by(ModelRow.name, VersionRow.major.desc(), VersionRow.minor.desc(),
                          VersionRow.patch.desc(), VersionRow.id.desc())
                .limit(limit)
            ).all()
            return [self._to_version(s, row, name) for row, name in rows]

    # ------------------------------------------------------------------ stages, aliases, tags
    def promote(self, name: str, version: str, stage: str, *, archive_existing: bool = True,
                reason: str = "", override: str | None = None) -> ModelVersion:
        """Move a version to a stage. Promoting to Production archives the version that was in
        Production before, unless ``archive_existing=False``.

        A stage an environment serves by (Staging, Production) is a change of what that
        environment serves: it goes through the promotion gate
        (:func:`mlops.registry.promotion.check_serving_change`); ``override`` is the
        recorded reason to skip its rules.
        """
        target = normalize_stage(stage, model=name)
        with self.store.write() as s:
            model = self._model_row(s, name)
            row = self._version_row(s, model, version)
            previous = row.stage
            verdict = self._stage_gate(s, model, row, previous, target, override)
            archived: list[str] = []
            if target == "Production" and archive_existing:
                others = s.scalars(select(VersionRow).where(
                    VersionRow.model_id == model.id, VersionRow.stage == "Production",
                    VersionRow.id != row.id)).all()
                for other in others:
                    other.stage = "Archived"
                    other.updated_at = utcnow()
                    archived.append(other.version)
            row.stage = target
            row.updated_at = utcnow()
            bump_counter(s, ROUTING)  # environments without a deployment serve by stage
            append_event(s, actor=self.actor, action="version.stage",
                         subject=_subject(name, row.version),
                         payload={"from": previous, "to": target, "archived": archived,
                                  "reason": reason,
                                  **(verdict.payload() if verdict is not None else {})})
            s.flush()
            return self._to_version(s, row, name)

    def _stage_gate(self, s: Session, model: ModelRow, row: VersionRow, previous: str,
                    target: str, override: str | None) -> Verdict | None:
        """Stages that environments serve by pass the promotion gate; others need the
        developer role."""
        envs = self.settings.environments
        leaving = environment_for_stage(previous) if previous != target else None
        entering = environment_for_stage(target)
        verdict = None
        if leaving is not None and leaving in envs:
            check_serving_change(s, self.settings, self.principal, model, leaving, [],
                                 action=f"move {row.version} out of {previous}")
        if entering is not None and entering in envs:
            verdict = check_serving_change(s, self.settings, self.principal, model, entering,
                                           [row.version], override=override,
                                           action=f"promote {row.version} to {target}")
        if verdict is None:
            self.require(Role.DEVELOPER, f"move {model.name} {row.version} to {target}")
        return verdict

    def promote_to_stage(self, model_name: str, version: str, stage: str, **kwargs: Any
                         ) -> ModelVersion:
        """Seed API for :meth:`promote`; stage names are case-insensitive."""
        return self.promote(model_name, version, stage, **kwargs)

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        """Point ``alias`` at ``version``, moving it in one transaction if it existed."""
        validate_alias(alias, model=name)
        self.require(Role.DEVELOPER, f"move the {alias!r} alias of {name}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            row = self._version_row(s, model, version)
            current = s.get(AliasRow, (model.id, alias))
            before = None
            if current is None:
                s.add(AliasRow(model_id=model.id, alias=alias, version_id=row.id))
            else:
                old = s.get(VersionRow, current.version_id)
                before = old.version if old else None
                current.version_id = row.id
            append_event(s, actor=self.actor, action="alias.set", subject=_subject(name),
                         payload={"alias": alias, "from": before, "to": row.version})
            s.flush()
            return self._to_version(s, row, name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.require(Role.DEVELOPER, f"delete the {alias!r} alias of {name}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            current = s.get(AliasRow, (model.id, alias))
            if current is None:
                raise VersionNotFound(f"Model {name!r} has no alias {alias!r}.",
                                      fix="List aliases with `mlops models show NAME`.",
                                      model=name)
            old = s.get(VersionRow, current.version_id)
            s.delete(current)
            append_event(s, actor=self.actor, action="alias.delete", subject=_subject(name),
                         payload={"alias": alias, "from": old.version if old else None})

    def set_tag(self, name: str, key: str, value: str, version: str | None = None) -> None:
        """Tag a version, or the model itself when ``version`` is None."""
        _check_tag(key, str(value), name)
        self.require(Role.DEVELOPER, f"tag {name}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            if version is None:
                s.merge(ModelTagRow(model_id=model.id, key=key, value=str(value)))
                subject = _subject(name)
            else:
                row = self._version_row(s, model, version)
                s.merge(VersionTagRow(version_id=row.id, key=key, value=str(value)))
                subject = _subject(name, row.version)
            append_event(s, actor=self.actor, action="tag.set", subject=subject,
                         payload={"key": key, "value": str(value)})

    def delete_tag(self, name: str, key: str, version: str | None = None) -> None:
        self.require(Role.DEVELOPER, f"delete a tag of {name}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            if version is None:
                result = s.execute(delete(ModelTagRow).where(ModelTagRow.model_id == model.id,
                                                             ModelTagRow.key == key))
                subject = _subject(name)
            else:
                row = self._version_row(s, model, version)
                result = s.execute(delete(VersionTagRow).where(VersionTagRow.version_id == row.id,
                                                               VersionTagRow.key == key))
                subject = _subject(name, row.version)
            if not cast(CursorResult[Any], result).rowcount:
                raise RegistryError(f"{subject} has no tag {key!r}.",
                                    fix="List tags with `mlops models show`.", model=name)
            append_event(s, actor=self.actor, action="tag.delete", subject=subject,
                         payload={"key": key})

    def log_metrics(self, name: str, version: str, metrics: Mapping[str, float]) -> None:
        """Add or overwrite metrics of a version (e.g. evaluated after registration)."""
        clean = {k: _finite(k, v, name) for k, v in metrics.items()}
        self.require(Role.DEVELOPER, f"log metrics of {name}")
        with self.store.write() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            for k, v in clean.items():
                s.merge(MetricRow(version_id=row.id, key=k, value=v))
            append_event(s, actor=self.actor, action="metrics.log",
                         subject=_subject(name, row.version), payload={"metrics": clean})

    def set_reference(self, name: str, version: str, data: Any, *, source: str = "",
                      ) -> list[ProfileInfo]:
        """Profile ``data`` (model inputs) as the version's reference, replacing any before."""
        self.require(Role.DEVELOPER, f"set the reference data of {name}")
        mv = self.get_version(name, version)
        loaded = self.load_model(name, mv.version)
        stored = put_profiles(self.artifacts, compute_profiles(data, loaded, model_name=name))
        with self.store.write() as s:
            row = self._resolve(s, name, mv.version)
            attach_profiles(s, row, stored, source or "set_reference")
            append_event(s, actor=self.actor, action="version.reference",
                         subject=_subject(name, mv.version),
                         payload={"profiles": {p.kind: p.digest for p in stored},
                                  "n_rows": stored[0].n_rows, "source": source})
            s.flush()
            return profile_rows(s, row)

    def reference_profile(self, name: str, version: str | None = None, kind: str = "features",
                          ) -> ReferenceProfile:
        """The stored reference profile of a version (default: the newest version)."""
        with self.store.read() as s:
            row = self._resolve(s, name, version)
            return load_profile(s, self.artifacts, row, kind, model_name=name)

    def reference_profiles(self, name: str, version: str | None = None) -> list[ProfileInfo]:
        """Summaries of the profiles stored for a version."""
        with self.store.read() as s:
            return profile_rows(s, self._resolve(s, name, version))

    def set_description(self, name: str, description: str, version: str | None = None) -> None:
        self.require(Role.DEVELOPER, f"describe {name}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            if version is None:
                model.description = description
                subject = _subject(name)
            else:
                row = self._version_row(s, model, version)
                row.description = description
                subject = _subject(name, row.version)
            append_event(s, actor=self.actor, action="description.set", subject=subject,
                         payload={"description": description})

    def delete_version(self, name: str, version: str) -> None:
        """Delete a version's metadata (its artifact blob stays; blobs are shared by digest)."""
        self.require(Role.ADMIN, f"delete {name} {version}")
        with self.store.write() as s:
            model = self._model_row(s, name)
            row = self._version_row(s, model, version)
            _refuse_if_in_use(s, model, row)
            payload = {"sha256": row.artifact_digest, "stage": row.stage}
            s.execute(delete(AliasRow).where(AliasRow.version_id == row.id))
            s.execute(delete(MetricRow).where(MetricRow.version_id == row.id))
            s.execute(delete(VersionTagRow).where(VersionTagRow.version_id == row.id))
            s.delete(row)
            append_event(s, actor=self.actor, action="version.delete",
                         subject=_subject(name, row.version), payload=payload)

    def delete_model(self, name: str) -> None:
        self.require(Role.ADMIN, f"delete the model {name} and its deployments")
        with self.store.write() as s:
            model = self._model_row(s, name)
            ids = s.scalars(select(VersionRow.id).where(VersionRow.model_id == model.id)).all()
            s.execute(delete(AliasRow).where(AliasRow.model_id == model.id))
            s.execute(delete(ModelTagRow).where(ModelTagRow.model_id == model.id))
            s.execute(delete(ABTestRow).where(ABTestRow.model_id == model.id))
            s.execute(delete(DeploymentRow).where(DeploymentRow.model_id == model.id))
            bump_counter(s, ROUTING)
            s.execute(delete(MetricRow).where(MetricRow.version_id.in_(ids)))
            s.execute(delete(VersionTagRow).where(VersionTagRow.version_id.in_(ids)))
            s.execute(delete(VersionRow).where(VersionRow.model_id == model.id))
            s.delete(model)
            append_event(s, actor=self.actor, action="model.delete", subject=_subject(name),
                         payload={"versions": len(ids)})

    # ------------------------------------------------------------------ load
    def load_model(self, name: str, version: str | None = None, *, stage: str | None = None,
                   alias: str | None = None, trust: bool = False) -> LoadedModel:
        """Load a version as a uniform predictor, verifying its digest and scanning it again.

        An unsafe pickle loads only when the version was registered with ``trust=True`` or
        ``trust=True`` is passed here (recorded in the audit log).
        """
        cols = (VersionRow.version, VersionRow.artifact_digest, VersionRow.artifact_name,
                VersionRow.extra, VersionRow.trusted, VersionRow.signature)
        with self.store.read() as s:
            found: Any = None
            if version is not None and stage is None and alias is None:
                found = s.execute(select(*cols).join(ModelRow).where(
                    ModelRow.name == name, VersionRow.version == version.strip())).first()
            if found is None:
                row = self._resolve(s, name, version, stage, alias)
                found = (row.version, row.artifact_digest, row.artifact_name, row.extra,
                         row.trusted, row.signature)
        number, digest, filename, extra, trusted, sig = found
        fmt = str(extra.get("format", "")) or None
        signature = Signature.from_dict(sig)
        data = self.artifacts.get_bytes(digest)
        try:
            loaded = load_skops_if_default_trusted(data) if fmt == "skops" else None
            if loaded is None:
                report = safety_check(fmt or detect_format(filename, data), data)
                if not report.safe and trust and not trusted and unparseable(report) is None:
                    self._audit_override(name, number, "load", report, data)
                loaded, report = load_bytes(data, filename, trust=trust or trusted, fmt=fmt,
                                            report=report)
        except FlavorError as exc:
            exc.context.setdefault("model", name)
            exc.context.setdefault("version", number)
            raise
        loaded.name, loaded.version = name, number
        if signature and loaded.input_columns is None and not signature.positional:
            loaded.input_columns = signature.columns
        return loaded

    # ------------------------------------------------------------------ A/B
    def setup_ab_test(self, model_name: str, version_a: str, version_b: str,
                      traffic_split: float = 0.5) -> ABTest:
        """Store a fixed split: ``traffic_split`` of traffic to ``version_b``, the rest to A.
        Any active A/B test of the model is replaced."""
        if not isinstance(traffic_split, int | float) or not 0.0 < float(traffic_split) < 1.0:
            raise RegistryError(f"traffic_split must be between 0 and 1 (exclusive), "
                                f"got {traffic_split!r}.",
                                fix="Use e.g. 0.5 for 50% to version_b.", model=model_name)
        self.require(Role.DEVELOPER, f"set up an A/B test of {model_name}")
        with self.store.write() as s:
            model = self._model_row(s, model_name)
            a = self._version_row(s, model, version_a)
            b = self._version_row(s, model, version_b)
            if a.id == b.id:
                raise InvalidVersion("An A/B test needs two different versions.",
                                     fix="Name two versions.", model=model_name)
            for old in s.scalars(select(ABTestRow).where(ABTestRow.model_id == model.id,
                                                         ABTestRow.status == "active")):
                old.status = "replaced"
            row = ABTestRow(model_id=model.id, version_a=a.version, version_b=b.version,
                            traffic_split=float(traffic_split), salt=secrets.token_hex(8),
                            status="active", created_by=self.actor)
            s.add(row)
            s.flush()
            append_event(s, actor=self.actor, action="abtest.setup", subject=_subject(model_name),
                         payload={"id": row.id, "version_a": a.version, "version_b": b.version,
                                  "traffic_split": float(traffic_split), "salt": row.salt})
            return ABTest(row.id, model_name, a.version, b.version, row.traffic_split, row.salt,
                          row.status, _utc(row.created_at))

    def active_ab_test(self, model_name: str) -> ABTest | None:
        with self.store.read() as s:
            model = self._model_row(s, model_name)
            row = s.scalar(select(ABTestRow).where(ABTestRow.model_id == model.id,
                                                   ABTestRow.status == "active")
                           .order_by(ABTestRow.id.desc()))
            if row is None:
                return None
            return ABTest(row.id, model_name, row.version_a, row.version_b, row.traffic_split,
                          row.salt, row.status, _utc(row.created_at))

    # ------------------------------------------------------------------ audit
    def audit_log(self, subject: str | None = None, action: str | None = None,
                  limit: int = 100) -> list[AuditEvent]:
        with self.store.read() as s:
            return list_events(s, subject=subject, action=action, limit=limit)

    def verify_audit(self, checkpoint: str | None = None) -> VerifyResult:
        """Replay the audit chain; ``checkpoint`` is ``COUNT:HEAD`` kept elsewhere."""
        against = parse_checkpoint(checkpoint) if checkpoint else None
        with self.store.read() as s:
            return verify_chain(s, against=against)

    def count_versions(self) -> int:
        with self.store.read() as s:
            return int(s.scalar(select(func.count()).select_from(VersionRow)) or 0)


# ---------------------------------------------------------------------- module helpers
def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 255 or "/" in name \
            or name != name.strip():
        raise RegistryError(f"{name!r} is not a valid model name.",
                            fix="Use 1-255 characters without '/' or surrounding spaces.")


def _check_tag(key: str, value: str, model: str) -> None:
    if not key or len(key) > 255:
        raise RegistryError(f"Key {key!r} must be 1-255 characters.",
                            fix="Use a short key such as team or dataset.", model=model)
    if len(value) > 1024:
        raise RegistryError(f"The value of tag {key!r} is {len(value)} characters; the limit is "
                            "1024.", fix="Store long text in the description.", model=model)


def _finite(key: str, value: Any, model: str) -> float:
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
                metrics.update({str(k): _finite(str(k), v, model) for k, v in value.items()})
        elif isinstance(value, bool):
            tags[key] = str(value).lower()
        elif isinstance(value, int | float) or hasattr(value, "dtype"):
            metrics[key] = _finite(key, value, model)
        elif isinstance(value, str):
            tags[key] = value
    return metrics, tags, lineage


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
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


def _refuse_if_in_use(s: Session, model: ModelRow, row: VersionRow) -> None:
    """A version that an active A/B test or a deployment serves cannot be deleted."""
    ab = s.scalar(select(ABTestRow).where(
        ABTestRow.model_id == model.id, ABTestRow.status == "active",
        (ABTestRow.version_a == row.version) | (ABTestRow.version_b == row.version)))
    if ab is not None:
        raise RegistryError(
            f"Version {row.version} of {model.name!r} is in the active A/B test "
            f"{ab.version_a} vs {ab.version_b}.",
            fix="Set up a new A/B test without it first.", model=model.name, version=row.version)
    dep = s.scalar(select(DeploymentRow).where(
        DeploymentRow.model_id == model.id,
        (DeploymentRow.stable_version == row.version)
        | (DeploymentRow.candidate_version == row.version)))
    if dep is not None:
        raise RegistryError(
            f"Version {row.version} of {model.name!r} is deployed in {dep.environment!r}.",
            fix="Deploy another version or roll back first.", model=model.name,
            version=row.version)


def _example_rows(example: Any, model: LoadedModel, limit: int = 10) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of the input example as JSON-safe records (for smoke requests)."""
    from mlops.flavors.base import to_frame

    frame = to_frame(example, model.input_columns if not hasattr(example, "columns") else None)
    rows = frame.head(limit).to_dict("records")
    return [{str(k): _json_safe(v) for k, v in row.items()} for row in rows]
