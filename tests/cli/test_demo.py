"""`make demo` runs `mlops demo` on a fresh store: the whole lifecycle must keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


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
                  "firing alerts", "model card of demo_classifier", "mlops lineage",
                  "SR 11-7 for demo_classifier", "MLOps maturity from what this store shows: level",
                  "callers address:127.0.0.1", "KPI prediction_accuracy of demo_classifier",
                  "cost per 1,000 predictions of demo_classifier",
                  "mlops retention apply --dry-run: 0 partitions", "9. audit chain"):
        assert shown in out, (shown, out[-4000:])
    assert "\nok " in out and "BROKEN" not in out
    assert (tmp_path / ".mlops" / "mlops.db").is_file()

    # the lineage of the challenger across the whole run, from the records the demo left
    lineage = subprocess.run([sys.executable, "-m", "mlops", "lineage", "demo_classifier",
                              "challenger", "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert lineage.returncode == 0, lineage.stderr[-2000:]
    root = json.loads(lineage.stdout)

    def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for c in node["children"] for n in walk(c))]

    nodes = walk(root)
    kinds = [n["kind"] for n in nodes]
    assert kinds[:3] == ["dataset", "training_run", "version"]
    assert root["attrs"]["sha256"] and root["audit"] is not None
    for kind in ("ci_run", "rollout", "analysis", "alert"):
        assert kind in kinds, (kind, kinds)
    recorded = [n for n in nodes if n["kind"] in ("dataset", "version", "ci_run", "rollout",
                                                  "alert")]
    assert all(n["audit"] is not None for n in recorded), recorded
    dot = subprocess.run([sys.executable, "-m", "mlops", "lineage", "demo_classifier",
                          "challenger", "--dot"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert dot.returncode == 0 and dot.stdout.startswith("digraph lineage {")
    card = subprocess.run([sys.executable, "-m", "mlops", "card", "demo_classifier",
                           "challenger", "--require"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert card.returncode == 0, card.stdout[-3000:] + card.stderr[-2000:]
    # who used it: the demo's gateway traffic came from this machine, no token needed
    usage = subprocess.run([sys.executable, "-m", "mlops", "audit", "usage", "demo_classifier",
                            "--since", "1d", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0, usage.stderr[-2000:]
    audit = json.loads(usage.stdout)
    assert [c["caller"] for c in audit["callers"]] == ["address:127.0.0.1"]
    assert audit["predictions"] > 1000 and audit["failed"] == 0
    impact = subprocess.run([sys.executable, "-m", "mlops", "impact", "demo_classifier",
                             "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert impact.returncode == 0, impact.stderr[-2000:]
    assert json.loads(impact.stdout)["kpis"][0]["target_met"] is True
