"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
``mlops serve --auth`` over a demo-like store: every page loads with no console error, no
failed request and nothing fetched from another host; the numbers match the API and the
application layer; the login flow; a viewer sees no approve/reject buttons and a forged
form post from a viewer gets 403; an approver approves from the page; an unknown version is
a 404 page. Each page is screenshotted into a temporary folder, or into
``$MLOPS_SCREENSHOTS`` when set (``MLOPS_SCREENSHOTS=docs/screenshots`` refreshes the
README's pictures): a test run leaves the clone's files as they were.

Without ``/usr/bin/chromium`` the tests are skipped, unless ``MLOPS_TEST_REQUIRE_BROWSER=1``
(set by the CI script, which installs it) makes that a failure. Playwright never downloads
a browser here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mlops.ci.approvals import approvals
from mlops.ci.runs import RunStore
from mlops.config import Settings
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import Server, start_server
from tests.ui.conftest import XSS, Demo, build_demo, role_tokens

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Error,
        Page,
        Request,
        Response,
    )

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE = os.environ.get("MLOPS_TEST_REQUIRE_BROWSER") == "1"
SHOTS = Path(os.environ.get("MLOPS_SCREENSHOTS")
             or Path(tempfile.gettempdir()) / "mlops-screenshots")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (MLOPS_TEST_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(f"{reason}; install it with apt-get install chromium (never playwright "
                "install), or set MLOPS_TEST_REQUIRE_BROWSER=1 to make this a failure")


@dataclass
class Served:
    server: Server
    registry: ModelRegistry
    demo: Demo
    tokens: dict[Role, str]

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api{path}", params=params, timeout=30,
                      headers={"Authorization": f"Bearer {self.tokens[Role.ADMIN]}"})
        r.raise_for_status()
        return r.json()


def serves_dashboard(server: Server) -> bool:
    r = httpx.get(server.url + "/login", headers={"accept": "text/html"}, timeout=10)
    return r.status_code == 200 and r.headers.get("content-type", "").startswith("text/html")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``mlops serve --auth`` over two models, CI runs, a 20 % canary and a firing alert."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing")
    root = tmp_path_factory.mktemp("browser")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    demo = build_demo(registry, root / "work")
    registry.set_description(demo.fraud, XSS, version=demo.fraud_versions[0])
    tokens = role_tokens(registry)
    args = ("--auth", "--controller-interval", "3600")
    server = start_server(home, *args)
    assert serves_dashboard(server), "mlops serve mounts the dashboard at /"
    try:
        yield Served(server, registry, demo, tokens)
    finally:
        server.stop()



@dataclass
class Watch:
    """Everything a page did that it should not: console errors, uncaught exceptions,
    failed requests, requests to another origin, error responses, dialogs."""

    origin: str
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("dialog", self._dialog)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _page_error(self, error: Error) -> None:
        self.errors.append(str(error))

    def _failed(self, request: Request) -> None:
        # the browser itself cancels a request of the page it is leaving (its favicon,
        # say) when the test navigates on: not a failure of the server
        if request.failure == "net::ERR_ABORTED" and request.url.endswith("/favicon.svg"):
            return
        self.failed.append(f"{request.url}: {request.failure}")

    def _request(self, request: Request) -> None:
        if not request.url.startswith(self.origin + "/"):
            self.foreign.append(request.url)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.statuses.append(f"{response.status} {response.url}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.failed == [], self.failed
        assert self.foreign == [], self.foreign
        assert self.statuses == [], self.statuses
        assert self.dialogs == [], self.dialogs


def new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    return context


def log_in(page: Page, served: Served, role: Role) -> None:
    page.goto(served.url + "/login")
    page.fill("#token", served.tokens[role])
    with page.expect_navigation():
        page.click("form.login button[type=submit]")
    assert page.locator(f'[data-role="{role.value}"]').count() == 1


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _version(served: Served, name: str, version: str) -> str:
    return f"{served.url}/models/{name}/versions/{version}"


def test_login_flow_in_team_mode(browser: Browser, served: Served) -> None:
    context = new_context(browser)
    page = Watch(served.url).attach(context.new_page())
    page.goto(served.url + "/")
    assert page.url.startswith(served.url + "/login?next=")
    shot(page, "login.png")
    page.fill("#token", "mlops_not_a_token")
    page.click("form.login button[type=submit]")
    assert "token" in page.locator("#login-error").inner_text().lower()
    page.fill("#token", served.tokens[Role.APPROVER])
    with page.expect_navigation():
        page.click("form.login button[type=submit]")
    assert page.url == served.url + "/"
    assert page.locator('[data-user="approver-user"][data-role="approver"]').count() == 1
    cookie = next(c for c in context.cookies() if c["name"] == "mlops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    with page.expect_navigation():
        page.click("header.top form button")
    assert page.url.startswith(served.url + "/login")
    assert not any(c["name"] == "mlops_session" for c in context.cookies())
    context.close()


def test_pages_load_cleanly_and_show_the_api_numbers(browser: Browser,
                                                     served: Served) -> None:
    demo = served.demo
    stable, canary = demo.churn_versions
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.APPROVER)

    page.goto(served.url + "/")
    page.wait_for_load_state("networkidle")
    # the stylesheet loaded under the CSP: the header has its colour
    assert page.locator("header.top").evaluate(
        "e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    route = served.api(f"/v1/routes/{demo.churn}/production")
    churn = page.locator(f'section[data-model="{demo.churn}"]')
    place = churn.locator(f'tr[data-version="{route["candidate"]}"] '
                          '.place[data-env="production"]')
    assert place.get_attribute("data-weight") == f'{route["weight"]:g}'
    assert f'{route["weight"]:g}%' in place.inner_text()
    held = churn.locator(f'tr[data-version="{route["stable"]}"] .place[data-env="production"]')
    assert f'{100 - route["weight"]:g}%' in held.inner_text()
    firing = served.api("/v1/alerts", model=demo.churn, state="firing")
    assert churn.locator(".incidents").get_attribute("data-incidents") == str(len(firing))
    assert firing[0]["rule"] in churn.locator(".incident-list").inner_text()
    models = served.api("/v1/models")
    assert page.locator("section.model").count() == len(models)
    shot(page, "models.png")

    page.goto(_version(served, demo.churn, stable))
    page.wait_for_load_state("networkidle")
    version = served.api(f"/v1/models/{demo.churn}/versions/{stable}")
    shown = page.locator('[data-metric="accuracy"]').inner_text()
    assert shown == f'{version["metrics"]["accuracy"]:.4g}'
    run = RunStore(served.registry).runs(demo.churn, stable, limit=1)[0]
    gate = next(s["gate"] for s in run["report"]["steps"] if s["name"] == "gate:metrics")
    row = page.locator('tr[data-gate="metrics"][data-check="accuracy"]')
    assert row.locator(".actual").inner_text() == f'{gate["actual"]["accuracy"]:.4g}'
    assert row.locator(".threshold").inner_text() == f'{gate["threshold"]["accuracy"]:.4g}'
    assert page.locator("#run").get_attribute("data-run") == str(run["run"])
    points = page.locator("#metric-chart svg circle").count()
    assert points == len(served.api(f"/v1/models/{demo.churn}")["versions"])
    assert page.locator('#lineage [data-kind="version"]').count() >= 1
    assert page.locator('#compliance [data-framework]').count() == 2
    assert page.locator("#approve-form button").is_visible()
    shot(page, "version.png")

    page.goto(_version(served, demo.churn, canary))
    page.wait_for_load_state("networkidle")
    assert page.locator('#metadata .place[data-env="production"]').get_attribute(
        "data-weight") == f'{route["weight"]:g}'

    page.goto(_version(served, demo.fraud, demo.fraud_versions[0]))
    page.wait_for_load_state("networkidle")
    assert page.locator("#description").inner_text() == XSS  # shown as text, not run
    watch.clean()
    context.close()


def test_a_viewer_sees_no_buttons_and_a_forged_post_gets_403(browser: Browser,
                                                             served: Served) -> None:
    name, version = served.demo.fraud, served.demo.fraud_versions[1]
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    page.goto(_version(served, name, version))
    page.wait_for_load_state("networkidle")
    assert page.locator("form[action$='/approve'], form[action$='/reject']").count() == 0
    assert page.locator("main button").count() == 0  # nothing that changes anything
    assert page.locator("button").all_inner_texts() == ["Log out"]
    watch.clean()
    shot(page, "version-viewer.png")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    forged = page.request.post(_version(served, name, version) + "/approve",
                               form={"comment": "ship it", "csrf": csrf})
    assert forged.status == 403 and "approver" in forged.text()
    assert approvals(served.registry, name, version) == []
    context.close()


def test_an_approver_approves_from_the_page(browser: Browser, served: Served) -> None:
    name, version = served.demo.fraud, served.demo.fraud_versions[1]
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.APPROVER)
    page.goto(_version(served, name, version))
    page.fill("#approve-comment", "gates and card read; approved")
    with page.expect_navigation():
        page.click("#approve-form button")
    assert "decided=approve" in page.url and page.locator("#decided").is_visible()
    assert page.locator("#approvals-count").get_attribute("data-approvals") == "1"
    events = served.api("/v1/audit", subject=f"model/{name}/{version}",
                        action="version.approve")
    assert [e["actor"] for e in events] == ["approver-user"]
    assert approvals(served.registry, name, version) == ["approver-user"]
    watch.clean()
    context.close()


def test_an_unknown_version_is_a_404_page(browser: Browser, served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    response = page.goto(_version(served, served.demo.churn, "9.9.9"))
    assert response is not None and response.status == 404
    assert page.locator('h1[data-status="404"]').is_visible()
    assert "9.9.9" in page.locator(".problem .message").inner_text()
    assert page.locator(".problem .fix").is_visible()
    shot(page, "not-found.png")
    # the page itself answered 404 on purpose; nothing else may fail
    watch.statuses = [s for s in watch.statuses if not s.endswith("/versions/9.9.9")]
    watch.errors = [e for e in watch.errors if "404" not in e]
    watch.clean()
    context.close()
