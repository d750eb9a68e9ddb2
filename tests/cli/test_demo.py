"""`make demo` runs `mlops demo` on a fresh store: the whole lifecycle must keep working."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.default_store  # `make demo` runs on the embedded default


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
    _the_retraining_chain(out)
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
    for kind in ("ci_run", "rollout", "analysis", "alert", "retrain_job"):
        assert kind in kinds, (kind, kinds)
    # the drift retrain hangs under the challenger: job -> its window -> the new version
    job = next(n for n in nodes if n["kind"] == "retrain_job")
    assert job["audit"] is not None
    assert "demo_classifier 1.0.3" in [n["label"] for n in walk(job) if n["kind"] == "version"]
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


def _the_retraining_chain(out: str) -> None:
    """Section 7b: the drift trigger fires, a job trains, the version passes its gates, rui
    approves it, its canary succeeds, and the chain is printed with audit event numbers
    that follow each other in the order things happened."""
    assert "7b. retraining: the drift trigger closes the loop" in out, out[-4000:]
    section = out[out.index("7b. retraining"):out.index("8. governance")]
    for shown in ("retraining pass: trigger drift queued job 1: drift_share",
                  "rui approves demo_classifier 1.0.3",
                  "canary of 1.0.3 (stable 1.0.1) is succeeded at step 2/2",
                  "the chain, from the audit log (event numbers):",
                  "production demo_classifier 1.0.3 serves 100% of production (was 1.0.1)"):
        assert shown in section, (shown, section[-4000:])
    assert re.search(r"job 1 succeeded in [\d.]+ s .*: trained on [\d,]+ labelled rows",
                     section), section[-4000:]
    chain = {name: re.search(pattern, section) for name, pattern in {
        "trigger": r"trigger +drift: drift_share [\d.]+ >= 0\.30 .* -> job 1 queued #(\d+)",
        "job": r"job +job 1 started #(\d+), trained in [\d.]+ s, succeeded #(\d+)",
        "version": r"version +demo_classifier 1\.0\.3 registered #(\d+) \(parent 1\.0\.1",
        "gates": r"gates +pipeline run \d+: (\d+)/\1 gates passed #(\d+)-#(\d+), staging "
                 r"#(\d+), staging tests #(\d+), run finished #(\d+)",
        "approval": r"approval +rui approved #(\d+)",
        "rollout": r"rollout +canary started #(\d+): 50% #(\d+), 100% #(\d+); "
                   r"succeeded #(\d+)"}.items()}
    missing = [name for name, found in chain.items() if found is None]
    assert not missing, (missing, section[-4000:])
    seq = {name: [int(g) for g in found.groups()] for name, found in chain.items()
           if found is not None}
    order = [seq["trigger"][0], seq["job"][0], seq["gates"][1], seq["gates"][2],
             seq["version"][0], seq["gates"][3], seq["gates"][4], seq["gates"][5],
             seq["job"][1], seq["approval"][0], *seq["rollout"]]
    assert order == sorted(order) and len(set(order)) == len(order), seq
    assert seq["gates"][0] >= 7  # the medium-risk policy's gates
