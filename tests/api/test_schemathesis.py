"""Schemathesis against ``/api/openapi.json`` of a real team-mode server: generated
requests (valid and invalid) to every operation, a bounded number per operation, must
never get a 5xx and every answer must match the schema (body and status code)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from fastapi.routing import APIRoute
from sklearn.linear_model import LogisticRegression

from mlops.api.app import create_api
from mlops.config import Settings
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server


def test_generated_requests_get_no_server_error_and_match_the_schema(tmp_path: Path) -> None:
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="setup"))
    x = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=["a", "b", "c"])
    sio.dump(LogisticRegression().fit(x, (x["a"] > 0).astype(int)), tmp_path / "m.skops")
    registry.register("clf", tmp_path / "m.skops", input_example=x.head(5), training_frame=x)
    registry.register("clf", tmp_path / "m.skops")
    registry.promote("clf", "1.0.0", "production")
    _, admin = TokenService(registry).create("fuzzer", Role.ADMIN)
    srv = start_server(home, "--auth", "--controller-interval", "3600")
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a dev dependency"
    try:
        run = subprocess.run(
            [exe, "run", f"{srv.url}/api/openapi.json", "--url", f"{srv.url}/api",
             "-H", f"Authorization: Bearer {admin}",
             "--checks", "not_a_server_error,response_schema_conformance,"
                         "status_code_conformance,content_type_conformance",
             "--max-examples", "15", "--workers", "1", "--seed", "1",
             "--generation-database", "none", "--no-color", "--output-truncate", "false"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        srv.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    operations = sum(len(r.methods) for r in create_api(registry).routes
                     if isinstance(r, APIRoute))
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert tested is not None and int(tested.group(1)) == operations
