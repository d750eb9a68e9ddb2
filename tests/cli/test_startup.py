"""The CLI starts without the heavy libraries a command does not use: pandas and pyarrow
(imported where a frame is made), pyjwt (only with JWTs configured) and Alembic (only to
upgrade a store). Each cost 0.05-0.2 s on every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import child_env

HEAVY = ("pandas", "pyarrow", "jwt", "alembic")

SCRIPT = f"""
import atexit, runpy, sys
atexit.register(lambda: print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules),
                              file=sys.stderr))
sys.argv = ["mlops", *sys.argv[1:]]
runpy.run_module("mlops", run_name="__main__")
"""


@pytest.mark.default_store  # the embedded SQLite store a new user starts with
@pytest.mark.parametrize("command", [["models", "list"], ["audit", "verify"],
                                     ["models", "list", "--json"]])
def test_common_commands_import_no_heavy_library(tmp_path: Path, command: list[str]) -> None:
    env = child_env(MLOPS_HOME=str(tmp_path / ".mlops"))
    for attempt in ("a fresh store (migrated)", "the same store again"):
        r = subprocess.run([sys.executable, "-c", SCRIPT, *command], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (attempt, r.stderr)
        heavy = r.stderr.strip().splitlines()[-1]
        allowed = {"HEAVY ['alembic']", "HEAVY []"} if attempt.startswith("a fresh") \
            else {"HEAVY []"}  # Alembic only to migrate
        assert heavy in allowed, (attempt, heavy)
