"""Pipeline runs in the metadata store: every step's result, each one an audit event.

A step is written when it finishes, so a crash mid-pipeline leaves the finished steps on
record and the run ``running`` (the next run does not trust it: only ``passed`` gate
results are reused, keyed by model digest, data digest and the gate's settings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event, canonical_json
from mlops.store.schema import CIRunRow, CIStepRow

__all__ = ["RunStore", "cache_key"]


def cache_key(step: str, artifact_digest: str, data_digest: str, settings: Any) -> str:
    """What makes a gate result reusable: the same model bytes, data bytes and settings."""
    body = json.dumps([step, artifact_digest, data_digest, settings], sort_keys=True,
                      default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _subject(model: str, version: str | None) -> str:
    return f"model/{model}" + (f"/{version}" if version else "")


class RunStore:
    """Create runs, record steps, look up reusable results."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def start(self, model: str, artifact_digest: str, data_digest: str, policy: dict[str, Any]
              ) -> int:
        self.registry.require(Role.DEVELOPER, f"run the quality gates of {model}")
        policy_digest = hashlib.sha256(canonical_json(policy).encode()).hexdigest()
        with self.registry.context.store.write() as s:
            row = CIRunRow(model_name=model, artifact_digest=artifact_digest,
                           data_digest=data_digest, policy_digest=policy_digest,
                           status="running", report={}, created_by=self.registry.context.actor)
            s.add(row)
            s.flush()
            append_event(s, actor=self.registry.context.actor, action="ci.run.start",
                         subject=_subject(model, None),
                         payload={"run": row.id, "sha256": artifact_digest,
                                  "data_sha256": data_digest, "policy": policy})
            return row.id

    def record(self, run_id: int, model: str, version: str | None, step: str, status: str,
               result: dict[str, Any], *, key: str = "", attempts: int = 1,
               duration_s: float = 0.0) -> None:
        with self.registry.context.store.write() as s:
            s.add(CIStepRow(run_id=run_id, step=step, status=status, cache_key=key,
                            result=result, attempts=attempts, duration_s=duration_s))
            append_event(s, actor=self.registry.context.actor, action="ci.step",
                         subject=_subject(model, version),
                         payload={"run": run_id, "step": step, "status": status,
                                  "reason": result.get("reason", ""), "attempts": attempts})

    def mark_gates_passed(self, run_id: int, version: str, *, official: bool,
                          champion: str | None, policy: Mapping[str, Any]) -> None:
        """Record on the run that ``version`` passed every gate (read by the gated rule),
        under which policy (``policy``: ``policy_digest`` and ``approvals_required`` of an
        official run) and against which production version."""
        with self.registry.context.store.write() as s:
            row = s.get(CIRunRow, run_id)
            assert row is not None
            row.version = version
            row.report = {**dict(row.report or {}), "gates_passed": True,
                          "official_policy": official, "champion": champion, **policy}

    def cached(self, key: str) -> dict[str, Any] | None:
        """The newest passed result with this cache key, if any."""
        with self.registry.context.store.read() as s:
            row = s.scalar(select(CIStepRow).where(CIStepRow.cache_key == key,
                                                   CIStepRow.status == "passed")
                           .order_by(CIStepRow.id.desc()).limit(1))
            return None if row is None else dict(row.result)

    def finish(self, run_id: int, model: str, version: str | None, status: str,
               report: dict[str, Any]) -> None:
        with self.registry.context.store.write() as s:
            row = s.get(CIRunRow, run_id)
            assert row is not None
            row.status = status
            row.version = version
            row.report = report
            row.finished_at = datetime.now(UTC)
            append_event(s, actor=self.registry.context.actor, action="ci.run.finish",
                         subject=_subject(model, version),
                         payload={"run": run_id, "status": status, "version": version})

    def gates_passed(self, model: str, version: str) -> bool:
        """Did a pipeline run register this version with every gate passed?"""
        with self.registry.context.store.read() as s:
            reports = s.scalars(select(CIRunRow.report).where(
                CIRunRow.model_name == model, CIRunRow.version == version)).all()
            return any(bool(r.get("gates_passed")) for r in reports)

    def newest_per_version(self, versions: Mapping[str, Collection[str]]
                           ) -> dict[tuple[str, str], dict[str, Any]]:
        """The newest run of each of ``versions`` (model name -> version strings) that has
        one, in one query (the models page's last gate result per version); rows as
        :meth:`runs` gives them."""
        names = [m for m, vs in versions.items() if vs]
        wanted = {v for m in names for v in versions[m]}
        if not names:
            return {}
        with self.registry.context.store.read() as s:
            newest = (select(func.max(CIRunRow.id).label("id"))
                      .where(CIRunRow.model_name.in_(names), CIRunRow.version.in_(wanted))
                      .group_by(CIRunRow.model_name, CIRunRow.version).subquery())
            rows = s.scalars(select(CIRunRow).join(newest, newest.c.id == CIRunRow.id)).all()
            return {(r.model_name, str(r.version)): _row(r) for r in rows
                    if r.version in versions[r.model_name]}

    def runs(self, model: str, version: str | None = None, limit: int = 20
             ) -> list[dict[str, Any]]:
        with self.registry.context.store.read() as s:
            query = select(CIRunRow).where(CIRunRow.model_name == model)
            if version is not None:
                query = query.where(CIRunRow.version == version)
            rows = s.scalars(query.order_by(CIRunRow.id.desc()).limit(limit)).all()
            return [_row(r) for r in rows]


def _row(r: CIRunRow) -> dict[str, Any]:
    return {"run": r.id, "version": r.version, "status": r.status,
            "started_at": r.started_at.isoformat(), "report": r.report}
