"""Model cards generated from what the platform recorded, never invented.

:func:`build_card` reads one version's evidence: the registry (details, signature, lineage,
tags), CI runs (gates with their thresholds, slices, fairness, permutation importance), the
audit chain (registration, approvals, stage changes, routes, rollouts), monitoring
(snapshots and alerts) and the routing table. Each section of the card (the sections of
Google's Model Card Toolkit and Hugging Face's cards) is *present* with its content and the
audit events it rests on, or *missing* with what is missing and the command that would
supply it. The statements only people can make (intended use, out-of-scope use,
limitations) are version tags (``card.intended_use``, ``card.out_of_scope``,
``card.limitations``), set at registration (``-m card.intended_use=...``) or later with
``mlops models tag``, both audited. The business impact and cost section (not required)
shows the model's KPIs (:mod:`mlops.governance.impact`) and the version's measured cost per
1,000 predictions.

Rendering (Markdown, HTML) belongs to the presentation layer (:mod:`mlops.ui.card`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mlops.ci.approvals import decisions, required_approvals
from mlops.ci.runs import RunStore
from mlops.deployment.routes import RoutingService
from mlops.errors import MlopsError
from mlops.governance.impact import cost_report, kpi_report
from mlops.governance.memo import memoized
from mlops.monitoring.alerts import AlertManager
from mlops.monitoring.snapshots import latest_snapshots
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion
from mlops.store.audit import AuditEvent

__all__ = ["CARD_TAGS", "REQUIRED_SECTIONS", "CardSection", "ModelCard", "SectionStatus",
           "build_card"]

#: the version tags that hold what only people can state
CARD_TAGS = {"intended_use": "card.intended_use", "out_of_scope": "card.out_of_scope",
             "limitations": "card.limitations", "primary_users": "card.primary_users"}
#: the sections ``mlops card --require`` demands
REQUIRED_SECTIONS = ("model_details", "intended_use", "training_data", "evaluation",
                     "limitations", "approvals")
_HEALTH_METRICS = ("health", "accuracy", "error_rate", "latency_p99_ms", "drift_share",
                   "label_coverage", "n_predictions")


class SectionStatus(StrEnum):
    PRESENT = "present"
    MISSING = "missing"


@dataclass(frozen=True)
class CardSection:
    """One section: its content and evidence (audit event sequence numbers, CI run ids),
    or, when missing, what is missing and the command that supplies it."""

    key: str
    title: str
    status: SectionStatus
    content: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    missing: str = ""
    supply: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "title": self.title,
                               "status": self.status.value, "content": self.content,
                               "evidence": self.evidence}
        if self.status is SectionStatus.MISSING:
            out.update(missing=self.missing, supply=self.supply)
        return out


@dataclass(frozen=True)
class ModelCard:
    model: str
    version: str
    generated_at: str
    sections: list[CardSection]

    def section(self, key: str) -> CardSection:
        return next(s for s in self.sections if s.key == key)

    def missing(self, keys: tuple[str, ...] | None = None) -> list[CardSection]:
        """Missing sections (among ``keys``, when given), in card order."""
        return [s for s in self.sections if s.status is SectionStatus.MISSING
                and (keys is None or s.key in keys)]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version,
                "generated_at": self.generated_at,
                "sections": [s.to_dict() for s in self.sections],
                "missing": [s.key for s in self.missing()],
                "missing_required": [s.key for s in self.missing(REQUIRED_SECTIONS)]}


def _ref(event: AuditEvent) -> str:
    return f"audit #{event.seq} {event.action} ({event.hash[:12]})"


def _present(key: str, title: str, content: dict[str, Any], evidence: list[str] | None = None
             ) -> CardSection:
    return CardSection(key, title, SectionStatus.PRESENT, content, evidence or [])


def _missing(key: str, title: str, missing: str, supply: str,
             content: dict[str, Any] | None = None, evidence: list[str] | None = None
             ) -> CardSection:
    return CardSection(key, title, SectionStatus.MISSING, content or {}, evidence or [],
                       missing, supply)


@dataclass
class _Evidence:
    """What one card reads, fetched once."""

    registry: ModelRegistry
    mv: ModelVersion
    events: list[AuditEvent]  # the model's audit events, oldest first
    runs: list[dict[str, Any]]  # CI runs of this version, newest first

    @property
    def name(self) -> str:
        return self.mv.model

    def version_events(self, action: str) -> list[AuditEvent]:
        subject = f"model/{self.name}/{self.mv.version}"
        return [e for e in self.events if e.subject == subject and e.action == action]

    def gate(self, gate: str, *, tables: bool = False) -> tuple[dict[str, Any], int] | None:
        """The newest result of ``gate`` for this version, and its CI run id; with
        ``tables``, also a gate that judged nothing (no threshold) but measured its table."""
        for run in self.runs:
            for step in (run.get("report") or {}).get("steps", []):
                result = step.get("gate")
                if isinstance(result, dict) and result.get("gate") == gate and (
                        not result.get("skipped")
                        or (tables and (result.get("details") or {}).get("slices"))):
                    return result, run["run"]
        return None


@memoized
def build_card(registry: ModelRegistry, name: str, version: str) -> ModelCard:
    """The card of ``name`` ``version`` (a number, alias or stage) from recorded evidence."""
    mv = registry.get_version(name, version)
    events = list(reversed(registry.audit_log(subject=f"model/{name}", limit=100_000)))
    runs = RunStore(registry).runs(name, mv.version, limit=50)
    ev = _Evidence(registry, mv, events, runs)
    sections = [_details(ev), _intended_use(ev), _training_data(ev), _evaluation(ev),
                _slices_fairness(ev), _explainability(ev), _limitations(ev),
                _monitoring(ev), _approvals(ev), _deployments(ev), _business_impact(ev)]
    return ModelCard(name, mv.version, datetime.now(UTC).isoformat(timespec="seconds"),
                     sections)


# ---------------------------------------------------------------------- sections
def _details(ev: _Evidence) -> CardSection:
    mv = ev.mv
    sig = mv.signature
    content: dict[str, Any] = {
        "name": mv.model, "version": mv.version, "flavor": mv.flavor, "format": mv.format,
        "stage": mv.stage, "aliases": mv.aliases, "description": mv.description or None,
        "registered_by": mv.created_by, "registered_at": mv.created_at.isoformat(),
        "artifact": {"name": mv.artifact_name, "sha256": mv.artifact_digest,
                     "size": mv.artifact_size},
        "trusted_override": mv.trusted,
        "inputs": [{"name": c.name, "dtype": c.dtype, "nullable": c.nullable}
                   for c in sig.inputs] if sig else None,
        "outputs": [{"name": c.name, "dtype": c.dtype} for c in sig.outputs] if sig else None,
        "classes": sig.classes if sig else None,
        "input_example": (mv.input_example or [])[:3] or None,
        "runtimes": {k: {"format": r.get("format"), "sha256": r.get("digest"),
                         "max_abs_diff": r.get("max_abs_diff"),
                         "labels_identical": r.get("labels_identical")}
                     for k, r in mv.runtimes.items()},
        "tags": {k: v for k, v in mv.tags.items() if not k.startswith("card.")},
    }
    refs = [_ref(e) for e in ev.version_events("version.register")]
    return _present("model_details", "Model details", content, refs)


def _tag_refs(ev: _Evidence, tag: str) -> list[str]:
    """The registration (tags given there) and the later tag changes of ``tag``."""
    refs = [_ref(e) for e in ev.version_events("version.register")
            if tag in (e.payload.get("tags") or {})]
    refs += [_ref(e) for e in ev.version_events("tag.set") if e.payload.get("key") == tag]
    return refs


def _tag_supply(ev: _Evidence, key: str, example: str) -> str:
    return (f'mlops models tag {ev.name} {CARD_TAGS[key]}="{example}" '
            f"--version {ev.mv.version}")


def _intended_use(ev: _Evidence) -> CardSection:
    tags = ev.mv.tags
    use, users = tags.get(CARD_TAGS["intended_use"]), tags.get(CARD_TAGS["primary_users"])
    out = tags.get(CARD_TAGS["out_of_scope"])
    content = {"intended_use": use, "primary_users": users, "out_of_scope_uses": out}
    refs = [r for key in ("intended_use", "primary_users", "out_of_scope")
            for r in _tag_refs(ev, CARD_TAGS[key])]
    if not use:
        return _missing("intended_use", "Intended use", "No intended use was stated.",
                        _tag_supply(ev, "intended_use", "what it is for, and for whom"),
                        content, refs)
    return _present("intended_use", "Intended use", content, refs)


def _training_data(ev: _Evidence) -> CardSection:
    lineage = ev.mv.lineage
    profiles = [{"kind": p.kind, "source": p.source, "rows": p.n_rows,
                 "columns": len(p.columns)} for p in ev.registry.reference_profiles(
                     ev.name, ev.mv.version)]
    content = {"dataset": lineage.training_data, "sha256": lineage.training_data_sha256,
               "git_commit": lineage.git_commit, "git_dirty": lineage.git_dirty,
               "params": lineage.params or None, "mlflow_run_id": lineage.mlflow_run_id,
               "parent_version": lineage.parent_version, "profiles": profiles}
    refs = [_ref(e) for e in ev.version_events("version.register")]
    if not lineage.training_data or not lineage.training_data_sha256:
        what = "No training data was recorded." if not lineage.training_data else \
            f"The training data {lineage.training_data!r} has no recorded SHA-256 (it was " \
            "not a file when the version was registered)."
        return _missing("training_data", "Training data", what,
                        f"register the next version with -m training_data=PATH (a file): "
                        f"mlops models register MODEL_FILE --name {ev.name} "
                        "-m training_data=data/train.csv", content, refs)
    return _present("training_data", "Training data", content, refs)


def _gate_row(result: dict[str, Any]) -> dict[str, Any]:
    return {"gate": result.get("gate"), "passed": result.get("passed"),
            "actual": result.get("actual"), "threshold": result.get("threshold"),
            "reason": result.get("reason") or None}


def _evaluation(ev: _Evidence) -> CardSection:
    if not ev.runs:
        return _missing("evaluation", "Evaluation", "No CI gate run evaluated this version.",
                        f"mlops ci gates {ev.name} {ev.mv.version} --test-data TEST_FILE",
                        {"registered_metrics": ev.mv.metrics or None})
    run = next((r for r in ev.runs if r["status"] in ("passed", "awaiting_approval")),
               ev.runs[0])
    report = run.get("report") or {}
    gates = [_gate_row(step["gate"]) for step in report.get("steps", [])
             if isinstance(step.get("gate"), dict) and not step["gate"].get("skipped")]
    content = {"run": run["run"], "status": run["status"], "started_at": run["started_at"],
               "policy": (report.get("policy") or {}).get("tier"),
               "policy_digest": report.get("policy_digest"),
               "data_sha256": (report.get("data") or {}).get("sha256")
               if isinstance(report.get("data"), dict) else None,
               "gates": gates, "registered_metrics": ev.mv.metrics or None,
               "runs": len(ev.runs)}
    refs = [f"ci run #{run['run']}"] + [
        _ref(e) for e in ev.version_events("ci.run.finish")
        if e.payload.get("run") == run["run"]]
    if not gates:
        return _missing("evaluation", "Evaluation", f"CI run #{run['run']} ran no gates.",
                        f"mlops ci gates {ev.name} {ev.mv.version} --test-data TEST_FILE",
                        content, refs)
    return _present("evaluation", "Evaluation", content, refs)


def _slices_fairness(ev: _Evidence) -> CardSection:
    content: dict[str, Any] = {}
    refs: list[str] = []
    slices = ev.gate("slices", tables=True)
    if slices is not None:
        details = slices[0].get("details") or {}
        content["slices"] = {"metric": details.get("metric"), "overall": details.get("overall"),
                             "rows": details.get("slices") or [],
                             "judged": not slices[0].get("skipped"),
                             "passed": slices[0].get("passed")}
        refs.append(f"ci run #{slices[1]}")
    fairness = ev.gate("fairness")
    if fairness is not None:
        details = fairness[0].get("details") or {}
        content["fairness"] = {"actual": fairness[0].get("actual"),
                               "threshold": fairness[0].get("threshold"),
                               "features": details.get("features") or {},
                               "passed": fairness[0].get("passed")}
        refs.append(f"ci run #{fairness[1]}")
    if not content:
        return _missing("slices_fairness", "Slices and fairness",
                        "No slice or fairness gate evaluated this version.",
                        "add `slices:` and `fairness:` gates (with sensitive_features) to the "
                        f"model's policy, then: mlops ci gates {ev.name} {ev.mv.version} "
                        "--test-data TEST_FILE")
    return _present("slices_fairness", "Slices and fairness", content, sorted(set(refs)))


def _explainability(ev: _Evidence) -> CardSection:
    found = ev.gate("explainability")
    if found is None:
        return _missing("explainability", "Explainability",
                        "No permutation importance was computed for this version.",
                        "add an `explainability:` gate to the model's policy, then: mlops ci "
                        f"gates {ev.name} {ev.mv.version} --test-data TEST_FILE")
    result, run = found
    details = result.get("details") or {}
    content = {"method": "permutation importance", "scoring": details.get("scoring"),
               "baseline_score": details.get("baseline_score"),
               "n_repeats": details.get("n_repeats"), "stability": details.get("stability"),
               "importances": [{k: i.get(k) for k in ("rank", "feature", "importance_mean",
                                                      "importance_std")}
                               for i in details.get("importances") or []][:20]}
    return _present("explainability", "Explainability", content, [f"ci run #{run}"])


def _limitations(ev: _Evidence) -> CardSection:
    stated = ev.mv.tags.get(CARD_TAGS["limitations"])
    # facts the platform knows that a reader should weigh
    caveats: list[str] = []
    if ev.mv.trusted:
        caveats.append("The model file was registered with a trust override: it did not pass "
                       "the allow list, and its loading runs code.")
    if ev.mv.signature is None:
        caveats.append("No input signature: requests are not checked against named columns.")
    if ev.mv.lineage.git_dirty:
        caveats.append("Registered from a git working tree with uncommitted changes.")
    failed = [g["gate"] for g in (_gate_row(s["gate"]) for r in ev.runs[:1]
                                  for s in (r.get("report") or {}).get("steps", [])
                                  if isinstance(s.get("gate"), dict)) if g["passed"] is False]
    if failed:
        caveats.append(f"The latest CI run failed these gates: {', '.join(failed)}.")
    content = {"stated": stated, "recorded_caveats": caveats}
    refs = _tag_refs(ev, CARD_TAGS["limitations"])
    if not stated:
        return _missing("limitations", "Limitations", "No limitations were stated.",
                        _tag_supply(ev, "limitations", "where it is known to fail"),
                        content, refs)
    return _present("limitations", "Limitations", content, refs)


def _monitoring(ev: _Evidence) -> CardSection:
    routing = RoutingService(ev.registry)
    envs = []
    for env in ev.registry.settings.environments:
        spec = routing.served(ev.name, env)
        if spec is not None and ev.mv.version in (spec.stable, spec.candidate):
            snaps = latest_snapshots(ev.registry, ev.name, environment=env)
            envs.append({"environment": env,
                         "role": "stable" if spec.stable == ev.mv.version else "candidate",
                         "metrics": {m: {"value": snaps[m].value, "n": snaps[m].n,
                                         "at": snaps[m].window_end.isoformat()}
                                     for m in _HEALTH_METRICS if m in snaps}})
    alerts = [{"id": a.id, "rule": a.rule, "environment": a.environment,
               "severity": a.severity, "state": a.state, "message": a.message,
               "fired_at": a.fired_at.isoformat() if a.fired_at else None,
               "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None}
              for a in AlertManager(ev.registry).alerts(ev.name, limit=1000)
              if a.version == ev.mv.version]
    content = {"serving": envs, "alerts": alerts,
               "firing": sum(1 for a in alerts if a["state"] == "firing")}
    ids = {a["id"] for a in alerts}
    refs = [_ref(e) for e in ev.events if e.action in ("alert.fire", "alert.resolve")
            and e.payload.get("alert") in ids]
    if not envs and not alerts:
        return _missing("monitoring", "Monitoring", "This version is not served and has no "
                        "monitoring record.",
                        f"mlops deploy {ev.name} {ev.mv.version} --env staging, then mlops "
                        f"monitor evaluate {ev.name}", content, refs)
    if envs and not any(e["metrics"] for e in envs) and not alerts:
        return _missing("monitoring", "Monitoring", "This version is served but no monitoring "
                        "window was evaluated yet.", f"mlops monitor evaluate {ev.name}", content,
                        refs)
    return _present("monitoring", "Monitoring", content, refs)


def _approvals(ev: _Evidence) -> CardSection:
    state = decisions(ev.registry, ev.name, ev.mv.version)
    required = required_approvals(ev.registry, ev.name, ev.mv.version)
    content = {"required": required, "count": len(state.approvers), "run": state.run,
               "approvals": [d.to_dict() for d in state.decisions]}
    refs = [f"audit #{d.audit} version.{d.kind}" for d in state.standing().values()]
    if state.rejections:
        who = ", ".join(f"{d.actor} ({d.comment})" for d in state.rejections)
        return _missing("approvals", "Approvals", f"Rejected by {who}.",
                        f"fix it and run its gates again: mlops ci gates {ev.name} "
                        f"{ev.mv.version} --test-data TEST_FILE", content, refs)
    if len(state.approvers) < required:
        return _missing("approvals", "Approvals",
                        f"{len(state.approvers)} of {required} required approvals count.",
                        f'mlops ci approve {ev.name} {ev.mv.version} --reason "..." (by an '
                        "approver who neither registered it nor ran its gates)", content, refs)
    return _present("approvals", "Approvals", content, refs)


def _deployments(ev: _Evidence) -> CardSection:
    v = ev.mv.version
    history = []
    for e in ev.events:
        p = e.payload
        if e.action == "version.stage" and e.subject.endswith(f"/{v}"):
            what = f"stage {p.get('from')} -> {p.get('to')}"
        elif e.action.startswith("rollout.") and v in (p.get("candidate"), p.get("stable"),
                                                       p.get("version"), p.get("to"),
                                                       p.get("from")):
            what = e.action.removeprefix("rollout.") + (
                f" ({p.get('strategy')})" if p.get("strategy") else "")
        elif e.action == "route.set" and v in ((p.get("after") or {}).get("stable"),
                                               (p.get("after") or {}).get("candidate")):
            after = p.get("after") or {}
            what = f"route: stable {after.get('stable')}" + (
                f", candidate {after.get('candidate')} at {after.get('weight')}%"
                if after.get("candidate") else "")
        else:
            continue
        env = e.subject.split("/env/", 1)[1] if "/env/" in e.subject else None
        history.append({"at": e.ts, "by": e.actor, "environment": env, "event": what,
                        "reason": p.get("reason"), "audit": e.seq})
    refs = [f"audit #{h['audit']}" for h in history]
    if not history:
        return _missing("deployments", "Deployment history", "This version was never "
                        "staged, routed or rolled out.",
                        f"mlops deploy {ev.name} {v} --env staging")
    return _present("deployments", "Deployment history", {"events": history}, refs)


def _business_impact(ev: _Evidence) -> CardSection:
    """The KPI table (values of this version or of the whole model) and the cost per
    1,000 predictions of this version, over everything recorded; not a required section."""
    name, v = ev.name, ev.mv.version
    title = "Business impact and cost"
    kpis = kpi_report(ev.registry, name, version=v)
    not_measured = [k.missing.to_dict() for k in kpis if k.missing is not None]
    if not kpis:
        not_measured.append({"what": "KPIs", "reason": f"No KPI is defined for {name}.",
                             "supply": f"mlops kpi define {name} KPI --baseline B --target T "
                                       "--unit percentage|currency|absolute"})
    cost: dict[str, Any] | None = None
    try:
        report = cost_report(ev.registry, name, version=v)
    except MlopsError as exc:  # an unreadable log must not take the whole card down
        not_measured.append({"what": "cost", "reason": exc.message,
                             "supply": exc.fix or f"mlops impact {name} --version {v}"})
    else:
        row = report.version(v)
        if row is not None:
            cost = {**row.to_dict(), "currency": report.currency,
                    "prices": {"cpu_hour": report.cpu_hour_price,
                               "gb_hour": report.gb_hour_price},
                    "hours_basis": report.hours_basis}
            not_measured += [m.to_dict() for m in row.missing]
    content: dict[str, Any] = {"kpis": [k.to_dict() for k in kpis], "cost": cost,
                               "not_measured": not_measured}
    refs = [_ref(e) for e in ev.events if e.action in ("kpi.define", "kpi.record")
            and (e.action == "kpi.define" or e.payload.get("version") in (None, v))]
    has_kpi = any(k.latest is not None for k in kpis)
    has_cost = cost is not None and (cost["cost_per_1000"] is not None
                                     or cost["cpu_cost_per_1000"] is not None)
    if not has_kpi and not has_cost:
        what = "; ".join(m["reason"] for m in not_measured) or "Nothing was measured."
        supply = "; ".join(dict.fromkeys(m["supply"] for m in not_measured))
        return _missing("business_impact", title, what, supply, content, refs)
    return _present("business_impact", title, content, refs)
