"""The rollout and monitoring pages without a browser: the numbers against the application
layer's, the buttons per role, confirmation, CSRF, 404s, escaping and the live JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape

import pytest
from starlette.testclient import TestClient

from mlops.config import Settings
from mlops.deployment.rollouts import RolloutManager
from mlops.identity import Role
from mlops.monitoring.alerts import AlertManager
from mlops.monitoring.drift_window import window_drift
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.snapshots import snapshot_series
from mlops.registry.service import ModelRegistry
from mlops.ui.web.svg import Point, bar_chart, heatmap, lines_chart
from tests.ui.conftest import (
    XSS,
    Demo,
    LiveDemo,
    add_rollout_and_monitoring,
    build_demo,
    csrf_of,
    login,
    role_tokens,
)


@dataclass
class Store:
    settings: Settings
    registry: ModelRegistry
    demo: Demo
    live: LiveDemo
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("live")
    settings = Settings(home=root / ".mlops", actor="tester")
    registry = ModelRegistry(settings)
    demo = build_demo(registry, root / "work")
    live = add_rollout_and_monitoring(registry, demo)
    tokens = role_tokens(registry)
    return Store(settings, registry, demo, live, tokens)






def _rollout_url(store: Store) -> str:
    return f"/models/{store.demo.fraud}/rollouts/production"


def _monitoring_url(store: Store) -> str:
    return f"/models/{store.demo.churn}/monitoring?environment=production"


def _text(html: str, pattern: str) -> str:
    found = re.search(pattern, html, re.S)
    assert found, pattern
    return unescape(found.group(1)).strip()


def test_rollout_page_shows_split_steps_and_the_recorded_analysis(client: TestClient,
                                                                  store: Store) -> None:
    rollout = RolloutManager(store.registry).status(store.demo.fraud, "production")
    assert rollout is not None and rollout.analyses
    page = client.get(_rollout_url(store))
    assert page.status_code == 200, page.text
    html = page.text
    stable, candidate = store.demo.fraud_versions
    assert f'data-role="stable" data-version="{stable}" data-weight="90"' in html
    assert f'data-role="candidate" data-version="{candidate}" data-weight="10"' in html
    assert _text(html, r'id="state" data-live-key="state">([^<]*)<') == "progressing"
    assert html.count('class="step step-') == len(rollout.steps)
    assert 'data-step="0" data-status="current"' in html
    analysis = rollout.analyses[-1]
    for metric in ("error_rate", "accuracy"):
        m = analysis["metrics"][metric]
        row = _text(html, rf'(<tr data-metric="{metric}">.*?</tr>)')
        assert f'<span class="ci-low">{m["ci_low"]:.4g}</span>' in row
        assert f'<span class="ci-high">{m["ci_high"]:.4g}</span>' in row
        assert f'<td class="p-non-inferior">{m["p_non_inferior"]:.4g}</td>' in row
        assert f'<td class="p-inferior">{m["p_inferior"]:.4g}</td>' in row
        assert m["decision"].replace("_", " ") in row
    srm = analysis["metrics"]["sample_ratio"]
    assert f'data-srm-p="{srm["p_value"]:.4g}"' in html
    assert "900 / 100" in html
    assert 'data-outcome="Inconclusive"' in html
    assert 'data-action="rollout.start"' in html  # the audit events of the environment
    for action in ("promote", "pause", "abort", "rollback"):  # the local user is an admin
        assert f'id="action-{action}"' in html
    assert 'id="action-resume"' not in html
    assert '<script src="/static/live.js" defer></script>' in html


def test_rollout_live_json_carries_the_numbers(client: TestClient, store: Store) -> None:
    live = client.get(_rollout_url(store) + "/live.json", headers={"accept": "*/*"})
    assert live.status_code == 200 and live.headers["content-type"] == "application/json"
    body = live.json()
    assert body["state"] == "progressing" and body["weight:candidate"] == "10%"
    assert body["weight:stable"] == "90%" and body["outcome"] == "Inconclusive"
    assert body["step"] == "1 of 3" and body["_signature"]


def test_the_confirm_page_asks_before_acting(client: TestClient, store: Store) -> None:
    page = client.get(_rollout_url(store) + "/abort")
    assert page.status_code == 200
    assert 'id="confirm-form"' in page.text and "back to the stable version" in page.text
    assert f'action="{_rollout_url(store)}/abort"' in page.text
    assert csrf_of(page.text)
    assert client.get(_rollout_url(store) + "/explode").status_code == 404


def test_unknown_model_environment_or_action_is_a_404(client: TestClient,
                                                       store: Store) -> None:
    assert client.get("/models/nope/rollouts/production").status_code == 404
    assert client.get(f"/models/{store.demo.fraud}/rollouts/moon").status_code == 404
    assert client.get("/models/nope/monitoring").status_code == 404
    assert client.get(f"/models/{store.demo.churn}/monitoring?environment=moon"
                      ).status_code == 404
    r = client.get(f"/models/{store.demo.fraud}/rollouts/moon/live.json",
                   headers={"accept": "application/json"})
    assert r.status_code == 404 and r.json()["fix"]
    # a model with no rollout in an environment: the page says so, offers a rollback only
    empty = client.get(f"/models/{store.demo.churn}/rollouts/staging")
    assert empty.status_code == 200 and 'id="no-rollout"' in empty.text
    assert 'id="action-pause"' not in empty.text


def test_a_post_without_csrf_is_refused(client: TestClient, store: Store) -> None:
    r = client.post(_rollout_url(store) + "/pause", data={"reason": "x"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post(f"/models/{store.demo.churn}/monitoring/alerts/"
                    f"{store.demo.alert_id}/ack", data={"note": "x"})
    assert r.status_code == 403
    rollout = RolloutManager(store.registry).status(store.demo.fraud, "production")
    assert rollout is not None and rollout.state == "progressing"


def test_monitoring_page_draws_the_snapshots(client: TestClient, store: Store) -> None:
    page = client.get(_monitoring_url(store))
    assert page.status_code == 200, page.text
    html = page.text
    reg, churn = store.registry, store.demo.churn
    for key, metric in (("throughput", "throughput_rps"), ("latency", "latency_p50_ms"),
                        ("errors", "error_rate"), ("quality", "accuracy"),
                        ("health", "health")):
        series = snapshot_series(reg, churn, metric, environment="production")
        figure = _text(html, rf'(<figure class="chart-box" id="chart-{key}".*?</figure>)')
        assert "<svg" in figure and "<polyline" in figure
        assert figure.count('<circle class="chart-point"') >= len(series) == store.live.windows
    assert html.count('data-series="p99"') > 1  # latency: both quantiles drawn
    health = snapshot_series(reg, churn, "health", environment="production")[-1].value
    assert _text(html, r'data-figure="health" data-live-key="metric:health">([^<]*)<') \
        == f"{health:.4g}"
    heat = _text(html, r'(<figure class="chart-box" id="drift-heatmap">.*?</figure>)')
    assert heat.count('data-row="a" data-col') == store.live.windows
    assert heat.count('data-row="a" data-col="4" data-value="1"') == 1
    assert heat.count('data-value="1"') == sum(len(v) for v in store.live.drifted.values())
    assert _text(html, r'id="drifted-latest">([^<]*)<') == "a"
    rows = int(_text(html, r'id="distribution" data-feature="a" data-rows="(\d+)"'))
    assert rows > 0 and 'data-series="reference"' in html
    alert = AlertManager(reg).alerts(churn, environment="production")[0]
    assert f'data-live-key="alert:{alert.id}">firing<' in html
    assert 'class="ack-form"' in html
    other = client.get(_monitoring_url(store) + "&feature=b")
    assert 'id="distribution" data-feature="b"' in other.text


def test_monitoring_page_lists_each_features_drift_test(client: TestClient,
                                                         store: Store) -> None:
    html = client.get(_monitoring_url(store)).text
    reg, churn = store.registry, store.demo.churn
    version = ModelMonitor(reg).served_version(churn, "production")
    assert version is not None
    now = datetime.now(UTC)
    expected = window_drift(reg, churn, start=now - ModelMonitor(reg).window, end=now,
                            environment="production", version=version).versions[version]
    assert expected.data is not None
    table = _text(html, r'(<table class="data" id="drift-tests">.*?</table>)')
    rows = dict(re.findall(r'<tr data-feature="([^"]+)" data-drifted="(yes|no)"', table))
    assert rows == {f.feature: "yes" if f.drifted else "no" for f in expected.data.features}
    assert rows["a"] == "yes" and rows["b"] == "no"  # the logged traffic shifted a only
    for f in expected.data.features:
        assert f'data-feature="{f.feature}"' in table
        assert _text(table, rf'data-feature="{f.feature}".*?data-p="([^"]*)"') \
            == f"{f.p_value:.4g}"
    assert f"{expected.n_rows} of {expected.n_total} logged rows of {version}" in html
    staging = client.get(f"/models/{churn}/monitoring?environment=staging").text
    assert 'id="drift-tests"' not in staging and 'id="drift-tests-note"' in staging


def test_monitoring_live_json(client: TestClient, store: Store) -> None:
    body = client.get(f"/models/{store.demo.churn}/monitoring/live.json",
                      headers={"accept": "application/json"}).json()
    assert body["metric:health"] == "65" and body["metric:drift_share"] == "0.25"
    assert body["alerts:firing"] == "1" and body["alerts:acknowledged"] == "0"


def test_a_viewer_sees_no_buttons_and_forged_posts_get_403(team: TestClient,
                                                            store: Store) -> None:
    login(team, store.tokens[Role.VIEWER])
    page = team.get(_rollout_url(store))
    assert page.status_code == 200 and 'id="actions"' not in page.text
    assert page.text.count("<button") == 1  # log out
    assert team.get(_rollout_url(store) + "/rollback").status_code == 403
    forged = team.post(_rollout_url(store) + "/rollback",
                       data={"reason": "x", "csrf": csrf_of(page.text)})
    assert forged.status_code == 403 and "developer" in forged.text
    monitoring = team.get(_monitoring_url(store))
    assert monitoring.status_code == 200 and 'class="ack-form"' not in monitoring.text
    assert monitoring.text.count("<button") == 2  # log out, and "show" of the feature form
    forged = team.post(f"/models/{store.demo.churn}/monitoring/alerts/"
                       f"{store.demo.alert_id}/ack",
                       data={"note": "x", "csrf": csrf_of(page.text)})
    assert forged.status_code == 403
    assert AlertManager(store.registry).alerts(store.demo.churn)[0].acked_by is None
    rollout = RolloutManager(store.registry).status(store.demo.fraud, "production")
    assert rollout is not None and rollout.state == "progressing"


def test_a_developer_acknowledges_but_production_rollouts_need_an_approver(
        team: TestClient, store: Store) -> None:
    login(team, store.tokens[Role.DEVELOPER])
    page = team.get(_monitoring_url(store))
    r = team.post(f"/models/{store.demo.churn}/monitoring/alerts/{store.demo.alert_id}/ack",
                  data={"note": "looking", "csrf": csrf_of(page.text),
                        "environment": "production"}, follow_redirects=False)
    assert r.status_code == 303 and "acked=" in r.headers["location"]
    alert = AlertManager(store.registry).alerts(store.demo.churn)[0]
    assert alert.acked_by == "developer-user" and alert.state == "firing"
    after = team.get(_monitoring_url(store))
    assert f'data-live-key="alert:{alert.id}">acknowledged<' in after.text
    assert _text(after.text, r'id="count-acknowledged">(\d+)<') == "1"
    confirm = team.get(_rollout_url(store) + "/pause")  # the buttons show for developers
    assert confirm.status_code == 200
    refused = team.post(_rollout_url(store) + "/pause",
                        data={"reason": "x", "csrf": csrf_of(confirm.text)})
    assert refused.status_code == 403 and "approver" in refused.text


def test_an_approver_pauses_resumes_and_rolls_back(team: TestClient, store: Store) -> None:
    login(team, store.tokens[Role.APPROVER])
    confirm = team.get(_rollout_url(store) + "/pause")
    r = team.post(_rollout_url(store) + "/pause",
                  data={"reason": XSS, "csrf": csrf_of(confirm.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=pause")
    page = team.get(r.headers["location"])
    assert 'id="done"' in page.text and XSS not in page.text
    assert "&lt;script&gt;" in page.text
    assert 'id="action-resume"' in page.text and 'id="action-pause"' not in page.text
    team.post(_rollout_url(store) + "/resume", data={"csrf": csrf_of(page.text)})
    rollout = RolloutManager(store.registry).status(store.demo.fraud, "production")
    assert rollout is not None and rollout.state == "progressing"
    team.post(_rollout_url(store) + "/rollback",
              data={"reason": "from the dashboard", "csrf": csrf_of(page.text)})
    rollout = RolloutManager(store.registry).status(store.demo.fraud, "production")
    assert rollout is not None and rollout.state == "rolled_back"
    events = store.registry.audit_log(subject=f"model/{store.demo.fraud}/env/production",
                                      limit=10)
    mine = [e.action for e in events if e.actor == "approver-user"]
    assert {"rollout.pause", "rollout.resume", "rollout.rollback"} <= set(mine)


def test_svg_helpers_escape_and_handle_empty_input() -> None:
    empty = lines_chart([("a", []), ("b", [])], title=XSS, x_label="x", y_label="y")
    assert "no data" in empty and XSS not in empty
    two = lines_chart([("p50", [Point(1.0, 2.0), Point(2.0, 3.0)]),
                       (XSS, [Point(1.0, 5.0)])], title="t", x_label="x", y_label="y")
    assert two.count("<polyline") == 1 and XSS not in two
    bars = bar_chart([XSS, "b"], [("ref", [0.5, 0.5]), ("cur", [1.0, 0.0])], title="t",
                     y_label="share")
    assert bars.count("<rect class=\"chart-bar\"") == 4 and XSS not in bars
    heat = heatmap([XSS], [1.0, 2.0], [[1.0, None]], title="t", x_label="x")
    assert 'data-value="1"' in heat and "not tested" in heat and XSS not in heat
    assert "no data" in heatmap([], [], [], title="t", x_label="x")
