"""What a hostile web page or a careless flag can do to ``mlops serve``: forged browser
requests, DNS rebinding, a public bind without authentication, out-of-range options."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from tests.conftest import child_env
from tests.serving.conftest import Server, free_port, start_server

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]}


def test_a_browser_cannot_forge_changes_in_single_user_mode(server: Server) -> None:
    with server.client() as c:
        # a bodyless or form POST is what a page on another site can send without asking
        for headers in ({}, {"Content-Type": "text/plain"},
                        {"Content-Type": "application/x-www-form-urlencoded"},
                        {"Content-Type": "text/plain;charset=json"},
                        {"Content-Type": "multipart/form-data; boundary=json"}):
            r = c.post("/api/v1/rollback/clf/production", headers=headers, content=b"")
            assert r.status_code == 403 and "JSON" in r.json()["error"]
        cross = c.post("/api/v1/rollback/clf/production", json={},
                       headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403 and "Cross-site" in cross.json()["error"]
        opaque = c.put("/api/v1/models/clf/aliases/x", json={"version": "1.0.0"},
                       headers={"Origin": "null"})
        assert opaque.status_code == 403
        feedback = c.post("/v1/models/clf/feedback", json={"request_id": "r", "actual": 1},
                          headers={"Origin": "http://attacker.test"})
        assert feedback.status_code == 403
        same = c.put("/api/v1/models/clf/aliases/x", json={"version": "1.0.0"},
                     headers={"Origin": server.url})
        assert same.status_code == 200
        assert c.post("/api/v1/monitor/clf/evaluate", headers={"X-Requested-With": "cli"}
                      ).status_code == 200


def test_dns_rebinding_host_names_are_refused(server: Server) -> None:
    with server.client() as c:
        for host in ("evil.example", "127.0.0.1.nip.io", "attacker.test:80"):
            r = c.get("/api/v1/models", headers={"Host": host})
            assert r.status_code == 403 and "Host" in r.json()["error"]
            assert c.post("/v1/models/clf:predict", json=ROW,
                          headers={"Host": host}).status_code == 403
        for host in ("localhost", f"127.0.0.1:{server.url.rsplit(':', 1)[1]}", "[::1]:8000"):
            assert c.get("/api/v1/models", headers={"Host": host}).status_code == 200
        # decisions are remembered per Host value: asked again (and after a flood of
        # distinct values that overflows what is remembered), the answers stay the same
        for i in range(300):
            assert c.get("/v2/health/live", headers={"Host": f"h{i}.example"}
                         ).status_code == 403
        assert c.get("/api/v1/models", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/api/v1/models", headers={"Host": "localhost"}).status_code == 200


def _serve(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = child_env(MLOPS_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "mlops", "serve", *args], env=env,
                          cwd=home.parent, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "Refusing to listen"),
    (["--host", "192.0.2.10"], "Refusing to listen"),
    (["--port", "70000"], "--port"),
    (["--port", "0"], "--port"),
    (["--max-body-mb", "-1"], "max-body-mb"),
    (["--max-body-mb", "nan"], "max-body-mb"),
    (["--workers", "0"], "workers"),
    (["--max-inflight", "0"], "max-inflight"),
    (["--controller-interval", "0"], "controller-interval"),
])
def test_serve_refuses_unsafe_or_out_of_range_options(tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    run = _serve(tmp_path / ".mlops", *args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_insecure_public_bind_starts_with_a_warning(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(MLOPS_HOME=str(tmp_path / ".mlops"))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlops", "serve", "--host", "0.0.0.0",
                                 "--port", str(port), "--insecure"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        # any Host is served, since the operator asked for a public bind
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/models", headers={"Host": "mlops.lan"})
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    assert "without authentication (--insecure)" in log.read_text()


def test_team_mode_can_ask_inference_for_a_token_too(
        served_store: tuple[Path, ModelRegistry]) -> None:
    home, registry = served_store
    _, token = TokenService(registry).create("app", Role.DEVELOPER)
    srv = start_server(home, "--auth", env_extra={"MLOPS_AUTH_INFERENCE": "on"})
    try:
        with srv.client() as c:
            assert c.post("/v1/models/clf:predict", json=ROW).status_code == 401
            ok = c.post("/v1/models/clf:predict", json=ROW,
                        headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert c.get("/v2/health/ready").status_code == 200  # probes stay open
            label = {"request_id": ok.headers["x-request-id"], "actual": 1}
            assert c.post("/v1/models/clf/feedback", json=label).status_code == 401
            assert c.post("/v1/models/clf/feedback", json=label,
                          headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert c.get("/metrics").status_code == 200
            # the dashboard's own login works without a bearer token (its session cookie)
            login = c.get("/login", headers={"accept": "text/html"})
            assert login.status_code == 200 and "text/html" in login.headers["content-type"]
            assert c.post("/invocations", json={"instances": [[0.0] * 5]}).status_code == 401
            # team mode serves any Host name (it sits behind a load balancer)
            assert c.get("/v2/health/live", headers={"Host": "mlops.internal"}).status_code \
                == 200
    finally:
        srv.stop()


def test_values_that_used_to_crash_the_api_are_refused(server: Server) -> None:
    with server.client() as c:
        huge_window = c.put("/api/v1/alert-rules/r", json={"spec": {
            "metric": "error_rate", "comparator": ">", "threshold": 0.1,
            "window": "99999999999999999999d"}})
        assert huge_window.status_code == 400 and "year" in huge_window.text
        infinite = c.put("/api/v1/alert-rules/r", content=b'{"spec": {"metric": "error_rate", '
                         b'"comparator": ">", "threshold": 1e999}}',
                         headers={"Content-Type": "application/json"})
        assert 400 <= infinite.status_code < 500
        token = c.post("/api/v1/tokens", json={"name": "x", "role": "viewer",
                                               "expires": "999999w"})
        assert token.status_code == 400 and "ten years" in token.json()["fix"]
        keep = c.put("/api/v1/routes/clf/production", json={
            "stable": "1.0.0", "config": {"keep_loaded": ["1.1.0"], "keep_until": 1e12}})
        assert keep.status_code == 422
        nan = c.put("/api/v1/routes/clf/production", content=b'{"stable": "1.0.0", '
                    b'"candidate": "1.1.0", "weight": NaN}',
                    headers={"Content-Type": "application/json"})
        assert nan.status_code == 422
        big_id = c.post(f"/api/v1/alerts/{2**70}/ack", json={})
        assert big_id.status_code == 422
        deep = c.get("/api/v1/search", params={"q": " and ".join(["accuracy > 0.1"] * 2000)})
        assert deep.status_code == 422 or deep.status_code == 400
