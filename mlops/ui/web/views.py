"""What each dashboard page shows, read through the application layer's own calls.

Nothing here decides anything: the served versions come from the routing service (the one
rule the gateway follows), gate results from the CI runs, health and incidents from
monitoring, cards, compliance and lineage from governance, approvals from the CI approval
rule. These functions only gather and shape the results for the templates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops.ci.approvals import decisions, required_approvals
from mlops.ci.runs import RunStore
from mlops.deployment.routes import RouteSpec, RoutingService
from mlops.deployment.shares import Placement, placements
from mlops.governance.card import ModelCard, build_card
from mlops.governance.compliance import ComplianceReport, compliance_report
from mlops.governance.lineage import LineageNode, track_lineage
from mlops.governance.memo import one_reading
from mlops.monitoring.alerts import Alert
from mlops.monitoring.health import health_status
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.snapshots import Snapshot, latest_by_deployment
from mlops.registry.approvals import ApprovalState
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion, RegisteredModel
from mlops.store.versions import version_key
from mlops.ui.web.svg import Point, line_chart

__all__ = ["FRAMEWORKS_SHOWN", "NEWEST_SHOWN", "STALE_PASSES", "GateCheck", "GateRow", "GateSummary", "HealthCell",
           "ModelEntry", "Overview", "Placement", "VersionDetail",
           "VersionEntry", "gate_rows", "gate_summary", "models_overview", "placements",
           "version_detail"]

#: the compliance frameworks the version page shows
FRAMEWORKS_SHOWN = ("sr11-7", "eu-ai-act")
#: a health cell is stale when its window ended more than this many evaluator passes ago
STALE_PASSES = 3
#: the models page shows each model's newest versions, its staged, aliased and serving ones
NEWEST_SHOWN = 5


@dataclass(frozen=True)
class GateSummary:
    """The newest CI run of a version: its status and how many gates passed or failed."""

    run: int
    status: str
    started_at: str
    passed: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class HealthCell:
    """The health score of a model in one environment, from the evaluator's newest window
    (``score`` None: no traffic in it; ``as_of`` None: not evaluated yet). ``stale``: that
    window ended more than :data:`STALE_PASSES` evaluator passes ago."""

    environment: str
    version: str | None
    score: float | None
    status: str | None
    as_of: datetime | None = None
    stale: bool = False


@dataclass
class VersionEntry:
    version: ModelVersion
    placements: list[Placement] = field(default_factory=list)
    gate: GateSummary | None = None


@dataclass
class ModelEntry:
    """One model on the models page; ``versions`` are the notable ones (newest first) and
    ``hidden`` counts those left out (all of them are one search away)."""

    model: RegisteredModel
    versions: list[VersionEntry]
    health: list[HealthCell]
    incidents: list[Alert]
    hidden: int = 0


@dataclass(frozen=True)
class Overview:
    """The models page: every model (or those the query matched) with its versions."""

    query: str
    environments: list[str]
    models: list[ModelEntry]
    matched_versions: int | None  # None: no query


@dataclass(frozen=True)
class GateCheck:
    """One measured value of a gate against its threshold (either may be absent)."""

    key: str
    actual: Any
    threshold: Any


@dataclass(frozen=True)
class GateRow:
    """One gate of a CI run: its verdict, reason and checks."""

    name: str
    status: str
    passed: bool | None
    skipped: bool
    reason: str
    checks: list[GateCheck]


@dataclass
class VersionDetail:
    """The model version page."""

    version: ModelVersion
    model: RegisteredModel
    placements: list[Placement]
    run: dict[str, Any] | None
    gates: list[GateRow]
    chart: str
    card: ModelCard
    compliance: list[ComplianceReport]
    approvals: ApprovalState
    approvals_required: int
    excluded: list[str]
    lineage: LineageNode


def gate_summary(run: dict[str, Any]) -> GateSummary:
    """Counts of a stored CI run's gates (``RunStore.runs`` rows)."""
    passed = failed = skipped = 0
    for step in (run.get("report") or {}).get("steps", []):
        gate = step.get("gate")
        if not isinstance(gate, dict) and not str(step.get("name", "")).startswith("gate:"):
            continue
        if step.get("status") == "skipped" or (isinstance(gate, dict) and gate.get("skipped")):
            skipped += 1
        elif step.get("status") in ("passed", "cached"):
            passed += 1
        else:
            failed += 1
    return GateSummary(int(run["run"]), str(run.get("status", "")),
                       str(run.get("started_at", "")), passed, failed, skipped)


def _checks(actual: Any, threshold: Any) -> list[GateCheck]:
    """Pair a gate's measured values with its thresholds by key (``max_x``/``min_x``
    thresholds pair with a measured ``x``); values without a counterpart stand alone."""
    if actual is None and isinstance(threshold, dict):
        actual = {}
    if threshold is None and isinstance(actual, dict):
        threshold = {}
    if not isinstance(actual, dict) or not isinstance(threshold, dict):
        if actual is None and threshold is None:
            return []
        return [GateCheck("", actual, threshold)]
    out: list[GateCheck] = []
    used: set[str] = set()
    for key, limit in threshold.items():
        if limit is None:
            continue
        measured = key
        if key not in actual and key[:4] in ("max_", "min_") and key[4:] in actual:
            measured = key[4:]
        if measured in actual:
            used.add(measured)
        out.append(GateCheck(key if measured == key else f"{measured} ({key[:3]})",
                             actual.get(measured), limit))
    out += [GateCheck(k, v, None) for k, v in actual.items()
            if k not in used and v is not None and v != [] and v != {}]
    return out


def gate_rows(run: dict[str, Any] | None) -> list[GateRow]:
    """Each gate of a stored CI run, with its checks."""
    rows: list[GateRow] = []
    for step in ((run or {}).get("report") or {}).get("steps", []):
        gate = step.get("gate")
        name = str(step.get("name", ""))
        if not isinstance(gate, dict):
            if name.startswith("gate:"):  # did not run (an earlier gate failed)
                rows.append(GateRow(name.removeprefix("gate:"), str(step.get("status")),
                                    None, step.get("status") == "skipped",
                                    str(step.get("reason", "")), []))
            continue
        rows.append(GateRow(str(gate.get("gate") or name.removeprefix("gate:")),
                            str(step.get("status")), bool(gate.get("passed")),
                            bool(gate.get("skipped")), str(gate.get("reason") or
                                                           step.get("reason", "")),
                            _checks(gate.get("actual"), gate.get("threshold"))))
    return rows


def _health(name: str, specs: dict[str, RouteSpec],
            latest: dict[tuple[str, str], Snapshot], stale_before: datetime
            ) -> list[HealthCell]:
    cells = []
    for env, spec in specs.items():
        if spec.source == "latest":
            continue  # nothing deployed there on purpose: the newest version answers
        snap = latest.get((name, env))
        if snap is None:
            cells.append(HealthCell(env, spec.stable, None, None))
            continue
        score = snap.value if snap.n else None
        cells.append(HealthCell(env, spec.stable, score,
                                health_status(score) if score is not None else None,
                                snap.window_end, snap.window_end < stale_before))
    return cells


def models_overview(registry: ModelRegistry, monitor: ModelMonitor, query: str = ""
                    ) -> Overview:
    """Every model (or, with ``query`` in the registry's search language, the versions it
    matches and their models), where each version serves, its newest gate result, the
    model's health per environment (the evaluator's newest window: the page reads no log)
    and its open incidents. A bad query raises :class:`~mlops.errors.InvalidQuery`."""
    query = query.strip()
    matched: dict[str, set[str]] | None = None
    found: dict[str, list[ModelVersion]] | None = None
    if query:
        matched, found = {}, {}
        for mv in sorted(registry.search(query), key=lambda v: version_key(v.version)):
            matched.setdefault(mv.model, set()).add(mv.version)
            found.setdefault(mv.model, []).append(mv)
    environments = list(registry.context.settings.environments)
    routing = RoutingService(registry)
    serving = {env: routing.serving(env) for env in environments}
    latest = latest_by_deployment(registry, "health")
    settings = registry.context.settings
    stale_before = datetime.now(UTC) - timedelta(
        seconds=STALE_PASSES * settings.monitor_interval)
    firing: dict[str, list[Alert]] = {}
    for alert in monitor.alerts.alerts(state="firing", limit=10_000):
        firing.setdefault(alert.model, []).append(alert)
    where_of: dict[str, dict[str, list[Placement]]] = {}
    specs_of: dict[str, dict[str, RouteSpec]] = {}
    for env in environments:
        for name, spec in serving[env].items():
            specs_of.setdefault(name, {})[env] = spec
            for place in placements(spec):
                where_of.setdefault(name, {}).setdefault(place.version, []).append(place)
    shown = found if found is not None else registry.notable_versions(
        NEWEST_SHOWN, {name: set(where) for name, where in where_of.items()})
    newest = RunStore(registry).newest_per_version(
        {name: {mv.version for mv in versions} for name, versions in shown.items()})
    models: list[ModelEntry] = []
    for model in registry.list_models():
        if matched is not None and model.name not in matched:
            continue
        specs = specs_of.get(model.name, {})
        where = where_of.get(model.name, {})
        versions = [VersionEntry(mv, where.get(mv.version, []),
                                 gate_summary(newest[model.name, mv.version])
                                 if (model.name, mv.version) in newest else None)
                    for mv in reversed(shown.get(model.name, []))]
        hidden = 0 if matched is not None else model.version_count - len(versions)
        models.append(ModelEntry(model, versions,
                                 _health(model.name, specs, latest, stale_before),
                                 firing.get(model.name, []), hidden))
    count = None if matched is None else sum(len(v) for v in matched.values())
    return Overview(query, environments, models, count)


def _chart(registry: ModelRegistry, mv: ModelVersion, gates: list[GateRow]) -> str:
    """The model's versions' value of this version's headline metric (the first the
    metrics gate checked, else the first recorded), by registration time."""
    metric = next((c.key for g in gates if g.name == "metrics" for c in g.checks
                   if c.key in mv.metrics), None) or next(iter(sorted(mv.metrics)), None)
    if metric is None:
        return ""
    points = [Point(v.created_at, float(v.metrics[metric]), v.version)
              for v in registry.list_versions(mv.model)
              if isinstance(v.metrics.get(metric), int | float)
              and math.isfinite(float(v.metrics[metric]))]
    return line_chart(points, title=f"{metric} of each version of {mv.model}",
                      x_label="registered", y_label=metric)


def version_detail(registry: ModelRegistry, name: str, version: str) -> VersionDetail:
    """Everything the version page shows; ``version`` may be a number, alias, stage or
    ``latest`` (unknown ones raise ``ModelNotFound`` / ``VersionNotFound``). The card is
    built once: the compliance reports are built from it."""
    with one_reading():
        return _version_detail(registry, name, version)


def _version_detail(registry: ModelRegistry, name: str, version: str) -> VersionDetail:
    mv = registry.get_version(name, version)
    model = registry.get_model(name)
    routing = RoutingService(registry)
    where = []
    for env in registry.context.settings.environments:
        spec = routing.served(name, env)
        if spec is not None:
            where += [p for p in placements(spec) if p.version == mv.version]
    recent = RunStore(registry).runs(name, mv.version, limit=1)
    run = recent[0] if recent else None
    gates = gate_rows(run)
    state = decisions(registry, name, mv.version)
    excluded = [p for p in dict.fromkeys([mv.created_by, state.runner or ""]) if p]
    return VersionDetail(
        version=mv, model=model, placements=where, run=run, gates=gates,
        chart=_chart(registry, mv, gates), card=build_card(registry, name, mv.version),
        compliance=[compliance_report(registry, name, mv.version, f) for f in FRAMEWORKS_SHOWN],
        approvals=state, approvals_required=required_approvals(registry, name, mv.version),
        excluded=excluded, lineage=track_lineage(registry, name, mv.version))
