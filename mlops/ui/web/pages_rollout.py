"""The rollout page: what one model's rollout in one environment is doing, and the
buttons that steer it.

``/models/{name}/rollouts/{environment}`` shows the live traffic split (the routing
service's answer, the rule the gateway follows), the plan's steps with the current one, each
recorded analysis (per metric: estimate, confidence interval, always-valid p-values, the
Benjamini-Hochberg adjusted ones and the decision; the sample-ratio check) and the audit
events of the environment. ``.../live.json`` carries the same headline numbers for the
page's polling script. Promote, pause, resume, abort and roll back go through a confirm
page (``GET .../{action}``) whose form posts to the same address; the post needs the CSRF
token and the developer role (the application layer asks for approver in protected
environments) and calls :class:`~mlops.deployment.rollouts.RolloutManager`, which writes
the audit events. Nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mlops.deployment.rollouts import ACTIVE, Rollout, RolloutManager
from mlops.deployment.routes import RoutingService
from mlops.deployment.types import RolloutState
from mlops.identity import Role, require
from mlops.registry.service import ModelRegistry
from mlops.store.audit import AuditEvent
from mlops.ui.web.kit import LIVE_SCRIPT, MAX_REASON, PageKit, known_environment, signed_in
from mlops.ui.web.session import CSRF_FIELD, verify_csrf
from mlops.ui.web.views import Placement, placements

__all__ = ["ACTIONS", "ActionInfo", "AnalysisView", "MetricRow", "RolloutView", "StepRow",
           "perform", "rollout_detail", "rollout_live", "rollout_routes"]

#: analysis metrics shown as rows of the sequential-test table, in this order
_TESTED = ("error_rate", "accuracy", "mae")
#: audit events of an environment shown on the page
_EVENTS = 30


@dataclass(frozen=True)
class ActionInfo:
    """A button: its label and what it will do (the confirm page says it)."""

    name: str
    label: str
    effect: str
    danger: bool


ACTIONS: dict[str, ActionInfo] = {a.name: a for a in (
    ActionInfo("promote", "Promote", "The candidate takes all traffic and becomes stable; "
               "the rollout ends as succeeded.", False),
    ActionInfo("pause", "Pause", "The split stays as it is and the controller stops "
               "advancing until someone resumes.", False),
    ActionInfo("resume", "Resume", "The controller analyses and advances the rollout again.",
               False),
    ActionInfo("abort", "Abort", "All traffic goes back to the stable version; the rollout "
               "ends as rolled back.", True),
    ActionInfo("rollback", "Roll back", "All traffic goes back to the previous stable "
               "version (the active rollout, if any, ends as rolled back).", True),
)}


@dataclass(frozen=True)
class StepRow:
    """One step of the plan and where the rollout is relative to it."""

    index: int
    weight: float
    pause: float
    until: str
    mode: str
    status: str  # done, current, pending


@dataclass(frozen=True)
class MetricRow:
    """One metric of an analysis, as recorded (absent numbers are None)."""

    name: str
    stable: float | None
    candidate: float | None
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_non_inferior: float | None
    p_inferior: float | None
    p_non_inferior_bh: float | None
    p_inferior_bh: float | None
    margin: float | None
    n_stable: int | None
    n_candidate: int | None
    decision: str | None


@dataclass(frozen=True)
class AnalysisView:
    """One recorded look at a step: its outcome, reason, tested metrics, the sample-ratio
    check and any other recorded figures (latency guardrail, smoke, bandit)."""

    number: int
    step: int
    outcome: str
    at: str
    reason: str
    weight: float | None
    elapsed_s: float | None
    metrics: list[MetricRow]
    srm: dict[str, Any] | None
    other: dict[str, Any]


@dataclass
class RolloutView:
    """Everything the rollout page shows."""

    model: str
    environment: str
    environments: list[str]
    rollout: Rollout | None
    split: list[Placement]
    steps: list[StepRow]
    analyses: list[AnalysisView]
    events: list[AuditEvent]
    actions: list[ActionInfo] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.rollout is not None and self.rollout.state in ACTIVE


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _metric(name: str, m: dict[str, Any]) -> MetricRow:
    return MetricRow(name, _float(m.get("stable")), _float(m.get("candidate")),
                     _float(m.get("estimate")), _float(m.get("ci_low")),
                     _float(m.get("ci_high")), _float(m.get("p_non_inferior")),
                     _float(m.get("p_inferior")), _float(m.get("p_non_inferior_bh")),
                     _float(m.get("p_inferior_bh")), _float(m.get("margin")),
                     _int(m.get("n_stable")), _int(m.get("n_candidate")),
                     str(m["decision"]) if m.get("decision") is not None else None)


def analysis_view(number: int, record: dict[str, Any]) -> AnalysisView:
    """A recorded analysis (``Rollout.analyses`` entry) shaped for the page."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    assert isinstance(metrics, dict)
    tested = [_metric(k, metrics[k]) for k in _TESTED
              if isinstance(metrics.get(k), dict) and "estimate" in metrics[k]]
    shown = {m.name for m in tested} | {"sample_ratio"}
    srm = metrics.get("sample_ratio") if isinstance(metrics.get("sample_ratio"), dict) \
        else None
    return AnalysisView(number, int(record.get("step", 0)), str(record.get("outcome", "")),
                        str(record.get("at", "")), str(record.get("reason", "")),
                        _float(record.get("weight")), _float(record.get("elapsed_s")),
                        tested, srm, {k: v for k, v in metrics.items() if k not in shown})


def _steps(rollout: Rollout) -> list[StepRow]:
    finished = rollout.state is RolloutState.SUCCEEDED
    rows = []
    for i, step in enumerate(rollout.steps):
        if finished or i < rollout.step_index:
            status = "done"
        elif i == rollout.step_index and rollout.state in ACTIVE:
            status = "current"
        else:
            status = "pending"
        rows.append(StepRow(i, step.weight, step.pause, step.until.value, step.mode.value,
                            status))
    return rows


def _actions(rollout: Rollout | None) -> list[ActionInfo]:
    if rollout is None or rollout.state not in ACTIVE:
        return [ACTIONS["rollback"]]
    middle = "pause" if rollout.state is RolloutState.PROGRESSING else "resume"
    return [ACTIONS[a] for a in ("promote", middle, "abort", "rollback")]


def rollout_detail(registry: ModelRegistry, name: str, environment: str) -> RolloutView:
    """The rollout page of ``name`` in ``environment`` (the newest rollout there, which may
    have ended; None when there never was one). Unknown models raise ``ModelNotFound``.
    Three reads: the rollout with its last 20 analyses, the route, the audit events."""
    rollout = RolloutManager(registry).status(name, environment)
    spec = RoutingService(registry).served(name, environment)
    events = registry.audit_log(subject=f"model/{name}/env/{environment}", limit=_EVENTS)
    analyses = [analysis_view(i + 1, a) for i, a in enumerate(rollout.analyses)] \
        if rollout is not None else []
    return RolloutView(name, environment, list(registry.context.settings.environments),
                       rollout, placements(spec) if spec is not None else [],
                       _steps(rollout) if rollout is not None else [],
                       list(reversed(analyses)), events, _actions(rollout))


def _fmt(value: float | None, pattern: str = "{:.4g}") -> str:
    return "—" if value is None else pattern.format(value)


def rollout_live(view: RolloutView) -> dict[str, str]:
    """The page's changing numbers as ``data-live-key`` -> text (what ``live.js`` writes),
    plus ``_signature``: it changes when the page's structure would (a reload is due)."""
    out: dict[str, str] = {}
    r = view.rollout
    out["state"] = r.state.value if r is not None else "none"
    out["reason"] = (r.reason or "—") if r is not None else "—"
    out["step"] = f"{r.step_index + 1} of {len(r.steps)}" if r is not None else "—"
    out["analyses"] = str(len(view.analyses))
    for p in view.split:
        out[f"weight:{p.role}"] = f"{p.weight:g}%"
        out[f"version:{p.role}"] = p.version
    latest = view.analyses[0] if view.analyses else None
    out["outcome"] = latest.outcome if latest else "—"
    out["srm_p"] = _fmt(_float(latest.srm.get("p_value"))) if latest and latest.srm else "—"
    out["_signature"] = "|".join([out["state"], str(r.id if r else 0), out["analyses"],
                                  ",".join(f"{p.role}={p.version}" for p in view.split)])
    return out


def perform(registry: ModelRegistry, name: str, environment: str, action: str,
            reason: str) -> str:
    """Carry out ``action`` as ``registry``'s principal (the manager checks the role and
    the promotion policy and writes the audit events); returns what now serves or the
    rollout's state."""
    manager = RolloutManager(registry)
    if action == "rollback":
        return manager.rollback(name, environment, reason=reason)
    moves = {"promote": manager.promote, "pause": manager.pause, "resume": manager.resume,
             "abort": manager.abort}
    return moves[action](name, environment, reason=reason).state.value


def _page_url(name: str, environment: str) -> str:
    return f"/models/{quote(name, safe='')}/rollouts/{quote(environment, safe='')}"


def _action_of(request: Request) -> ActionInfo:
    action = ACTIONS.get(request.path_params["action"])
    if action is None:
        raise HTTPException(404, f"No action {request.path_params['action']!r}.")
    return action


def rollout_routes(registry: ModelRegistry, kit: PageKit) -> list[Route]:
    """The rollout page, its live numbers, and its confirm-and-act pages."""

    async def rollout_page(request: Request) -> Response:
        visit = await kit.visit_of(request)
        if isinstance(visit, Response):
            return visit
        name = request.path_params["name"]
        env = known_environment(registry, request.path_params["environment"])
        view = await run_in_threadpool(rollout_detail, registry, name, env)
        done = request.query_params.get("done")
        return kit.page(request, visit, "rollout.html", live_script=LIVE_SCRIPT, view=view,
                        live=rollout_live(view), live_url=_page_url(name, env) + "/live.json",
                        done=ACTIONS.get(done or ""))

    async def live(request: Request) -> Response:
        visit = await kit.visit_of(request)
        if isinstance(visit, Response):
            return JSONResponse({"error": "Log in again.", "fix": "Reload the page."}, 401)
        name = request.path_params["name"]
        env = known_environment(registry, request.path_params["environment"])
        view = await run_in_threadpool(rollout_detail, registry, name, env)
        return JSONResponse(rollout_live(view))

    async def confirm(request: Request) -> Response:
        visit = await kit.visit_of(request)
        if isinstance(visit, Response):
            return visit
        action = _action_of(request)
        name = request.path_params["name"]
        env = known_environment(registry, request.path_params["environment"])
        require(visit.principal, Role.DEVELOPER, f"{action.name} {name} in {env}")
        view = await run_in_threadpool(rollout_detail, registry, name, env)
        return kit.page(request, visit, "rollout_confirm.html", view=view, action=action,
                        back=_page_url(name, env))

    async def act(request: Request) -> Response:
        form = await kit.form_of(request)
        verify_csrf(request, form.get(CSRF_FIELD))
        action = _action_of(request)
        visit = await signed_in(kit, request, f"{action.name} a rollout")
        name = request.path_params["name"]
        env = known_environment(registry, request.path_params["environment"])
        require(visit.principal, Role.DEVELOPER, f"{action.name} {name} in {env}")
        reason = (form.get("reason") or "")[:MAX_REASON]
        await run_in_threadpool(perform, registry.acting_as(visit.principal), name, env,
                                action.name, reason)
        return RedirectResponse(f"{_page_url(name, env)}?done={action.name}", status_code=303)

    base = "/models/{name}/rollouts/{environment}"
    return [Route(base, rollout_page, methods=["GET"]),
            Route(base + "/live.json", live, methods=["GET"]),
            Route(base + "/{action}", confirm, methods=["GET"]),
            Route(base + "/{action}", act, methods=["POST"])]
