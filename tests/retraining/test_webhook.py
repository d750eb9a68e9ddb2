"""A webhook job over real HTTP: ``mlops serve``'s scheduler calls an orchestrator (a
server on a loopback port, allowed by the egress policy), which reports back on the job's
callback with the job's token; a wrong token is refused; the reported model goes through
the gates and replaces production."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from mlops.deployment.routes import RoutingService
from mlops.errors import ConfigError
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RetrainService
from mlops.store.retrain import JobState
from tests.retraining.test_loop import store  # noqa: F401  (the fixture)
from tests.serving.conftest import start_server


class _Orchestrator(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).calls.append({"body": json.loads(body), "headers": dict(self.headers)})
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def test_a_webhook_job_completes_by_callback(store: ModelRegistry,  # noqa: F811
                                             tmp_path: Path) -> None:
    hook = HTTPServer(("127.0.0.1", 0), _Orchestrator)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/hooks/retrain?key=SECRET"
    config = (f"webhook: {{url: '{url}', headers: {{X-Team: ml}}}}\n"
              "timeout: 2m\nauto_deploy: true\ntriggers:\n  - {name: by-hand, kind: manual}\n")
    with pytest.raises(ConfigError, match=r"Outbound requests to http://127\.0\.0\.1:[0-9]+ are refused"):  # loopback: refused when stored
        RetrainService(store).set_config("churn", config)
    service = RetrainService(ModelRegistry(store.settings.model_copy(
        update={"egress_allow": ["127.0.0.1"]})))
    service.set_config("churn", config)
    job = service.run("churn", "an orchestrator retrains it")
    srv = start_server(store.settings.home, "--controller-interval", "3600", env_extra={
        "MLOPS_RETRAIN_INTERVAL": "0.5", "MLOPS_EGRESS_ALLOW": '["127.0.0.1"]',
        "MLOPS_POLICY_FILE": store.settings.policy_file})
    try:
        deadline = time.monotonic() + 60
        while not _Orchestrator.calls and time.monotonic() < deadline:
            time.sleep(0.1)
        [call] = _Orchestrator.calls
        body = call["body"]
        assert call["headers"]["X-Team"] == "ml" and body["job"] == job.id
        assert body["callback"]["url"].endswith(f"/api/v1/retrain/jobs/{job.id}/complete")
        window = body["data"]["window"]["path"]
        model = tmp_path / "from-orchestrator.skops"
        subprocess.run([sys.executable, "-c", (
            "import pandas as pd, skops.io as sio, sys\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "w = pd.read_parquet(sys.argv[1])\n"
            "sio.dump(LogisticRegression().fit(w[['x0','x1','x2']], w['label'].astype(int)),"
            " sys.argv[2])\n"), window, str(model)], check=True)
        complete = f"{srv.url}/api/v1/retrain/jobs/{job.id}/complete"
        report = {"status": "succeeded", "model_path": str(model), "metrics": {"orchestrator_score": 0.9}}
        wrong = httpx.post(complete, json=report, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = httpx.post(complete, json=report,
                           headers={"Authorization": body["callback"]["authorization"]})
        assert right.status_code == 200, right.text
        again = httpx.post(complete, json=report,
                           headers={"Authorization": body["callback"]["authorization"]})
        assert again.status_code in (400, 401)  # once only
        while service.job(job.id)[0].state is JobState.RUNNING and \
                time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        srv.stop()
        hook.shutdown()
    done, _ = service.job(job.id)
    assert done.state is JobState.SUCCEEDED, done.outcome
    assert done.outcome["webhook"] == f"http://127.0.0.1:{hook.server_address[1]}/..."
    assert RoutingService(store).served("churn", "production").stable == done.outcome["version"]
    assert store.get_version("churn", done.outcome["version"]).metrics["orchestrator_score"] == 0.9
    assert any(e.action == "retrain.job.callback" for e in store.audit_log(
        subject=f"model/churn/retrain/{job.id}"))


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    _Orchestrator.calls = []


def test_a_server_stop_interrupts_its_job_kills_the_process_and_requeues_it(
        store: ModelRegistry, tmp_path: Path) -> None:  # noqa: F811
    import os

    pid_file = tmp_path / "job.pid"
    (tmp_path / "hang.py").write_text(
        "import os, pathlib, subprocess, sys, time\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n")
    service = RetrainService(store)
    service.set_config("churn", f"command: [{sys.executable!r}, {str(tmp_path / 'hang.py')!r}]"
                                "\ntimeout: 10m\ntriggers:\n  - {name: by-hand, kind: manual}\n")
    job = service.run("churn", "before a restart")
    srv = start_server(store.settings.home, "--controller-interval", "3600",
                       env_extra={"MLOPS_RETRAIN_INTERVAL": "0.5"})
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
    finally:
        srv.stop()
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        for _ in range(50):
            os.killpg(pid, 0)
            time.sleep(0.1)
    done, _ = service.job(job.id)
    assert done.state is JobState.INTERRUPTED, done.outcome
    [again] = [j for j in service.jobs("churn") if j.id != job.id]
    assert again.state is JobState.QUEUED
    assert any(r["trigger"] == "requeue" for r in again.reasons)


def test_a_webhook_error_quotes_none_of_the_webhooks_secrets() -> None:
    """An HTTP library's error may quote a header value (h11: ``Illegal header value
    b'...'``) or the URL; job outcomes are read by viewers (the red team's)."""
    from mlops.retraining.config import Webhook
    from mlops.retraining.loop import _scrubbed

    hook = Webhook(url="https://ci.example.com/hook?key=QSECRET",
                   headers={"Authorization": "Bearer HSECRET\n"}, body={"token": "BSECRET"})
    message = _scrubbed("the webhook could not be called: Illegal header value "
                        "b'Bearer HSECRET\\n' for https://ci.example.com/hook?key=QSECRET "
                        "(BSECRET)", hook)
    assert not [s for s in ("QSECRET", "HSECRET", "BSECRET") if s in message], message
    assert "https://ci.example.com/..." in message
