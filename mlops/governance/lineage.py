"""The lineage graph of a model version, from what the platform recorded.

dataset (path, SHA-256) → training run (params, git commit, MLflow run id, parent version)
→ the version → its CI gate runs, its rollouts (with their analyses) and other serving
changes, the alerts raised while it served, and the versions trained from it (whose
``parent_version`` names it), each followed the same way. Every node names the audit
event that recorded it (``audit``: its sequence number in the hash chain).

Rendering (a terminal tree, Graphviz DOT) belongs to the presentation layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops.ci.runs import RunStore
from mlops.deployment.rollouts import RolloutManager
from mlops.monitoring.alerts import AlertManager
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion
from mlops.store.audit import AuditEvent
from mlops.store.retrain import RetrainJob, job_subject, list_jobs

__all__ = ["LineageNode", "track_lineage"]

_MAX_DEPTH = 20  # versions trained from versions trained from ... (a cycle cannot form)


@dataclass
class LineageNode:
    """One node: its kind, a short label, its attributes, the audit event that recorded it
    (sequence number and hash prefix) and the nodes that follow from it."""

    id: str
    kind: str  # dataset, training_run, version, ci_run, rollout, serving, alert
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)
    audit: int | None = None
    audit_hash: str | None = None
    children: list[LineageNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "attrs": self.attrs,
                "audit": self.audit, "audit_hash": self.audit_hash,
                "children": [c.to_dict() for c in self.children]}

    def walk(self) -> list[LineageNode]:
        """This node and every node under it, depth first."""
        out = [self]
        for child in self.children:
            out += child.walk()
        return out


class _Graph:
    def __init__(self, registry: ModelRegistry, name: str) -> None:
        self.registry, self.name = registry, name
        events = list(reversed(registry.audit_log(subject=f"model/{name}", limit=100_000)))
        self.events = events
        self.versions = registry.list_versions(name)
        with registry.store.read() as s:
            self.jobs = list_jobs(s, name, limit=10_000)

    def first(self, action: str, subject: str, **payload: Any) -> AuditEvent | None:
        for e in self.events:
            if e.action == action and e.subject == subject and all(
                    e.payload.get(k) == v for k, v in payload.items()):
                return e
        return None

    def node(self, node_id: str, kind: str, label: str, attrs: dict[str, Any],
             event: AuditEvent | None) -> LineageNode:
        return LineageNode(node_id, kind, label, {k: v for k, v in attrs.items()
                                                  if v not in (None, "", [], {})},
                           event.seq if event else None, event.hash[:16] if event else None)

    def version_node(self, mv: ModelVersion, depth: int) -> LineageNode:
        subject = f"model/{self.name}/{mv.version}"
        node = self.node(f"version:{mv.version}", "version", f"{self.name} {mv.version}",
                         {"sha256": mv.artifact_digest, "flavor": mv.flavor, "stage": mv.stage,
                          "registered_by": mv.created_by,
                          "registered_at": mv.created_at.isoformat(),
                          "runtimes": sorted(mv.runtimes)},
                         self.first("version.register", subject))
        for run in reversed(RunStore(self.registry).runs(self.name, mv.version, limit=100)):
            report = run.get("report") or {}
            gates = {s["gate"]["gate"]: s["gate"].get("passed") for s in report.get("steps", [])
                     if isinstance(s.get("gate"), dict) and not s["gate"].get("skipped")}
            node.children.append(self.node(
                f"ci_run:{run['run']}", "ci_run", f"CI run #{run['run']} {run['status']}",
                {"started_at": run["started_at"], "gates": gates,
                 "policy_digest": report.get("policy_digest")},
                self.first("ci.run.finish", subject, run=run["run"])))
        env_subject = f"model/{self.name}/env/"
        for rollout in RolloutManager(self.registry).history(self.name, mv.version):
            event = self.first("rollout.start", env_subject + rollout.environment,
                               rollout=rollout.id)
            role = "candidate" if rollout.candidate == mv.version else "stable"
            rnode = self.node(
                f"rollout:{rollout.id}", "rollout",
                f"rollout #{rollout.id} {rollout.strategy} in {rollout.environment} "
                f"({role}): {rollout.state.value}",
                {"stable": rollout.stable, "candidate": rollout.candidate,
                 "started_at": rollout.started_at.isoformat(), "reason": rollout.reason},
                event)
            for i, analysis in enumerate(rollout.analyses):
                rnode.children.append(self.node(
                    f"rollout:{rollout.id}:analysis:{i}", "analysis",
                    f"analysis at step {analysis.get('step')}: {analysis.get('outcome')}",
                    {k: v for k, v in analysis.items() if k in ("at", "reason", "decision",
                                                                 "p_value", "samples")},
                    None))
            node.children.append(rnode)
        for e in self.events:  # serving changes outside rollouts: stages, direct routes
            if e.action == "version.stage" and e.subject == subject:
                node.children.append(self.node(
                    f"audit:{e.seq}", "serving",
                    f"stage {e.payload.get('from')} -> {e.payload.get('to')}",
                    {"at": e.ts, "by": e.actor, "reason": e.payload.get("reason")}, e))
        for alert in AlertManager(self.registry).alerts(self.name, limit=1000):
            if alert.version != mv.version:
                continue
            fired = self.first("alert.fire", f"model/{self.name}/env/{alert.environment}",
                               alert=alert.id)
            node.children.append(self.node(
                f"alert:{alert.id}", "alert",
                f"alert {alert.rule} ({alert.severity}) in {alert.environment}: {alert.state}",
                {"metric": alert.metric, "value": alert.value, "threshold": alert.threshold,
                 "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
                 "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None},
                fired))
        for job in self.jobs:  # retraining jobs that produced no version, from this one
            if (job.outcome.get("data") or {}).get("production_version") == mv.version \
                    and not job.outcome.get("version"):
                node.children.append(self.job_node(job))
        if depth < _MAX_DEPTH:
            for child in self.versions:
                if child.lineage.parent_version == mv.version and child.version != mv.version:
                    # version -> retraining job -> its data -> next version (chain)
                    node.children.append(self.chain(child, depth + 1))
        return node

    def job_node(self, job: RetrainJob) -> LineageNode:
        reasons = "; ".join(str(r.get("reason", "")) for r in job.reasons)
        return self.node(
            f"retrain_job:{job.id}", "retrain_job",
            f"retraining job #{job.id} {job.state.value}: {reasons[:120]}",
            {"triggers": sorted({str(r.get("trigger")) for r in job.reasons}),
             "created_at": job.created_at.isoformat(), "wall_seconds": job.wall_seconds,
             "error": job.outcome.get("error")},
            self.first("retrain.job.queue", job_subject(self.name, job.id)))

    def chain(self, mv: ModelVersion, depth: int = 0) -> LineageNode:
        """dataset → training run → version (the first two when recorded)."""
        lineage = mv.lineage
        register = self.first("version.register", f"model/{self.name}/{mv.version}")
        vnode = self.version_node(mv, depth)
        run_attrs = {"params": lineage.params, "git_commit": lineage.git_commit,
                     "git_dirty": lineage.git_dirty, "mlflow_run_id": lineage.mlflow_run_id,
                     "parent_version": lineage.parent_version}
        top = vnode
        if any(v not in (None, "", {}, False) for v in run_attrs.values()):
            label = "training run" + (f" {lineage.git_commit[:12]}" if lineage.git_commit
                                      else "") + (f" (MLflow run {lineage.mlflow_run_id})"
                                                  if lineage.mlflow_run_id else "")
            top = self.node(f"training_run:{mv.version}", "training_run", label, run_attrs,
                            register)
            top.children.append(vnode)
        if lineage.training_data:
            data = self.node(f"dataset:{lineage.training_data_sha256 or lineage.training_data}",
                             "dataset", f"dataset {lineage.training_data}",
                             {"path": lineage.training_data,
                              "sha256": lineage.training_data_sha256}, register)
            data.children.append(top)
            top = data
        made_by = next((j for j in self.jobs
                        if str(j.id) == mv.tags.get("retrain.job")), None)
        if made_by is not None:  # a retrained version: its job (and reasons) come first
            job = self.job_node(made_by)
            job.children.append(top)
            top = job
        return top


def track_lineage(registry: ModelRegistry, name: str, version: str) -> LineageNode:
    """The lineage tree of ``name`` ``version`` (a number, alias or stage): rooted at its
    training data when recorded, then its training run, then the version and everything
    that followed from it."""
    mv = registry.get_version(name, version)
    return _Graph(registry, name).chain(mv)
