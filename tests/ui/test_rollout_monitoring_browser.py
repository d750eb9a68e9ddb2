"""The rollout and monitoring pages in a real browser (Debian's Chromium driven by
Playwright) against ``mlops serve --auth``: the pages load with no console error, failed or
foreign request; their numbers match the API; the charts are drawn; a change made through
the API shows up without a reload (and the page is not reloaded); a viewer sees no
mutating button and a forged post gets 403; the rollback button rolls back. Screenshots
(``rollout.png``, ``monitoring.png``) go where ``test_dashboard_browser.SHOTS`` says.
Skipped without ``/usr/bin/chromium`` unless ``MLOPS_TEST_REQUIRE_BROWSER=1``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mlops.config import Settings
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server
from tests.ui.conftest import add_rollout_and_monitoring, build_demo, role_tokens
from tests.ui.test_dashboard_browser import (
    CHROMIUM,
    Watch,
    log_in,
    new_context,
    shot,
    unavailable,
)
from tests.ui.test_dashboard_browser import Served as DashboardServed

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LIVE_WAIT_MS = 15_000  # live.js polls every 3 s






@dataclass
class Served(DashboardServed):
    """The served store, with the API's write calls and this module's pages."""

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(f"{self.url}/api{path}", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {self.tokens[Role.ADMIN]}"})
        assert r.status_code == 200, r.text
        return r.json()

    @property
    def rollout(self) -> str:
        return f"{self.url}/models/{self.demo.fraud}/rollouts/production"

    @property
    def monitoring(self) -> str:
        return f"{self.url}/models/{self.demo.churn}/monitoring?environment=production"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``mlops serve --auth`` over the demo plus a fraud canary with an analysis and churn's
    metric snapshots."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing")
    root = tmp_path_factory.mktemp("live-browser")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    demo = build_demo(registry, root / "work")
    add_rollout_and_monitoring(registry, demo)
    tokens = role_tokens(registry)
    server = start_server(home, "--auth", "--controller-interval", "3600")
    r = httpx.get(server.url + "/login", headers={"accept": "text/html"}, timeout=10)
    assert r.status_code == 200, "mlops serve mounts the dashboard at /"
    try:
        yield Served(server, registry, demo, tokens)
    finally:
        server.stop()



def _mark(page: Page) -> None:
    """A marker that a reload would erase."""
    page.evaluate("window.__notReloaded = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def test_rollout_page_shows_the_api_numbers_and_updates_live(browser: Browser,
                                                             served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.APPROVER)
    page.goto(served.rollout)
    page.wait_for_load_state("networkidle")
    api = served.api(f"/v1/rollouts/{served.demo.fraud}/production")
    assert page.locator("#state").inner_text() == api["state"] == "progressing", api["reason"]
    split = page.locator(f'tr[data-role="candidate"][data-version="{api["candidate"]}"]')
    assert split.get_attribute("data-weight") == f'{api["weight"]:g}'
    assert page.locator("article.analysis").count() == len(api["analyses"])
    newest = api["analyses"][-1]
    error = newest["metrics"]["error_rate"]
    row = page.locator("article.analysis").first.locator('tr[data-metric="error_rate"]')
    assert row.locator(".ci-low").inner_text() == f'{error["ci_low"]:.4g}'
    assert row.locator(".ci-high").inner_text() == f'{error["ci_high"]:.4g}'
    assert row.locator(".p-non-inferior").inner_text() == f'{error["p_non_inferior"]:.4g}'
    # the sample-ratio check needs settled rows: the newest look that had them
    number, srm = [(i + 1, a["metrics"]["sample_ratio"]) for i, a in
                   enumerate(api["analyses"]) if "sample_ratio" in a["metrics"]][-1]
    assert page.locator(f'article[data-analysis="{number}"] .srm').get_attribute(
        "data-srm-p") == f'{srm["p_value"]:.4g}'
    assert page.locator("#live").get_attribute("data-live-polling") == "on"
    shot(page, "rollout.png")

    _mark(page)  # pause through the API: the page shows it without a reload
    served.post(f"/v1/rollouts/{served.demo.fraud}/production/pause", {"reason": "look"})
    page.locator("#state", has_text="paused").wait_for(timeout=LIVE_WAIT_MS)
    assert _not_reloaded(page)
    assert page.locator("#reason").inner_text() == "look"
    served.post(f"/v1/rollouts/{served.demo.fraud}/production/resume", {"reason": "go on"})
    page.locator("#state", has_text="progressing").wait_for(timeout=LIVE_WAIT_MS)
    assert _not_reloaded(page) and page.locator("#live-note").is_visible()
    watch.clean()
    context.close()


def test_monitoring_page_draws_charts_and_updates_live(browser: Browser,
                                                       served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.DEVELOPER)
    page.goto(served.monitoring)
    page.wait_for_load_state("networkidle")
    churn = served.demo.churn
    for key, metric in (("throughput", "throughput_rps"), ("health", "health"),
                        ("errors", "error_rate")):
        series = served.api(f"/v1/monitor/{churn}/series/{metric}", environment="production")
        chart = page.locator(f"#chart-{key} svg")
        assert chart.locator("circle").count() == len(series) > 0
        assert chart.locator("polyline").count() == 1
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100
    health = served.api(f"/v1/monitor/{churn}/series/health", environment="production")
    assert page.locator('[data-figure="health"]').inner_text() == f'{health[-1]["value"]:.4g}'
    shares = served.api(f"/v1/monitor/{churn}/series/drift_share", environment="production")
    assert page.locator('#drift-heatmap rect[data-row="a"]').count() == len(shares)
    drifted = served.api(f"/v1/monitor/{churn}/series/drift:a", environment="production")
    assert page.locator('#drift-heatmap rect[data-row="a"][data-value="1"]').count() \
        == len(drifted) > 0
    assert page.locator("#distribution svg rect.chart-bar").count() > 0
    assert int(page.locator("#distribution").get_attribute("data-rows") or 0) > 0
    firing = served.api("/v1/alerts", model=churn, state="firing", environment="production")
    assert page.locator("#count-firing").inner_text() == str(len(firing))
    assert page.locator("form.ack-form").count() == len(firing) > 0
    shot(page, "monitoring.png")

    _mark(page)  # acknowledge through the API: the counts change without a reload
    served.post(f"/v1/alerts/{firing[0]['id']}/ack", {"note": "on it"})
    page.locator("#count-acknowledged", has_text="1").wait_for(timeout=LIVE_WAIT_MS)
    assert page.locator("#count-firing").inner_text() == str(len(firing) - 1)
    assert page.locator(f'[data-live-key="alert:{firing[0]["id"]}"]').inner_text() \
        == "acknowledged"
    assert _not_reloaded(page)
    watch.clean()
    context.close()


def test_polling_stops_while_the_tab_is_hidden(browser: Browser, served: Served) -> None:
    context = new_context(browser)
    page = Watch(served.url).attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    page.goto(served.rollout)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "live.json" in r.url else None)
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true,
                                                            get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(7000)
    assert polls == []
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true,
                                                            get: () => 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(500)
    assert len(polls) >= 1  # visible again: it polls at once
    context.close()


def test_a_viewer_sees_no_buttons_and_a_forged_post_gets_403(browser: Browser,
                                                             served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    for url in (served.rollout, served.monitoring):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert page.locator("#actions, form.ack-form, form[method=post] main").count() == 0
        assert page.locator("form[method=post]").count() == 1  # log out only
    watch.clean()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    forged = page.request.post(served.rollout + "/rollback",
                               form={"reason": "forged", "csrf": csrf})
    assert forged.status == 403 and "developer" in forged.text()
    assert served.api(f"/v1/rollouts/{served.demo.fraud}/production")["state"] \
        == "progressing"
    context.close()


def test_the_rollback_button_rolls_back(browser: Browser, served: Served) -> None:
    fraud = served.demo.fraud
    stable, candidate = served.demo.fraud_versions
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.APPROVER)
    page.goto(served.rollout)
    with page.expect_navigation():
        page.click("#action-rollback")
    assert page.url == served.rollout + "/rollback"
    assert page.locator("#effect").is_visible()  # it asks first
    assert served.api(f"/v1/rollouts/{fraud}/production")["state"] == "progressing"
    page.fill("#reason", "rolled back from the dashboard")
    with page.expect_navigation():
        page.click("#confirm")
    assert page.url == served.rollout + "?done=rollback"
    assert page.locator("#done").is_visible()
    assert page.locator("#state").inner_text() == "rolled_back"
    rollout = served.api(f"/v1/rollouts/{fraud}/production")
    assert rollout["state"] == "rolled_back" and rollout["candidate"] == candidate
    route = served.api(f"/v1/routes/{fraud}/production")
    assert (route["stable"], route["candidate"]) == (stable, None)
    events = served.api("/v1/audit", subject=f"model/{fraud}/env/production",
                        action="rollout.rollback")
    assert events[0]["actor"] == "approver-user"
    assert events[0]["payload"]["reason"] == "rolled back from the dashboard"
    assert page.locator('tr[data-action="rollout.rollback"]').count() >= 1
    watch.clean()
    context.close()
