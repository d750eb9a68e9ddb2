"""The retraining and governance pages in a real browser (Debian's Chromium driven by
Playwright) against ``mlops serve --auth``: they load with no console error, no failed
request and nothing from another host; their numbers match the API; "retrain now" queues
a job (checked through the API); a viewer sees no mutating button and a forged form post
from a viewer gets 403. Screenshots go where ``test_dashboard_browser.SHOTS`` says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mlops.config import Settings
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server
from tests.ui.conftest import RETRAIN_LOG, add_retraining_and_governance, build_demo, role_tokens
from tests.ui.test_dashboard_browser import (
    CHROMIUM,
    Served,
    Watch,
    log_in,
    new_context,
    serves_dashboard,
    shot,
    unavailable,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``mlops serve --auth`` over the demo with churn's retraining and KPIs."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing")
    root = tmp_path_factory.mktemp("browser-rg")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    demo = build_demo(registry, root / "work")
    add_retraining_and_governance(registry, demo, root / "work")
    tokens = role_tokens(registry)
    server = start_server(home, "--auth", "--controller-interval", "3600")
    assert serves_dashboard(server)
    try:
        yield Served(server, registry, demo, tokens)
    finally:
        server.stop()



def test_retraining_pages_show_the_api_numbers_and_retrain_now_queues_a_job(
        browser: Browser, served: Served) -> None:
    churn = served.demo.churn
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.DEVELOPER)

    page.goto(served.url + "/retraining")
    page.wait_for_load_state("networkidle")
    jobs = served.api("/v1/retrain/jobs", limit=100)
    assert page.locator("#jobs tr[data-job]").count() == len(jobs)
    for job in jobs:
        row = page.locator(f'#jobs tr[data-job="{job["id"]}"]')
        assert row.get_attribute("data-state") == job["state"]
        if job["wall_seconds"] is not None:
            assert row.locator(".wall").get_attribute("data-wall") == \
                f'{job["wall_seconds"]:.4g}'
            assert row.locator(".rss").get_attribute("data-rss") == \
                f'{job["peak_rss_mb"]:.4g}'
    config = served.api(f"/v1/retrain/{churn}/config")["config"]
    shown = page.locator(f'.retrain-model[data-model="{churn}"] tr[data-trigger]')
    assert shown.count() == len(config["triggers"])
    assert [shown.nth(i).get_attribute("data-trigger") for i in range(shown.count())] == \
        [t["name"] for t in config["triggers"]]
    shot(page, "retraining.png")

    finished = next(j for j in jobs if j["state"] == "succeeded")
    page.goto(f'{served.url}/retraining/jobs/{finished["id"]}')
    page.wait_for_load_state("networkidle")
    assert page.locator("#job-log").inner_text() == RETRAIN_LOG  # shown as text, not run
    assert page.locator("#job-state").get_attribute("data-state") == "succeeded"

    page.goto(f"{served.url}/models/{churn}/retraining")
    decisions = served.api(f"/v1/retrain/{churn}/decisions")
    assert page.locator("#decisions tr[data-decision]").count() == len(decisions)
    page.fill("#run-reason", "asked for in the browser test")
    with page.expect_navigation():
        page.click("#run-form button[type=submit]")
    assert "queued=" in page.url and page.locator("#queued").is_visible()
    after = served.api("/v1/retrain/jobs", model=churn, limit=1)[0]
    assert after["id"] not in {j["id"] for j in jobs}
    assert after["state"] in ("queued", "running")
    assert after["reasons"][-1]["reason"] == "asked for in the browser test"
    assert after["created_by"] == "developer-user"
    assert page.locator(f'#jobs tr[data-job="{after["id"]}"]').count() == 1
    watch.clean()
    context.close()


def test_governance_pages_show_the_api_numbers(browser: Browser, served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)

    page.goto(served.url + "/governance")
    page.wait_for_load_state("networkidle")
    verified = served.api("/v1/audit/verify")
    chain = page.locator("#chain")
    assert chain.get_attribute("data-ok") == "true" and verified["ok"]
    assert int(page.locator("#chain-events").inner_text()) == verified["events"]
    events = served.api("/v1/audit", limit=100)
    rows = page.locator("table.audit tr[data-seq]")
    assert rows.count() == len(events)
    assert rows.first.get_attribute("data-seq") == str(events[0]["seq"])
    shot(page, "governance.png")

    page.fill("#audit-filter input[name=subject]", f"model/{served.demo.churn}")
    page.fill("#audit-filter input[name=action]", "retrain.")
    with page.expect_navigation():
        page.click("#audit-filter button[type=submit]")
    filtered = served.api("/v1/audit", subject=f"model/{served.demo.churn}",
                          action="retrain.")
    assert page.locator("table.audit tr[data-seq]").count() == len(filtered)

    page.goto(f"{served.url}/models/{served.demo.churn}/governance")
    page.wait_for_load_state("networkidle")
    assert page.locator("#compliance [data-framework]").count() == 2
    assert page.locator('tr[data-kpi="retention"] .kpi-met').get_attribute("data-met") == "yes"
    assert page.locator('[data-missing="KPI handling_cost"]').is_visible()
    score = page.locator("#maturity-score").get_attribute("data-score")
    assert score is not None and 0 <= float(score) <= 5
    shot(page, "model-governance.png")
    watch.clean()
    context.close()


def test_a_viewer_sees_no_retrain_buttons_and_a_forged_post_gets_403(
        browser: Browser, served: Served) -> None:
    churn = served.demo.churn
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    before = served.api("/v1/retrain/jobs", model=churn)
    queued = [j for j in before if j["state"] == "queued"]
    page.goto(f"{served.url}/models/{churn}/retraining")
    page.wait_for_load_state("networkidle")
    assert page.locator("#run-form, .cancel-form").count() == 0
    assert page.locator("button").all_inner_texts() == ["Log out"]
    page.goto(f"{served.url}/retraining")
    assert page.locator("main button").count() == 0
    watch.clean()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    forged = page.request.post(f"{served.url}/models/{churn}/retraining/run",
                               form={"reason": "forged", "csrf": csrf})
    assert forged.status == 403 and "developer" in forged.text()
    if queued:
        forged = page.request.post(f'{served.url}/retraining/jobs/{queued[0]["id"]}/cancel',
                                   form={"csrf": csrf})
        assert forged.status == 403
    assert served.api("/v1/retrain/jobs", model=churn) == before
    context.close()


def test_an_unknown_job_is_a_404_page(browser: Browser, served: Served) -> None:
    context = new_context(browser)
    watch = Watch(served.url)
    page = watch.attach(context.new_page())
    log_in(page, served, Role.VIEWER)
    response = page.goto(f"{served.url}/retraining/jobs/424242")
    assert response is not None and response.status == 404
    assert "424242" in page.locator(".problem .message").inner_text()
    watch.statuses = [s for s in watch.statuses if not s.endswith("/retraining/jobs/424242")]
    watch.errors = [e for e in watch.errors if "404" not in e]
    watch.clean()
    context.close()
