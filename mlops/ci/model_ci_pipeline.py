"""Seed API (``001`` README): ``ModelCIPipeline().run_full_pipeline(...)``.

>>> pipeline = ModelCIPipeline()                                    # doctest: +SKIP
>>> result = pipeline.run_full_pipeline(
...     model_path="models/task_classifier.pkl", model_name="task_classifier",
...     test_data_path="data/test.csv",
...     validation_metrics={"accuracy": 0.85, "precision": 0.82, "recall": 0.80,
...                         "f1_score": 0.81})                      # doctest: +SKIP
>>> result.passed, result["steps"]["gate:metrics"]["status"]        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.ci.pipeline import ModelPipeline, PipelineResult
from mlops.ci.policy import Policy
from mlops.registry.service import ModelRegistry

__all__ = ["ModelCIPipeline"]


class ModelCIPipeline:
    """The seed's pipeline facade over :class:`~mlops.ci.pipeline.ModelPipeline`."""

    def __init__(self, registry: ModelRegistry | None = None, policy: Policy | str | Path |
                 None = None, **overrides: Any) -> None:
        if registry is None:
            from mlops.registry.model_registry import get_model_registry

            registry = get_model_registry(**overrides)
        if isinstance(policy, str | Path):
            policy = Policy.load(policy)
        self.pipeline = ModelPipeline(registry, policy=policy)

    def run_full_pipeline(self, model_path: str | Path, model_name: str,
                          test_data_path: str | Path, validation_metrics:
                          Mapping[str, float] | None = None, *, label: str | None = None,
                          sensitive_features: list[str] | None = None,
                          stage: str = "production", trust: bool = False,
                          force: bool = False) -> PipelineResult:
        """Validate data, run the gates (``validation_metrics`` are the metrics gate's
        minimums), register, deploy to staging, test it over HTTP, roll out to production."""
        return self.pipeline.run(model_path, model_name, test_data_path, label=label,
                                 sensitive=sensitive_features, thresholds=validation_metrics,
                                 stage=stage, trust=trust, force=force)
