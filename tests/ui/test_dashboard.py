"""The dashboard without a browser: what each page shows (against the application
layer's values), escaping, the security headers, 404s, the search language's errors,
CSRF, roles and the login flow in team mode."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from mlops.api.auth import ApiAuth
from mlops.ci.approvals import approvals
from mlops.ci.runs import RunStore
from mlops.config import Settings
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.monitoring.alerts import Observation
from mlops.monitoring.snapshots import record_snapshots
from mlops.registry.service import ModelRegistry
from mlops.ui.web import create_dashboard
from mlops.ui.web.session import SEED_COOKIE, SESSION_COOKIE, csrf_token, safe_next
from mlops.ui.web.svg import Point, line_chart
from mlops.ui.web.views import NEWEST_SHOWN, STALE_PASSES
from tests.ui.conftest import HTML, XSS, Demo, build_demo, csrf_of, login, role_tokens


@dataclass
class Store:
    settings: Settings
    registry: ModelRegistry
    demo: Demo
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("dash")
    settings = Settings(home=root / ".mlops", actor="tester")
    registry = ModelRegistry(settings)
    demo = build_demo(registry, root / "work")
    registry.set_description("fraud", XSS)
    registry.set_description("fraud", XSS, version=demo.fraud_versions[0])
    tokens = role_tokens(registry)
    return Store(settings, registry, demo, tokens)






def _version_url(name: str, version: str) -> str:
    return f"/models/{name}/versions/{version}"


# ---------------------------------------------------------------- pages and numbers
def test_models_page_shows_versions_weights_gates_and_incidents(client: TestClient,
                                                                 store: Store) -> None:
    demo = store.demo
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for name in (demo.churn, demo.fraud):
        assert f'data-model="{name}"' in page
    stable, canary = demo.churn_versions
    section = page.split(f'data-model="{demo.churn}"', 1)[1].split("</section>", 1)[0]
    rows = dict(re.findall(r'<tr data-version="([^"]+)">(.*?)</tr>', section, re.S))
    assert re.search(rf'data-env="production" data-role="stable" data-weight="'
                     rf'{100 - demo.canary_weight:g}"', rows[stable])
    assert re.search(rf'data-env="production" data-role="candidate" data-weight="'
                     rf'{demo.canary_weight:g}"', rows[canary])
    run = RunStore(store.registry).runs(demo.churn, canary, limit=1)[0]
    assert f'data-run="{run["run"]}"' in page
    assert 'data-incidents="1"' in page and "acc-low" in page
    assert "@champion" in page


def test_search_uses_the_registry_language(client: TestClient, store: Store) -> None:
    r = client.get("/", params={"q": f"name = {store.demo.fraud}"})
    assert r.status_code == 200
    assert f'data-model="{store.demo.fraud}"' in r.text
    assert f'data-model="{store.demo.churn}"' not in r.text
    bad = client.get("/", params={"q": "accuracy >>> banana"})
    assert bad.status_code == 400
    assert 'id="search-error"' in bad.text and "Fix:" in bad.text


def _health_cell(page: str, name: str, env: str) -> str:
    section = page.split(f'data-model="{name}"', 1)[1].split("</header>", 1)[0]
    cell = re.search(rf'<span class="health-cell ([^"]*)" data-env="{env}" '
                     rf'data-health="([^"]*)"[^>]*>(.*?)</span>\s*(?=<span|</div>)', section,
                     re.S)
    assert cell, section
    return f"{cell.group(1)}|{cell.group(2)}|{re.sub(r'<[^>]+>', '', cell.group(3))}"


def test_health_cells_show_the_evaluators_newest_window(client: TestClient,
                                                        store: Store) -> None:
    """The models page reads no log: a cell shows the evaluator's newest health snapshot,
    marks it stale when it is older than a few passes, and says when there is none."""
    name, reg = store.demo.churn, store.registry
    assert _health_cell(client.get("/").text, name, "production") \
        == "health-none||production: not evaluated yet"
    now = datetime.now(UTC)
    old = now - timedelta(seconds=STALE_PASSES * reg.context.settings.monitor_interval + 60)
    record_snapshots(reg, name, "", "production", old - timedelta(hours=1), old,
                     {"health": Observation(91.0, 500)})
    assert _health_cell(client.get("/").text, name, "production") == (
        f"health-healthy stale|91|production: health 91 (as of {old:%Y-%m-%d %H:%M:%S})")
    record_snapshots(reg, name, "", "production", now - timedelta(hours=1), now,
                     {"health": Observation(None, 0)})
    assert _health_cell(client.get("/").text, name, "production") \
        == "health-none||production: no traffic"
    record_snapshots(reg, name, "", "production", now - timedelta(hours=1), now,
                     {"health": Observation(65.0, 800)})
    assert _health_cell(client.get("/").text, name, "production") \
        == "health-degraded|65|production: health 65"


def test_models_page_shows_the_notable_versions_and_links_to_all(tmp_path: Path) -> None:
    registry = ModelRegistry(Settings(home=tmp_path / ".mlops", actor="tester"))
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for _ in range(NEWEST_SHOWN + 3):
        registry.register("big", model=model)
    registry.promote("big", "1.0.0", "Production")
    with TestClient(create_dashboard(registry, ApiAuth(registry.context.settings)),
                    headers=HTML) as c:
        page = c.get("/").text
        shown = re.findall(r'<tr data-version="([^"]+)">', page)
        assert shown == [f"1.0.{i}" for i in range(NEWEST_SHOWN + 2, 2, -1)] + ["1.0.0"]
        assert 'data-hidden="2"' in page and "2 older versions not shown" in page
        link = re.search(r'<p class="more"[^>]*>.*?<a href="([^"]+)">show all 8</a>', page,
                         re.S)
        assert link and link.group(1) == "/?q=name%20%3D%20%22big%22"
        every = c.get(link.group(1)).text
        assert len(re.findall(r'<tr data-version="', every)) == NEWEST_SHOWN + 3
        assert 'data-hidden' not in every


def test_version_page_shows_gates_card_compliance_lineage(client: TestClient,
                                                          store: Store) -> None:
    name, version = store.demo.churn, store.demo.churn_versions[0]
    r = client.get(_version_url(name, version))
    assert r.status_code == 200
    page = r.text
    run = RunStore(store.registry).runs(name, version, limit=1)[0]
    gate = next(s["gate"] for s in run["report"]["steps"] if s["name"] == "gate:metrics")
    row = re.search(r'data-gate="metrics" data-check="accuracy">(.*?)</tr>', page, re.S)
    assert row, "no accuracy row in the gate report"
    assert f'{gate["actual"]["accuracy"]:.4g}' in row.group(1)
    assert f'{gate["threshold"]["accuracy"]:.4g}' in row.group(1)
    for section in ('id="signature"', 'id="example"', 'data-section="model_details"',
                    'data-framework="sr11-7"', 'data-framework="eu-ai-act"',
                    'data-kind="version"', "<svg"):
        assert section in page, section
    assert 'id="approve-form"' in page  # the local user is an admin


def test_user_data_is_escaped(client: TestClient, store: Store) -> None:
    for url in ("/", _version_url(store.demo.fraud, store.demo.fraud_versions[0])):
        page = client.get(url).text
        assert XSS not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_every_response_carries_the_security_headers(client: TestClient,
                                                     store: Store) -> None:
    for url in ("/", _version_url(store.demo.churn, "1.0.0"), "/static/dashboard.css",
                "/no/such/page", _version_url("nope", "1")):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_unknown_model_or_version_is_a_404_page_with_a_fix(client: TestClient,
                                                           store: Store) -> None:
    for url in (_version_url(store.demo.churn, "9.9.9"), _version_url("nope", "1.0.0")):
        r = client.get(url)
        assert r.status_code == 404 and 'data-status="404"' in r.text
        assert "Fix:" in r.text
    api_like = client.get("/v2/nothing", headers={"accept": "application/json"})
    assert api_like.status_code == 404 and api_like.json()["fix"]


# ---------------------------------------------------------------- CSRF and roles
def test_a_post_without_the_csrf_token_is_refused(client: TestClient, store: Store) -> None:
    url = _version_url(store.demo.fraud, store.demo.fraud_versions[1]) + "/approve"
    client.get("/")  # the browser gets its seed cookie
    for data in ({"comment": "ok"}, {"comment": "ok", "csrf": "0" * 64}):
        r = client.post(url, data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    other = TestClient(client.app, headers=HTML)  # a page on another site: no cookies
    token = csrf_of(client.get(url.removesuffix("/approve")).text)
    r = other.post(url, data={"comment": "ok", "csrf": token})
    assert r.status_code == 403
    assert approvals(store.registry, store.demo.fraud, store.demo.fraud_versions[1]) == []


def test_an_approver_approves_from_the_page(client: TestClient, store: Store) -> None:
    name, version = store.demo.fraud, store.demo.fraud_versions[1]
    page = client.get(_version_url(name, version)).text
    r = client.post(_version_url(name, version) + "/approve",
                    data={"comment": "looks right", "csrf": csrf_of(page)},
                    follow_redirects=False)
    assert r.status_code == 303 and "decided=approve" in r.headers["location"]
    assert approvals(store.registry, name, version) == ["tester"]
    again = client.post(_version_url(name, version) + "/approve",
                        data={"comment": "again", "csrf": csrf_of(page)})
    assert again.status_code == 400 and "already" in again.text  # the rule's own message


def test_team_mode_login_flow(team: TestClient, store: Store) -> None:
    r = team.get("/models/churn/versions/1.0.0", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=%2Fmodels%2Fchurn")
    form = team.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    no_csrf = team.post("/login", data={"token": store.tokens[Role.VIEWER]})
    assert no_csrf.status_code == 403
    wrong = team.post("/login", data={"token": "mlops_wrong", "csrf": csrf_of(form.text)})
    assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
    ok = team.post("/login", data={"token": store.tokens[Role.VIEWER], "csrf": csrf_of(form.text),
                                   "next": "/models/churn/versions/1.0.0"},
                   follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/models/churn/versions/1.0.0"
    cookie = ok.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/" in cookie
    page = team.get("/")
    assert page.status_code == 200 and 'data-role="viewer"' in page.text
    out = team.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert team.get("/", follow_redirects=False).status_code == 303


def test_a_viewer_sees_no_buttons_and_a_forged_post_gets_403(team: TestClient,
                                                             store: Store) -> None:
    name, version = store.demo.churn, store.demo.churn_versions[1]
    login(team, store.tokens[Role.VIEWER])
    page = team.get(_version_url(name, version))
    assert page.status_code == 200
    assert 'id="approve-form"' not in page.text and 'id="reject-form"' not in page.text
    assert "<button" in page.text  # only the log-out button
    assert page.text.count("<button") == 1
    forged = team.post(_version_url(name, version) + "/reject",
                       data={"comment": "no", "csrf": csrf_of(page.text)})
    assert forged.status_code == 403 and "approver" in forged.text
    assert not any(e.action == "version.reject"
                   for e in store.registry.audit_log(subject=f"model/{name}/{version}"))


def test_an_approver_in_team_mode_is_named_in_the_audit_log(team: TestClient,
                                                           store: Store) -> None:
    name, version = store.demo.churn, store.demo.churn_versions[1]
    login(team, store.tokens[Role.APPROVER])
    page = team.get(_version_url(name, version))
    assert 'id="approve-form"' in page.text
    r = team.post(_version_url(name, version) + "/reject",
                  data={"comment": "canary not convincing", "csrf": csrf_of(page.text)},
                  follow_redirects=False)
    assert r.status_code == 303
    event = store.registry.audit_log(subject=f"model/{name}/{version}",
                                     action="version.reject")[0]
    assert event.actor == "approver-user"


def test_a_revoked_token_ends_the_session(team: TestClient, store: Store) -> None:
    info, token = TokenService(store.registry).create("short-lived", Role.VIEWER)
    login(team, token)
    assert team.get("/", follow_redirects=False).status_code == 200
    TokenService(store.registry).revoke(info.token_id, "test")
    r = team.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_single_user_mode_needs_nologin(client: TestClient) -> None:
    r = client.get("/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = client.get("/")
    assert 'data-role="admin"' in page.text and "single-user mode" in page.text


def test_large_bodies_are_refused(client: TestClient) -> None:
    r = client.post("/logout", content=b"x" * 100_000,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


# ---------------------------------------------------------------- helpers
def test_csrf_token_is_bound_to_seed_and_session() -> None:
    assert csrf_token("a", "t") != csrf_token("b", "t") != csrf_token("a", "u")
    assert csrf_token("a", None) == csrf_token("a", "")
    assert SEED_COOKIE != SESSION_COOKIE


@pytest.mark.parametrize(("target", "expected"), [
    ("/models/x", "/models/x"), ("//evil.example/", "/"), ("https://evil.example", "/"),
    ("/\\evil", "/"), (None, "/"), ("/a\nb", "/")])
def test_login_redirects_stay_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_line_chart_escapes_and_handles_small_series() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    svg = line_chart([Point(t0 + timedelta(days=i), v, f"<v{i}>")
                      for i, v in enumerate([0.8, 0.9, 0.85])],
                     title="<b>acc</b>", x_label="time & date", y_label="accuracy")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<b>" not in svg and "&lt;b&gt;acc&lt;/b&gt;" in svg and "time &amp; date" in svg
    assert "<polyline" in svg and svg.count("<circle") == 3 and "&lt;v1&gt;" in svg
    empty = line_chart([], title="t", x_label="x", y_label="y")
    assert "no data" in empty and "<polyline" not in empty
    one = line_chart([Point(1.0, float("nan")), Point(2.0, 0.5)], title="t", x_label="x",
                     y_label="y")
    assert one.count("<circle") == 1 and "<polyline" not in one


def test_templates_and_stylesheet_ship_in_the_package() -> None:
    root = Path(__file__).resolve().parents[2] / "mlops" / "ui" / "web"
    assert (root / "static" / "dashboard.css").is_file()
    for path in (root / "templates").glob("*.html"):
        text = path.read_text()
        assert "style=" not in text and "<script" not in text, path.name  # CSP: nothing inline


def test_a_login_lockout_says_when_to_retry(team: TestClient) -> None:
    """The API sent Retry-After with its 429; the login page did not."""
    form = team.get("/login")
    statuses = [team.post("/login", data={"token": f"mlops_wrong{i}",
                                          "csrf": csrf_of(form.text)}) for i in range(12)]
    locked = statuses[-1]
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert statuses[0].status_code == 401 and "Retry-After" not in statuses[0].headers
