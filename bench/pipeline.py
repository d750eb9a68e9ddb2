"""Full model pipeline on the demo model with 10k test rows: wall time per step.

Goal (issue #6): the whole pipeline - validate data, every gate of the high-risk tier
(security, data quality, metrics, champion vs a production version, slices, fairness,
latency, resources in a subprocess, permutation importance), register, deploy to staging,
staging tests through a real gateway subprocess, production rollout - finishes in under
60 s on this 2-core machine. Printed, not asserted.

    .venv/bin/python bench/pipeline.py [--rows 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    logits = x[:, 0] * 1.5 - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["group"] = rng.choice(["a", "b"], n)
    frame["label"] = (logits > 0).astype(int)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="test rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-pipeline-") as tmp:
        root = Path(tmp)
        os.environ["MLOPS_HOME"] = str(root / ".mlops")
        os.environ["MLOPS_ACTOR"] = "bench"
        from mlops.ci.pipeline import ModelPipeline
        from mlops.ci.policy import Policy
        from mlops.registry.service import ModelRegistry

        features = [f"f{i}" for i in range(8)]
        train, test = _data(5000, 1), _data(args.rows, 2)
        test_path = root / "test.csv"
        test.to_csv(test_path, index=False)
        champion = LogisticRegression(max_iter=500).fit(train[features], train["label"])
        forest = RandomForestClassifier(n_estimators=60, max_depth=8, random_state=7)
        forest.fit(train[features], train["label"])
        sio.dump(champion, root / "v1.skops")
        sio.dump(forest, root / "v2.skops")
        policy_file = root / "policy.yaml"
        policy_file.write_text(  # the high-risk tier, without waiting for people
            "default_tier: high\ntiers:\n  high:\n    approvals: 0\n    gates:\n"
            "      slices: {slices: [group], min_metric: 0.7}\n")
        os.environ["MLOPS_POLICY_FILE"] = str(policy_file)
        registry = ModelRegistry()
        pipeline = ModelPipeline(registry, policy=Policy.load(policy_file))
        first = pipeline.run(root / "v1.skops", "demo", test_path, sensitive=["group"],
                             stage="register")
        registry.promote("demo", first.version or "", "Production")
        start = time.perf_counter()
        result = pipeline.run(root / "v2.skops", "demo", test_path, sensitive=["group"])
        total = time.perf_counter() - start

    print(f"mlops pipeline benchmark: {args.rows:,} test rows, {len(features)} features, "
          f"random forest (60 trees) vs a logistic champion; {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"\n{'step':<24}{'status':<10}{'seconds':>9}  reason")
    for step in result.steps:
        print(f"{step.name:<24}{step.status:<10}{step.duration_s:>9.2f}  {step.reason[:90]}")
    verdict = "met" if total < 60 else "NOT met"
    print(f"\ntotal {total:.1f} s (goal < 60 s: {verdict}); pipeline status {result.status}")


if __name__ == "__main__":
    main()
