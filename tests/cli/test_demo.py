"""`make demo` runs `mlops demo` on a fresh store: the whole lifecycle must keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_the_whole_lifecycle_on_a_fresh_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLOPS_", "MLFLOW_")) and k not in {
               "MODEL_REGISTRY_PATH", "STAGING_MODEL_PATH", "PRODUCTION_MODEL_PATH"}}
    env["COLUMNS"] = "250"  # Rich wraps at the terminal width: keep each line whole
    done = subprocess.run([sys.executable, "-m", "mlops", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    for shown in ("x-model-runtime: onnx", "is succeeded at step 2/2", "is rolled_back",
                  "firing alerts", "8. audit chain"):
        assert shown in out, (shown, out[-4000:])
    assert "\nok " in out and "BROKEN" not in out
    assert (tmp_path / ".mlops" / "mlops.db").is_file()
