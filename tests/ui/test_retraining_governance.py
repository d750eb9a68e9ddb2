"""The retraining and governance pages without a browser: what they show against the
application layer's values, the retrain-now and cancel forms (roles, CSRF, the refusal of
a model without a configuration), log escaping, filters and 404s."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from mlops.config import Settings
from mlops.governance.maturity import assess_maturity
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RetrainService
from tests.ui.conftest import (
    RETRAIN_LOG,
    Demo,
    RetrainDemo,
    add_retraining_and_governance,
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
    retrain: RetrainDemo
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("retrain-gov")
    settings = Settings(home=root / ".mlops", actor="tester")
    registry = ModelRegistry(settings)
    demo = build_demo(registry, root / "work")
    retrain = add_retraining_and_governance(registry, demo, root / "work")
    tokens = role_tokens(registry)
    return Store(settings, registry, demo, retrain, tokens)






# ------------------------------------------------------------------------ retraining
def test_the_overview_shows_each_models_triggers_and_the_queue(client: TestClient,
                                                              store: Store) -> None:
    r = client.get("/retraining")
    assert r.status_code == 200
    page = r.text
    assert 'data-model="churn" data-configured="yes"' in page
    assert 'data-model="fraud" data-configured="no"' in page
    for name, kind in (("drift-high", "drift"), ("acc-drop", "performance"),
                       ("by-hand", "manual")):
        assert f'data-trigger="{name}" data-kind="{kind}"' in page
    jobs = RetrainService(store.registry).jobs(None, limit=100)
    assert page.count('<tr data-job="') == len(jobs)
    done = store.retrain
    row = re.search(rf'<tr data-job="{done.job_id}" data-state="succeeded">(.*?)</tr>',
                    page, re.S)
    assert row, "the finished job is listed"
    assert f'data-wall="{done.wall_seconds:.4g}"' in row.group(1)
    assert f'data-rss="{done.peak_rss_mb:.4g}"' in row.group(1)
    assert "new labels arrived" in row.group(1)
    assert f"version {store.demo.churn_versions[1]}; pipeline passed" in row.group(1)
    assert '<a href="/retraining" aria-current="page">' in page


def test_a_models_page_shows_its_configuration_jobs_and_decisions(client: TestClient,
                                                                 store: Store) -> None:
    page = client.get("/models/churn/retraining").text
    record = RetrainService(store.registry).config_record("churn")
    assert record is not None
    assert f'data-setting="max_runs_per_day">{record.spec["max_runs_per_day"]}<' in page
    assert f'data-setting="timeout">{record.spec["timeout"]}<' in page
    decisions = RetrainService(store.registry).decisions("churn")
    assert page.count("<tr data-decision=") == len(decisions)
    assert "drift share 0.1 is below 0.3" in page
    assert 'id="run-form"' in page  # the local user is an admin
    fraud = client.get("/models/fraud/retraining").text
    assert 'id="no-config"' in fraud and "mlops retrain triggers set fraud" in fraud


def test_a_job_log_is_shown_as_text(client: TestClient, store: Store) -> None:
    r = client.get(f"/retraining/jobs/{store.retrain.job_id}")
    assert r.status_code == 200
    assert "<script>alert('job log')</script>" not in r.text
    assert "&lt;script&gt;alert(&#39;job log&#39;)&lt;/script&gt;" in r.text
    assert '<pre class="log" id="job-log">training on 900 rows' in r.text
    _, log = RetrainService(store.registry).job(store.retrain.job_id)
    assert log == RETRAIN_LOG
    assert 'id="job-state" data-state="succeeded"' in r.text
    assert "cancel-form" not in r.text  # it has ended


def test_unknown_models_and_jobs_are_404_pages(client: TestClient) -> None:
    for path in ("/models/nope/retraining", "/retraining/jobs/999999",
                 "/retraining/jobs/99999999999999999999999", "/retraining/jobs/abc",
                 "/models/nope/governance", "/models/churn/governance?version=9.9.9"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert 'data-status="404"' in r.text and 'class="fix"' in r.text, path


def test_retrain_now_queues_a_job_and_cancel_cancels_it(client: TestClient,
                                                        store: Store) -> None:
    page = client.get("/models/churn/retraining").text
    r = client.post("/models/churn/retraining/run", follow_redirects=False,
                    data={"csrf": csrf_of(page), "reason": "<b>bold</b> reason",
                          "priority": "low"})
    assert r.status_code == 303
    service = RetrainService(store.registry)
    job = service.jobs("churn", limit=1)[0]
    assert r.headers["location"] == f"/models/churn/retraining?queued={job.id}#jobs"
    assert job.state.value == "queued" and job.priority == "low"
    assert job.reasons[-1]["reason"] == "<b>bold</b> reason"
    assert job.reasons[-1]["by"] == "tester"
    shown = client.get(r.headers["location"]).text
    assert 'id="queued"' in shown and "&lt;b&gt;bold&lt;/b&gt; reason" in shown
    assert f'action="/retraining/jobs/{job.id}/cancel"' in shown
    r = client.post(f"/retraining/jobs/{job.id}/cancel", data={"csrf": csrf_of(shown)},
                    follow_redirects=False)
    assert r.status_code == 303
    assert service.job(job.id)[0].state.value == "cancelled"
    events = store.registry.audit_log(subject=f"model/churn/retrain/{job.id}",
                                      action="retrain.job.cancel")
    assert [e.actor for e in events] == ["tester"]
    again = client.post(f"/retraining/jobs/{job.id}/cancel", data={"csrf": csrf_of(shown)})
    assert again.status_code == 400 and "nothing to cancel" in again.text


def test_retrain_now_without_a_configuration_shows_the_fix(client: TestClient,
                                                           store: Store) -> None:
    page = client.get("/models/fraud/retraining").text
    before = len(RetrainService(store.registry).jobs("fraud"))
    r = client.post("/models/fraud/retraining/run", data={"csrf": csrf_of(page)})
    assert r.status_code == 409
    assert 'id="run-error"' in r.text
    assert "fraud has no retraining configuration." in r.text
    assert "mlops retrain triggers set fraud FILE" in r.text
    assert len(RetrainService(store.registry).jobs("fraud")) == before


def test_forms_without_the_csrf_token_are_refused(client: TestClient, store: Store) -> None:
    before = len(RetrainService(store.registry).jobs("churn"))
    for data in ({}, {"csrf": "0" * 64}):
        r = client.post("/models/churn/retraining/run", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post(f"/retraining/jobs/{store.retrain.job_id}/cancel", data=data)
        assert r.status_code == 403
    assert len(RetrainService(store.registry).jobs("churn")) == before


def test_a_viewer_sees_no_buttons_and_cannot_retrain(team: TestClient, store: Store) -> None:
    assert team.get("/retraining", follow_redirects=False).status_code == 303  # log in
    login(team, store.tokens[Role.VIEWER])
    before = len(RetrainService(store.registry).jobs("churn"))
    page = team.get("/models/churn/retraining").text
    assert "run-form" not in page and "cancel-form" not in page
    assert "<button" in page and page.count("<button") == 1  # log out only
    r = team.post("/models/churn/retraining/run", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and "developer" in r.text
    assert len(RetrainService(store.registry).jobs("churn")) == before


def test_a_developer_retrains_in_team_mode(team: TestClient, store: Store) -> None:
    login(team, store.tokens[Role.DEVELOPER])
    page = team.get("/models/churn/retraining").text
    assert 'id="run-form"' in page
    r = team.post("/models/churn/retraining/run", data={"csrf": csrf_of(page)},
                  follow_redirects=False)
    assert r.status_code == 303
    job = RetrainService(store.registry).jobs("churn", limit=1)[0]
    assert job.created_by == "developer-user" and job.state.value == "queued"
    RetrainService(store.registry).cancel(job.id)  # leave no queued job behind


# ------------------------------------------------------------------------ governance
def test_the_audit_page_shows_the_log_its_verification_and_checkpoint(
        client: TestClient, store: Store) -> None:
    r = client.get("/governance")
    assert r.status_code == 200
    verified = store.registry.verify_audit()
    page = r.text
    assert f'data-ok="true" data-events="{verified.events}"' in page
    assert f'<span id="chain-events">{verified.events}</span>' in page
    events = store.registry.audit_log(limit=100)
    assert page.count("<tr data-seq=") == len(events) == min(100, verified.events)
    assert f'<tr data-seq="{events[0].seq}"' in page
    found = re.search(r'id="checkpoint">(\d+):([0-9a-f]{64})<', page)
    assert found and int(found.group(1)) >= verified.events
    assert '<a href="/models/churn/governance" data-model="churn">' in page


def test_the_audit_log_filters_by_subject_action_and_period(client: TestClient,
                                                           store: Store) -> None:
    page = client.get("/governance", params={"subject": "model/churn",
                                             "action": "retrain.", "limit": "1000"}).text
    events = store.registry.audit_log(subject="model/churn", action="retrain.", limit=1000)
    assert events and page.count("<tr data-seq=") == len(events)
    assert all(f'<tr data-seq="{e.seq}" data-action="{e.action}"' in page for e in events)
    assert 'data-action="version.register"' not in page
    future = client.get("/governance", params={"since": "2999-01-01"}).text
    assert 'data-count="0"' in future and "No event matches." in future
    recent = client.get("/governance", params={"since": "1d", "limit": "5"}).text
    assert recent.count("<tr data-seq=") == 5


def test_bad_filters_say_how_to_fix_them(client: TestClient, store: Store) -> None:
    r = client.get("/governance", params={"since": "yesterday-ish"})
    assert r.status_code == 400 and 'id="filter-error"' in r.text
    assert "is not a time" in r.text and "30d" in r.text
    assert 'value="yesterday-ish"' in r.text  # kept for correcting
    r = client.get("/governance", params={"limit": "0"})
    assert r.status_code == 400 and "from 1 to 1000" in r.text
    assert r.text.count("<tr data-seq=") == len(store.registry.audit_log(limit=100))
    r = client.get("/governance", params={"subject": "<script>x</script>"})
    assert r.status_code == 200 and "<script>x</script>" not in r.text


def test_a_models_governance_page(client: TestClient, store: Store) -> None:
    r = client.get("/models/churn/governance")
    assert r.status_code == 200
    page = r.text
    stable = store.demo.churn_versions[0]  # production serves it
    assert f'id="compliance-version" data-version="{stable}"' in page
    assert 'data-framework="sr11-7"' in page and 'data-framework="eu-ai-act"' in page
    maturity = assess_maturity(store.registry, model="churn")
    assert f'data-score="{maturity.overall_score:.2f}" ' \
           f'data-level="{maturity.maturity_level}"' in page
    kpi = re.search(r'<tr data-kpi="retention">(.*?)</tr>', page, re.S)
    assert kpi and "86.5" in kpi.group(1) and 'data-met="yes"' in kpi.group(1)
    assert '<tr data-kpi="handling_cost">' in page
    assert 'data-missing="KPI handling_cost"' in page
    assert "mlops kpi record churn handling_cost VALUE" in page
    assert 'data-missing="predictions"' in page  # no traffic: cost not measured
    assert 'id="usage-summary" data-predictions="0"' in page
    chosen = client.get("/models/churn/governance",
                        params={"version": store.demo.churn_versions[1]}).text
    assert f'data-version="{store.demo.churn_versions[1]}"' in chosen
    assert "(chosen)" in chosen


def test_pages_link_to_each_other(client: TestClient) -> None:
    home = client.get("/").text
    assert '<a href="/retraining"' in home and '<a href="/governance"' in home
    assert 'href="/models/churn/retraining"' in home
    assert 'href="/models/churn/governance"' in home
