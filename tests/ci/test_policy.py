"""Policy files: tiers, per-model overrides, validation errors with the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.ci.policy import GATE_ORDER, Policy
from mlops.errors import PolicyError

GOOD = """\
version: 1
default_tier: low
models:
  churn:
    tier: high
    sensitive_features: [gender]
    gates:
      metrics: {accuracy: 0.85, f1_score: 0.8}
      explainability: {enabled: false}
    approvals: 3
    rollout:
      strategy: canary
      steps: [{weight: 10, pause: 5m}, {weight: 100}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_model_entry_overrides_its_tier_key_by_key(tmp_path: Path) -> None:
    policy = Policy.load(_write(tmp_path, GOOD))
    churn = policy.for_model("churn")
    assert churn.tier == "high" and churn.approvals == 3
    assert "explainability" not in churn.gates and "fairness" in churn.gates
    assert churn.gates["metrics"].accuracy == 0.85 and churn.gates["metrics"].f1 == 0.8
    assert churn.gates["security"].allow_pickle is False  # from the high tier
    assert list(churn.gates) == [g for g in GATE_ORDER if g in churn.gates]
    assert churn.rollout["steps"][0] == {"weight": 10, "pause": "5m"}
    assert churn.sensitive_features == ["gender"]
    other = policy.for_model("anything")
    assert other.tier == "low" and other.approvals == 0
    assert set(other.gates) == {"security", "data_quality", "metrics"}


def test_builtin_tiers_without_a_file() -> None:
    medium = Policy().for_model("m")
    assert medium.tier == "medium" and medium.approvals == 1
    assert medium.rollout["strategy"] == "canary"
    assert {"champion", "latency", "resources"} <= set(medium.gates)


@pytest.mark.parametrize(("text", "line", "key"), [
    (GOOD.replace("accuracy: 0.85", "acuracy: 0.85"), 8, "acuracy"),
    (GOOD.replace("tier: high", "tier: extreme"), 5, "models.churn.tier"),
    (GOOD.replace("approvals: 3", "approvals: many"), 10, "models.churn.approvals"),
    (GOOD.replace("      metrics:", "      metricz:"), 8, "metricz"),
    (GOOD.replace("version: 1", "versoin: 1"), 1, "versoin"),
    (GOOD.replace("strategy: canary", "strategy: canery"), 11, "models.churn.rollout"),
])
def test_errors_name_the_line_and_the_key(tmp_path: Path, text: str, line: int,
                                          key: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.load(_write(tmp_path, text))
    message = str(info.value)
    assert f"line {line}" in message and key in message, message
    assert info.value.context["line"] == line


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="line 3"):
        Policy.load(_write(tmp_path, "models:\n  churn:\n    gates: [unclosed\n"))


def test_missing_file_and_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="Cannot read"):
        Policy.load(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="mapping"):
        Policy.load(_write(tmp_path, "- a\n- b\n"))


def test_custom_tier_can_be_defined(tmp_path: Path) -> None:
    policy = Policy.load(_write(tmp_path, "default_tier: tiny\ntiers:\n  tiny:\n"
                                          "    gates: {security: {}}\n"))
    assert list(policy.for_model("x").gates) == ["security"]
