"""The ``ModelQualityGates`` shape of seed ``000``: ``run_quality_checks`` then
``evaluate_gate_results``, on the real gates.

The seed's thresholds map onto the gates: ``accuracy_threshold`` -> metrics ``accuracy``,
``latency_threshold`` (ms) -> latency ``max_p99_ms``, ``memory_threshold`` (MB) -> resources
``max_memory_mb``, ``security_score_threshold`` -> security ``min_score`` (0-10 scale, see
:mod:`mlops.ci.gates.security`), ``bias_threshold`` -> fairness demographic-parity and
equalized-odds limits. Every gate runs even when an earlier one fails (a pickle that scores
below ``security_score_threshold`` is still loaded, through the allow list, for the other
gates); only a file that cannot be loaded safely at all (imports outside the allow list)
leaves the gates that need the model unrun, each saying why.

>>> gates = ModelQualityGates()                                                # doctest: +SKIP
>>> results = gates.run_quality_checks("model.skops", {"features": X, "labels": y})  # doctest: +SKIP
>>> gates.evaluate_gate_results(results)["passed"]                             # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlops.ci.gates.base import GateResult
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.errors import CIError
from mlops.registry.service import ModelRegistry

__all__ = ["ModelQualityGates"]

#: seed result key -> gate
_KEYS = {"performance": "metrics", "latency": "latency", "resources": "resources",
         "security": "security", "fairness": "fairness", "data_quality": "data_quality"}


class ModelQualityGates:
    def __init__(self, registry: ModelRegistry | None = None,
                 sensitive_features: list[str] | None = None) -> None:
        self.quality_thresholds: dict[str, float] = {
            "accuracy_threshold": 0.85,
            "latency_threshold": 100,  # milliseconds
            "memory_threshold": 2048,  # MB
            "security_score_threshold": 8.0,
            "bias_threshold": 0.1,
        }
        self.registry = registry
        self.sensitive_features = list(sensitive_features or [])

    def _policy(self) -> Policy:
        t = self.quality_thresholds
        gates = {"security": {"min_score": t["security_score_threshold"]},
                 "data_quality": {},
                 "metrics": {"accuracy": t["accuracy_threshold"]},
                 "fairness": {"max_demographic_parity_difference": t["bias_threshold"],
                              "max_equalized_odds_difference": t["bias_threshold"]},
                 "latency": {"max_p99_ms": t["latency_threshold"]},
                 "resources": {"max_memory_mb": t["memory_threshold"]}}
        return Policy({"default_tier": "seed", "tiers": {"seed": {"gates": gates}}})

    @staticmethod
    def _frame(test_data: Any) -> tuple[pd.DataFrame | str | Path, str | None]:
        if isinstance(test_data, dict) and "features" in test_data:
            frame = pd.DataFrame(test_data["features"]).reset_index(drop=True)
            if "labels" in test_data:
                frame["label"] = pd.Series(test_data["labels"]).reset_index(drop=True)
            return frame, "label" if "labels" in test_data else None
        if isinstance(test_data, pd.DataFrame | str | Path):
            return test_data, None
        raise CIError("test_data must be {'features': X, 'labels': y}, a DataFrame or a path.",
                      fix="Pass the held-out rows in one of those shapes.")

    def run_quality_checks(self, model_artifacts: str | Path, test_data: Any
                           ) -> dict[str, GateResult]:
        """Run every gate on the model file; results keyed like the seed's."""
        source, label = self._frame(test_data)
        registry = self.registry or ModelRegistry()
        pipeline = ModelPipeline(registry, policy=self._policy())
        name = Path(model_artifacts).stem or "model"
        result = pipeline.run(model_artifacts, name, source, label=label,
                              sensitive=self.sensitive_features, stage="gates",
                              fail_fast=False)
        out: dict[str, GateResult] = {}
        for key, gate in _KEYS.items():
            step = next((s for s in result.steps if s.name == f"gate:{gate}"), None)
            if step is None:
                continue
            if step.gate is not None:
                out[key] = step.gate
            else:  # the gate could not run (the data or the model failed before it)
                blocker = result.failed_step
                out[key] = GateResult(gate, False, None, None, step.reason if blocker is None
                                      else f"{step.reason} ({blocker.name}: {blocker.reason})")
        return out

    def evaluate_gate_results(self, quality_results: dict[str, Any]) -> dict[str, Any]:
        """Passed and failed gates with reasons, and a recommendation."""
        passed_gates: list[str] = []
        failed_gates: list[dict[str, Any]] = []
        for gate_name, result in quality_results.items():
            if result["passed"]:
                passed_gates.append(gate_name)
            else:
                failed_gates.append({"gate": gate_name, "reason": result["reason"],
                                     "actual_value": result["actual_value"],
                                     "threshold": result["threshold"]})
        return {"passed": not failed_gates, "passed_gates": passed_gates,
                "failed_gates": failed_gates,
                "recommendation": self.generate_recommendation(failed_gates)}

    @staticmethod
    def generate_recommendation(failed_gates: list[dict[str, Any]]) -> str:
        if not failed_gates:
            return "All quality gates passed: the model may be promoted."
        names = ", ".join(g["gate"] for g in failed_gates)
        return (f"Do not promote: fix {names} first. "
                + " ".join(f"{g['gate']}: {g['reason']}" for g in failed_gates))
