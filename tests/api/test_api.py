"""The control-plane REST API over real HTTP, and what each server role serves."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]}


def test_registry_and_routes_over_rest(served_store: tuple[Path, ModelRegistry]) -> None:
    home, _ = served_store
    srv = start_server(home)  # role "all"
    try:
        with srv.client() as c:
            models = c.get("/api/v1/models").json()
            assert [m["name"] for m in models] == ["clf"]
            detail = c.get("/api/v1/models/clf").json()
            assert [v["version"] for v in detail["versions"]][:2] == ["1.0.0", "1.1.0"]
            assert c.get("/api/v1/models/clf/versions/production").json()["version"] == "1.0.0"
            missing = c.get("/api/v1/models/nope")
            assert missing.status_code == 404 and "nope" in missing.json()["error"]
            found = c.get("/api/v1/search", params={"q": "stage = production"}).json()
            assert [(v["model"], v["version"]) for v in found] == [("clf", "1.0.0")]
            assert c.get("/api/v1/routes/clf/production").json()["route"] is None

            bad = c.put("/api/v1/routes/clf/production", json={"stable": "1.0.0", "weight": 5})
            assert bad.status_code == 400 and "candidate" in bad.json()["error"]
            unknown = c.put("/api/v1/routes/clf/production", json={"stable": "7.7.7"})
            assert unknown.status_code == 404

            r = c.put("/api/v1/routes/clf/production",
                      json={"stable": "1.1.0", "reason": "switch over REST"})
            assert r.status_code == 200 and r.json()["stable"] == "1.1.0"
            time.sleep(1.0)
            assert c.post("/v1/models/clf:predict", json=ROW).headers["x-model-version"] \
                == "1.1.0"
            assert c.delete("/api/v1/routes/clf/production").status_code == 200
            time.sleep(1.0)
            assert c.post("/v1/models/clf:predict", json=ROW).headers["x-model-version"] \
                == "1.0.0"

            events = c.get("/api/v1/audit", params={"action": "route.set"}).json()
            assert events[0]["payload"]["reason"] == "switch over REST"
            assert c.get("/api/v1/audit/verify").json()["ok"] is True
            assert c.get("/api/openapi.json").status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize(("role", "inference", "api"), [("gateway", 200, 404),
                                                         ("control", 404, 200)])
def test_roles_serve_their_part(served_store: tuple[Path, ModelRegistry], role: str,
                                inference: int, api: int) -> None:
    home, _ = served_store
    srv = start_server(home, "--role", role, wait_for="/v2/health/live")
    try:
        assert httpx.post(srv.url + "/v1/models/clf:predict", json=ROW).status_code == inference
        assert httpx.get(srv.url + "/api/v1/models").status_code == api
        assert httpx.get(srv.url + "/metrics").status_code == 200
    finally:
        srv.stop()


def test_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mlops", "serve", "--role", "boss"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "Unknown role" in r.stderr


def test_rollouts_over_rest(served_store: tuple[Path, ModelRegistry]) -> None:
    home, _ = served_store
    srv = start_server(home, "--controller-interval", "60")
    try:
        with srv.client() as c:
            r = c.post("/api/v1/rollouts/clf/production",
                       json={"version": "1.1.0", "strategy": "canary",
                             "override": "test: straight to production",
                             "config": {"steps": [{"weight": 25, "pause": "manual"}]}})
            assert r.status_code == 200, r.text
            assert r.json()["weight"] == 25 and r.json()["state"] == "progressing"
            again = c.post("/api/v1/rollouts/clf/production",
                           json={"version": "1.1.0", "override": "again"})
            assert again.status_code == 400 and "active rollout" in again.json()["error"]
            assert c.get("/api/v1/rollouts/clf/production").json()["candidate"] == "1.1.0"
            paused = c.post("/api/v1/rollouts/clf/production/pause", json={"reason": "look"})
            assert paused.json()["state"] == "paused"
            unknown = c.post("/api/v1/rollouts/clf/production/explode", json={})
            assert unknown.status_code == 422 and "promote" in unknown.text
            # a bodyless POST is what a cross-site form can send: refused in single-user mode
            simple = c.post("/api/v1/rollouts/clf/production/promote")
            assert simple.status_code == 403 and "application/json" in simple.json()["fix"]
            done = c.post("/api/v1/rollouts/clf/production/promote", json={})
            assert done.json()["state"] == "succeeded"
            back = c.post("/api/v1/rollback/clf/production", json={"reason": "REST rollback"})
            assert back.json()["serving"] == "1.0.0"
    finally:
        srv.stop()
