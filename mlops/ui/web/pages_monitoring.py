"""The monitoring page: one model in one environment over time.

``/models/{name}/monitoring?environment=production`` draws the evaluator's metric snapshots
(:func:`~mlops.monitoring.snapshots.snapshot_series`): request rate, latency p50/p99, error
rate, the quality metric with its label coverage, and the health score; drift per feature
as a heatmap over the evaluator's windows (``drift:<feature>`` snapshots mark the drifted
features of a window, ``drift_share`` the windows that were tested); one feature's
reference distribution (the served version's profile) against the current window of the
prediction log, binned alike; and the alerts with an acknowledge form for developers
(:meth:`~mlops.monitoring.alerts.AlertManager.ack`, which checks the role and audits).
``.../monitoring/live.json`` carries the newest numbers for the page's polling script.

Cost: one query per series, one per feature of the heatmap (at most :data:`MAX_FEATURES`,
the slow spot for wide models), one profile load and one read of at most
:data:`CURRENT_ROWS` logged rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mlops.errors import MonitoringError, RegistryError
from mlops.identity import Role, require
from mlops.monitoring.alerts import Alert
from mlops.monitoring.drift_window import (
    FEATURE_DRIFT_PREFIX,
    VersionDrift,
    feature_drift_metric,
    window_drift,
)
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.snapshots import Snapshot, latest_snapshots, snapshot_series
from mlops.monitoring.window import read_window
from mlops.registry.service import ModelRegistry
from mlops.stats.profile import CategoricalProfile, NumericProfile
from mlops.ui.web.kit import LIVE_SCRIPT, MAX_REASON, PageKit, known_environment, signed_in
from mlops.ui.web.session import CSRF_FIELD, verify_csrf
from mlops.ui.web.svg import Point, bar_chart, heatmap, lines_chart

__all__ = ["CURRENT_ROWS", "MAX_FEATURES", "Chart", "Distribution", "MonitoringView",
           "alert_state", "monitoring_detail", "monitoring_live", "monitoring_routes"]

#: the most features drawn in the drift heatmap
MAX_FEATURES = 30
#: the most logged rows read for a feature's current distribution
CURRENT_ROWS = 5000
#: the most windows drawn
WINDOWS = 48
#: the quality metrics a model may have, in the order one is picked for the chart
_QUALITY = ("accuracy", "f1", "roc_auc", "mae", "rmse", "r2")
#: the figures live.js refreshes (snapshot metric names)
LIVE_METRICS = ("health", "throughput_rps", "n_predictions", "latency_p50_ms",
                "latency_p99_ms", "error_rate", "label_coverage", "drift_share", *_QUALITY)


@dataclass(frozen=True)
class Chart:
    """One chart of the page and the newest value it shows."""

    key: str
    title: str
    svg: str
    latest: float | None
    points: int


@dataclass(frozen=True)
class Distribution:
    """One feature's reference shares per bin (or category) next to the current window's."""

    feature: str
    version: str | None
    labels: list[str]
    reference: list[float]
    current: list[float]
    current_rows: int
    svg: str
    note: str | None


@dataclass
class MonitoringView:
    """Everything the monitoring page shows."""

    model: str
    environment: str
    environments: list[str]
    version: str | None
    latest: dict[str, Snapshot]
    charts: list[Chart]
    features: list[str]
    drift_windows: int
    drift_svg: str
    drifted_latest: list[str]
    distribution: Distribution | None
    alerts: list[Alert]
    drift_tests: VersionDrift | None = None   # the served version's inputs, this window
    drift_note: str | None = None             # why there are no tests to show


def alert_state(alert: Alert) -> str:
    """``resolved``, ``acknowledged`` (firing, seen by a person) or ``firing``."""
    if alert.state != "firing":
        return alert.state
    return "acknowledged" if alert.acked_by else "firing"


def _points(series: list[Snapshot]) -> list[Point]:
    return [Point(s.window_end, float(s.value), f"n={s.n}") for s in series
            if s.value is not None and math.isfinite(s.value)]


def _chart(registry: ModelRegistry, name: str, env: str, key: str, title: str, y: str,
           metrics: list[tuple[str, str]]) -> Chart:
    series = [(label, _points(snapshot_series(registry, name, m, environment=env,
                                              limit=WINDOWS))) for m, label in metrics]
    newest = series[0][1][-1].y if series and series[0][1] else None
    return Chart(key, title, lines_chart(series, title=title, x_label="window end (UTC)",
                                         y_label=y), newest, sum(len(p) for _, p in series))


def _bin_labels(edges: np.ndarray) -> list[str]:
    cuts = edges[1:-1]
    if not len(cuts):
        return ["all"]
    return [*(f"≤{c:.3g}" for c in cuts), f">{cuts[-1]:.3g}"]  # bins are right-closed


def _distribution(registry: ModelRegistry, monitor: ModelMonitor, name: str, env: str,
                  version: str | None, feature: str | None, features: list[str]
                  ) -> Distribution | None:
    if version is None or not features:
        return None
    feature = feature if feature in features else features[0]
    try:
        profile = registry.reference_profile(name, version, "features")
    except (MonitoringError, RegistryError) as exc:
        return Distribution(feature, version, [], [], [], 0, "", exc.message)
    column = profile.columns.get(feature)
    if column is None:
        return Distribution(feature, version, [], [], [], 0, "",
                            f"{version}'s reference profile has no column {feature!r}.")
    now = datetime.now(UTC)
    note = None
    try:
        window = read_window(monitor.artifacts_uri, name, start=now - monitor.window, end=now,
                             version=version, environment=env, limit=CURRENT_ROWS)
        values = window.inputs.get(feature)
    except MonitoringError as exc:
        values, note = None, exc.message
    current: list[float]
    if isinstance(column, NumericProfile):
        labels = _bin_labels(column.bin_edges)
        reference = [float(f) for f in column.bin_fractions]
        nums = np.asarray([] if values is None else
                          [float(v) if isinstance(v, int | float) else math.nan
                           for v in values], dtype=np.float64)
        nums = nums[np.isfinite(nums)]
        counts = np.bincount(np.searchsorted(column.bin_edges[1:-1], nums, side="left"),
                             minlength=len(reference))
        current = [float(c) / len(nums) if len(nums) else 0.0 for c in counts]
        n = len(nums)
    else:
        assert isinstance(column, CategoricalProfile)
        labels = list(column.categories[:20])
        reference = [float(f) for f in column.fractions[:20]]
        texts = [] if values is None else [str(v) for v in values if v is not None]
        n = len(texts)
        current = [sum(t == c for t in texts) / n if n else 0.0 for c in labels]
    if values is None and note is None:
        note = f"No logged rows of {version} in the last {monitor.window} carry {feature!r}."
    svg = bar_chart(labels, [("reference", reference), (f"current ({n} rows)", current)],
                    title=f"{feature}: reference ({version}) vs the current window",
                    y_label="share of rows")
    return Distribution(feature, version, labels, reference, current, n, svg, note)


def monitoring_detail(registry: ModelRegistry, monitor: ModelMonitor, name: str,
                      environment: str, feature: str | None = None) -> MonitoringView:
    """The monitoring page of ``name`` in ``environment`` (unknown models raise
    ``ModelNotFound``); ``feature`` picks the distribution shown (default: a feature that
    drifted in the newest window, else the first)."""
    registry.get_model(name)
    latest = latest_snapshots(registry, name, environment=environment)
    quality = next((m for m in _QUALITY if m in latest), "accuracy")
    charts = [
        _chart(registry, name, environment, "throughput", "Request rate", "requests/s",
               [("throughput_rps", "requests/s")]),
        _chart(registry, name, environment, "latency", "Latency p50 / p99", "ms",
               [("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")]),
        _chart(registry, name, environment, "errors", "Error rate (5xx)", "share",
               [("error_rate", "error rate")]),
        _chart(registry, name, environment, "quality", f"{quality} and label coverage",
               "share", [(quality, quality), ("label_coverage", "label coverage")]),
        _chart(registry, name, environment, "health", "Health score", "score",
               [("health", "health")]),
    ]
    version = monitor.served_version(name, environment)
    features: list[str] = []
    if version is not None:
        try:
            features = list(registry.reference_profile(name, version, "features").columns)
        except (MonitoringError, RegistryError):
            features = []
    recorded = [k.removeprefix(FEATURE_DRIFT_PREFIX) for k in latest
                if k.startswith(FEATURE_DRIFT_PREFIX)]
    features = list(dict.fromkeys([*features, *recorded]))[:MAX_FEATURES]
    windows = [s for s in snapshot_series(registry, name, "drift_share",
                                          environment=environment, limit=WINDOWS)]
    since = windows[0].window_end if windows else None
    cells: list[list[float | None]] = []
    for f in features:
        drifted = {s.window_end for s in snapshot_series(
            registry, name, feature_drift_metric(f), environment=environment, since=since,
            limit=WINDOWS)}
        cells.append([1.0 if w.window_end in drifted else
                      (0.0 if w.value is not None else None) for w in windows])
    drift_svg = heatmap(features, [w.window_end for w in windows], cells,
                        title="Drifted features per window", x_label="window end (UTC)",
                        legend=("no drift", "drifted"))
    newest = windows[-1].window_end if windows else None
    drifted_latest = [f for f, row in zip(features, cells, strict=True)
                      if row and row[-1] == 1.0] if newest else []
    chosen = feature or (drifted_latest[0] if drifted_latest else None)
    distribution = _distribution(registry, monitor, name, environment, version, chosen,
                                 features)
    alerts = monitor.alerts.alerts(name, environment=environment, limit=50)
    tests, note = _drift_tests(registry, monitor, name, environment, version)
    return MonitoringView(name, environment, list(registry.context.settings.environments),
                          version, latest, charts, features, len(windows), drift_svg,
                          drifted_latest, distribution, alerts, tests, note)


def _drift_tests(registry: ModelRegistry, monitor: ModelMonitor, name: str, env: str,
                 version: str | None) -> tuple[VersionDrift | None, str | None]:
    """Each feature's drift test of the served version over the current window (the
    evaluator's test, run now), or why there is none."""
    if version is None:
        return None, f"Nothing is served in {env}."
    now = datetime.now(UTC)
    try:
        found = window_drift(registry, name, start=now - monitor.window, end=now,
                             environment=env, version=version).versions.get(version)
    except MonitoringError as exc:
        return None, exc.message
    if found is None or found.data is None:
        return None, (found.skipped if found is not None and found.skipped else
                      f"No rows of {version} in the last {monitor.window} to test.")
    return found, None


def monitoring_live(registry: ModelRegistry, monitor: ModelMonitor, name: str,
                    environment: str) -> dict[str, str]:
    """The newest numbers as ``data-live-key`` -> text (two queries, no log read), plus
    ``_signature``, which changes when a new window or alert arrives (a reload is due)."""
    registry.get_model(name)
    latest = latest_snapshots(registry, name, environment=environment)
    alerts = monitor.alerts.alerts(name, environment=environment, limit=50)
    out = {f"metric:{m}": f"{latest[m].value:.4g}" if m in latest and latest[m].value
           is not None else "—" for m in LIVE_METRICS}
    states = [alert_state(a) for a in alerts]
    for state in ("firing", "acknowledged", "resolved"):
        out[f"alerts:{state}"] = str(states.count(state))
    for a, state in zip(alerts, states, strict=True):
        out[f"alert:{a.id}"] = state
    newest = max((s.window_end for s in latest.values()), default=None)
    out["window"] = newest.strftime("%Y-%m-%d %H:%M:%S") if newest else "—"
    out["_signature"] = f"{out['window']}|{','.join(str(a.id) for a in alerts)}"
    return out


def _page_url(name: str, environment: str) -> str:
    return f"/models/{quote(name, safe='')}/monitoring?" + urlencode(
        {"environment": environment})


def monitoring_routes(registry: ModelRegistry, monitor: ModelMonitor, kit: PageKit
                      ) -> list[Route]:
    """The monitoring page, its live numbers, and acknowledging an alert."""

    def environment_of(request: Request) -> str:
        return known_environment(registry, request.query_params.get("environment")
                                 or "production")

    async def monitoring_page(request: Request) -> Response:
        visit = await kit.visit_of(request)
        if isinstance(visit, Response):
            return visit
        name, env = request.path_params["name"], environment_of(request)
        feature = request.query_params.get("feature") or None
        view = await run_in_threadpool(monitoring_detail, registry, monitor, name, env,
                                       feature)
        live = await run_in_threadpool(monitoring_live, registry, monitor, name, env)
        acked = request.query_params.get("acked")
        return kit.page(request, visit, "monitoring.html", live_script=LIVE_SCRIPT, view=view, live=live,
                        state_of=alert_state, acked=acked if acked and acked.isdigit()
                        else None, live_url=f"/models/{quote(name, safe='')}/monitoring/"
                        f"live.json?{urlencode({'environment': env})}")

    async def live(request: Request) -> Response:
        visit = await kit.visit_of(request)
        if isinstance(visit, Response):
            return JSONResponse({"error": "Log in again.", "fix": "Reload the page."}, 401)
        name, env = request.path_params["name"], environment_of(request)
        return JSONResponse(await run_in_threadpool(monitoring_live, registry, monitor,
                                                    name, env))

    async def ack(request: Request) -> Response:
        form = await kit.form_of(request)
        verify_csrf(request, form.get(CSRF_FIELD))
        visit = await signed_in(kit, request, "acknowledge an alert")
        name = request.path_params["name"]
        env = known_environment(registry, form.get("environment") or "production")
        raw = request.path_params["alert_id"]
        if not raw.isdigit() or len(raw) > 18:
            raise HTTPException(404, f"No alert {raw!r}.")
        require(visit.principal, Role.DEVELOPER, f"acknowledge alert {raw}")
        note = (form.get("note") or "")[:MAX_REASON]
        acting = monitor.alerts.acting_as(visit.principal)
        await run_in_threadpool(lambda: acting.ack(int(raw), note=note))
        return RedirectResponse(f"{_page_url(name, env)}&acked={raw}#alerts", status_code=303)

    base = "/models/{name}/monitoring"
    return [Route(base, monitoring_page, methods=["GET"]),
            Route(base + "/live.json", live, methods=["GET"]),
            Route(base + "/alerts/{alert_id}/ack", ack, methods=["POST"])]

