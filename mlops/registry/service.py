"""The model registry: versions, stages, aliases, tags, metrics, lineage, search, loading.

Registration is :mod:`mlops.registry.registration`; the lookups and the loader every
package shares are :mod:`mlops.store.catalog`; this module is the facade and the changes
of existing versions.

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

import os
import secrets
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from mlops.config import Settings
from mlops.errors import InvalidVersion, RegistryError, VersionNotFound
from mlops.flavors.base import LoadedModel
from mlops.identity import Principal, Role
from mlops.registry.compile import compile_version
from mlops.registry.promotion import Verdict, check_serving_change, environment_for_stage
from mlops.registry.reference import (
    ProfileInfo,
    attach_profiles,
    compute_profiles,
    load_profile,
    profile_rows,
    put_profiles,
)
from mlops.registry.registration import check_tag, check_text, finite_metric, register_version
from mlops.registry.search import compile_clauses, parse_query
from mlops.registry.types import ABTest, ModelVersion, RegisteredModel
from mlops.registry.views import summaries, to_version, to_versions, utc
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
from mlops.store.catalog import (
    audit_subject,
    load_version,
    model_row,
    resolve_version,
    version_row,
)
from mlops.store.context import Context
from mlops.store.counters import ROUTING, bump_counter
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
from mlops.store.versions import normalize_stage, validate_alias, version_key

__all__ = ["ModelRegistry"]

class ModelRegistry:
    """Registered models and their versions, in the metadata and artifact stores.

    ``context`` (:class:`~mlops.store.context.Context`) is what other packages use: the
    settings, the two stores and who acts. ``settings``, ``store``, ``artifacts``,
    ``principal`` and ``actor`` read it, for callers of the Python API.
    """

    def __init__(self, settings: Settings | None = None, *, principal: Principal | None = None,
                 context: Context | None = None, **overrides: Any) -> None:
        self.context = context or Context.open(settings, principal=principal, **overrides)

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def store(self) -> MetadataStore:
        return self.context.store

    @property
    def artifacts(self) -> ArtifactStore:
        return self.context.artifacts

    @property
    def principal(self) -> Principal:
        """Who acts: the local user (single-user mode), or the holder of MLOPS_TOKEN / the
        request's token (team mode); every audit event names them."""
        return self.context.principal

    @property
    def actor(self) -> str:
        return self.context.actor

    def acting_as(self, principal: Principal) -> ModelRegistry:
        """This registry (same stores) acting for ``principal``: one per API request."""
        return ModelRegistry(context=self.context.acting_as(principal))

    def require(self, role: Role, action: str) -> None:
        """Raise unless the acting principal holds ``role`` (see :mod:`mlops.identity`)."""
        self.context.require(role, action)

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
        tracking_uri: str | None = None,
        compile: str | None = None,
    ) -> ModelVersion:
        """Register a model file (``path``) or an in-memory ``model`` as a new version.

        ``path`` may be an MLflow model directory (a folder with ``MLmodel``) or a
        ``models:/NAME/VERSION`` / ``models:/NAME@alias`` URI on the MLflow server at
        ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``); see :mod:`mlops.flavors.mlflow_model`.

        The version is ``version`` when given (validated, must be new), otherwise the
        highest existing version bumped by ``bump`` (``patch``/``minor``/``major``).
        Numeric ``metadata`` values become metrics; ``training_data``, ``params``,
        ``parent_version``, ``git_commit`` and ``mlflow_run_id`` become lineage; other
        text values become tags. ``reference`` (or else ``training_frame``) is profiled once
        for drift monitoring (see :mod:`mlops.registry.reference`). ``compile="onnx"``
        also stores a compiled runtime (see :meth:`compile`), checked on the example,
        reference and training rows; an inexact one refuses the registration.
        """
        return register_version(
            self.context, name, path, model=model, version=version, bump=bump,
            metadata=metadata, metrics=metrics, tags=tags, description=description,
            input_example=input_example, training_frame=training_frame, reference=reference,
            training_data=training_data, params=params, parent_version=parent_version,
            mlflow_run_id=mlflow_run_id, trust=trust, tracking_uri=tracking_uri,
            compile=compile)

    def register_model(self, model_name: str, model_path: str | os.PathLike[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Seed API: register and return the new version string."""
        return self.register(model_name, model_path, metadata=metadata, **kwargs).version

    # ------------------------------------------------------------------ read
    def get_version(self, name: str, version: str | None = None, *, stage: str | None = None,
                    alias: str | None = None) -> ModelVersion:
        """One version by number, stage, alias, or the latest (``version=None``)."""
        with self.store.read() as s:
            return to_version(s, resolve_version(s, name, version, stage, alias), name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self.store.read() as s:
            model = model_row(s, name)
            rows = s.scalars(select(VersionRow).where(VersionRow.model_id == model.id)).all()
            out = to_versions(s, [(r, name) for r in rows])
        return sorted(out, key=lambda v: version_key(v.version))

    def notable_versions(self, newest: int = 5,
                         also: Mapping[str, Collection[str]] | None = None
                         ) -> dict[str, list[ModelVersion]]:
        """Per model (keyed by name, oldest first): its ``newest`` newest versions, every
        version in Staging or Production or with an alias, and the versions ``also`` names
        (e.g. those a route serves). Reads only those versions in full, so an overview costs
        the same with 20 versions a model as with 2,000."""
        also = also or {}
        with self.store.read() as s:
            aliased = set(s.scalars(select(AliasRow.version_id)))
            listed: dict[str, list[tuple[str, str, int]]] = {}
            for name, version, stage, vid in s.execute(
                    select(ModelRow.name, VersionRow.version, VersionRow.stage, VersionRow.id)
                    .join(ModelRow, VersionRow.model_id == ModelRow.id)):
                listed.setdefault(name, []).append((version, stage, vid))
            wanted: list[int] = []
            for name, versions in listed.items():
                versions.sort(key=lambda t: version_key(t[0]))
                named = set(also.get(name, ()))
                wanted += [vid for i, (version, stage, vid) in enumerate(versions)
                           if i >= len(versions) - newest or stage in ("Staging", "Production")
                           or vid in aliased or version in named]
            rows = s.execute(select(VersionRow, ModelRow.name)
                             .join(ModelRow, VersionRow.model_id == ModelRow.id)
                             .where(VersionRow.id.in_(wanted))).all() if wanted else []
            versions_out = to_versions(s, [(row, name) for row, name in rows])
        out: dict[str, list[ModelVersion]] = {}
        for mv in sorted(versions_out, key=lambda v: version_key(v.version)):
            out.setdefault(mv.model, []).append(mv)
        return out

    def get_model(self, name: str) -> RegisteredModel:
        with self.store.read() as s:
            return summaries(s, [model_row(s, name)])[0]

    def list_models(self) -> list[RegisteredModel]:
        with self.store.read() as s:
            return summaries(s, list(s.scalars(select(ModelRow).order_by(ModelRow.name))))

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
            return to_versions(s, [(row, name) for row, name in rows])

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
            model = model_row(s, name)
            row = version_row(s, model, version)
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
                         subject=audit_subject(name, row.version),
                         payload={"from": previous, "to": target, "archived": archived,
                                  "reason": reason,
                                  **(verdict.payload() if verdict is not None else {})})
            s.flush()
            return to_version(s, row, name)

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
            model = model_row(s, name)
            row = version_row(s, model, version)
            current = s.get(AliasRow, (model.id, alias))
            before = None
            if current is None:
                s.add(AliasRow(model_id=model.id, alias=alias, version_id=row.id))
            else:
                old = s.get(VersionRow, current.version_id)
                before = old.version if old else None
                current.version_id = row.id
            append_event(s, actor=self.actor, action="alias.set", subject=audit_subject(name),
                         payload={"alias": alias, "from": before, "to": row.version})
            s.flush()
            return to_version(s, row, name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.require(Role.DEVELOPER, f"delete the {alias!r} alias of {name}")
        with self.store.write() as s:
            model = model_row(s, name)
            current = s.get(AliasRow, (model.id, alias))
            if current is None:
                raise VersionNotFound(f"Model {name!r} has no alias {alias!r}.",
                                      fix="List aliases with `mlops models show NAME`.",
                                      model=name)
            old = s.get(VersionRow, current.version_id)
            s.delete(current)
            append_event(s, actor=self.actor, action="alias.delete", subject=audit_subject(name),
                         payload={"alias": alias, "from": old.version if old else None})

    def set_tag(self, name: str, key: str, value: str, version: str | None = None) -> None:
        """Tag a version, or the model itself when ``version`` is None."""
        check_tag(key, str(value), name)
        self.require(Role.DEVELOPER, f"tag {name}")
        with self.store.write() as s:
            model = model_row(s, name)
            if version is None:
                s.merge(ModelTagRow(model_id=model.id, key=key, value=str(value)))
                subject = audit_subject(name)
            else:
                row = version_row(s, model, version)
                s.merge(VersionTagRow(version_id=row.id, key=key, value=str(value)))
                subject = audit_subject(name, row.version)
            append_event(s, actor=self.actor, action="tag.set", subject=subject,
                         payload={"key": key, "value": str(value)})

    def delete_tag(self, name: str, key: str, version: str | None = None) -> None:
        self.require(Role.DEVELOPER, f"delete a tag of {name}")
        with self.store.write() as s:
            model = model_row(s, name)
            if version is None:
                result = s.execute(delete(ModelTagRow).where(ModelTagRow.model_id == model.id,
                                                             ModelTagRow.key == key))
                subject = audit_subject(name)
            else:
                row = version_row(s, model, version)
                result = s.execute(delete(VersionTagRow).where(VersionTagRow.version_id == row.id,
                                                               VersionTagRow.key == key))
                subject = audit_subject(name, row.version)
            if not cast(CursorResult[Any], result).rowcount:
                raise RegistryError(f"{subject} has no tag {key!r}.",
                                    fix="List tags with `mlops models show`.", model=name)
            append_event(s, actor=self.actor, action="tag.delete", subject=subject,
                         payload={"key": key})

    def log_metrics(self, name: str, version: str, metrics: Mapping[str, float]) -> None:
        """Add or overwrite metrics of a version (e.g. evaluated after registration)."""
        clean = {k: finite_metric(k, v, name) for k, v in metrics.items()}
        self.require(Role.DEVELOPER, f"log metrics of {name}")
        with self.store.write() as s:
            row = version_row(s, model_row(s, name), version)
            for k, v in clean.items():
                s.merge(MetricRow(version_id=row.id, key=k, value=v))
            append_event(s, actor=self.actor, action="metrics.log",
                         subject=audit_subject(name, row.version), payload={"metrics": clean})

    def set_reference(self, name: str, version: str, data: Any, *, source: str = "",
                      ) -> list[ProfileInfo]:
        """Profile ``data`` (model inputs) as the version's reference, replacing any before."""
        self.require(Role.DEVELOPER, f"set the reference data of {name}")
        mv = self.get_version(name, version)
        loaded = self.load_model(name, mv.version)
        stored = put_profiles(self.artifacts, compute_profiles(data, loaded, model_name=name))
        with self.store.write() as s:
            row = resolve_version(s, name, mv.version)
            attach_profiles(s, row, stored, source or "set_reference")
            append_event(s, actor=self.actor, action="version.reference",
                         subject=audit_subject(name, mv.version),
                         payload={"profiles": {p.kind: p.digest for p in stored},
                                  "n_rows": stored[0].n_rows, "source": source})
            s.flush()
            return profile_rows(s, row)

    def reference_profile(self, name: str, version: str | None = None, kind: str = "features",
                          ) -> ReferenceProfile:
        """The stored reference profile of a version (default: the newest version)."""
        with self.store.read() as s:
            row = resolve_version(s, name, version)
            return load_profile(s, self.artifacts, row, kind, model_name=name)

    def reference_profiles(self, name: str, version: str | None = None) -> list[ProfileInfo]:
        """Summaries of the profiles stored for a version."""
        with self.store.read() as s:
            return profile_rows(s, resolve_version(s, name, version))

    def set_description(self, name: str, description: str, version: str | None = None) -> None:
        self.require(Role.DEVELOPER, f"describe {name}")
        check_text("description", description, name)
        with self.store.write() as s:
            model = model_row(s, name)
            if version is None:
                model.description = description
                subject = audit_subject(name)
            else:
                row = version_row(s, model, version)
                row.description = description
                subject = audit_subject(name, row.version)
            append_event(s, actor=self.actor, action="description.set", subject=subject,
                         payload={"description": description})

    def delete_version(self, name: str, version: str) -> None:
        """Delete a version's metadata (its artifact blob stays; blobs are shared by digest)."""
        self.require(Role.ADMIN, f"delete {name} {version}")
        with self.store.write() as s:
            model = model_row(s, name)
            row = version_row(s, model, version)
            _refuse_if_in_use(s, model, row)
            payload = {"sha256": row.artifact_digest, "stage": row.stage}
            s.execute(delete(AliasRow).where(AliasRow.version_id == row.id))
            s.execute(delete(MetricRow).where(MetricRow.version_id == row.id))
            s.execute(delete(VersionTagRow).where(VersionTagRow.version_id == row.id))
            s.delete(row)
            append_event(s, actor=self.actor, action="version.delete",
                         subject=audit_subject(name, row.version), payload=payload)

    def delete_model(self, name: str) -> None:
        self.require(Role.ADMIN, f"delete the model {name} and its deployments")
        with self.store.write() as s:
            model = model_row(s, name)
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
            append_event(s, actor=self.actor, action="model.delete", subject=audit_subject(name),
                         payload={"versions": len(ids)})

    # ------------------------------------------------------------------ load, compile
    def load_model(self, name: str, version: str | None = None, *, stage: str | None = None,
                   alias: str | None = None, trust: bool = False,
                   runtime: str = "original") -> LoadedModel:
        """Load a version as a uniform predictor, verifying its digest and scanning it again.

        An unsafe pickle loads only when the version was registered with ``trust=True`` or
        ``trust=True`` is passed here (recorded in the audit log). ``runtime`` picks a
        compiled runtime (``onnx``), or ``auto`` for what the gateway serves.
        """
        return load_version(self.context, name, version, stage=stage, alias=alias,
                            trust=trust, runtime=runtime).model

    def compile(self, name: str, version: str, *, to: str = "onnx", data: Any = None,
                rtol: float | None = None, atol: float | None = None) -> ModelVersion:
        """Compile a version to ONNX and store it as an alternate runtime of the same
        version, after checking it equal to the original on the stored input example and
        ``data`` (held-out rows); see :mod:`mlops.registry.compile`. Approver for a
        version production serves or has served."""
        return compile_version(self.context, name, version, to=to, data=data, rtol=rtol,
                               atol=atol)

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
            model = model_row(s, model_name)
            a = version_row(s, model, version_a)
            b = version_row(s, model, version_b)
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
            append_event(s, actor=self.actor, action="abtest.setup", subject=audit_subject(model_name),
                         payload={"id": row.id, "version_a": a.version, "version_b": b.version,
                                  "traffic_split": float(traffic_split), "salt": row.salt})
            return ABTest(row.id, model_name, a.version, b.version, row.traffic_split, row.salt,
                          row.status, utc(row.created_at))

    def active_ab_test(self, model_name: str) -> ABTest | None:
        with self.store.read() as s:
            model = model_row(s, model_name)
            row = s.scalar(select(ABTestRow).where(ABTestRow.model_id == model.id,
                                                   ABTestRow.status == "active")
                           .order_by(ABTestRow.id.desc()))
            if row is None:
                return None
            return ABTest(row.id, model_name, row.version_a, row.version_b, row.traffic_split,
                          row.salt, row.status, utc(row.created_at))

    # ------------------------------------------------------------------ audit
    def audit_log(self, subject: str | None = None, action: str | None = None,
                  limit: int | None = 100, since: datetime | None = None,
                  until: datetime | None = None) -> list[AuditEvent]:
        """Audit events, newest first (see :func:`~mlops.store.audit.list_events`)."""
        with self.store.read() as s:
            return list_events(s, subject=subject, action=action, limit=limit, since=since,
                               until=until)

    def verify_audit(self, checkpoint: str | None = None) -> VerifyResult:
        """Replay the audit chain; ``checkpoint`` is ``COUNT:HEAD`` kept elsewhere."""
        against = parse_checkpoint(checkpoint) if checkpoint else None
        with self.store.read() as s:
            return verify_chain(s, against=against)

    def count_versions(self) -> int:
        with self.store.read() as s:
            return int(s.scalar(select(func.count()).select_from(VersionRow)) or 0)


# ---------------------------------------------------------------------- module helpers
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
