"""CI: quality gates, policy as code, the model pipeline and its reports.

- :mod:`~mlops.ci.gates` - one module per gate, one :class:`GateResult`
- :mod:`~mlops.ci.policy` - YAML policy: tiers, gates, approvals, rollout
- :mod:`~mlops.ci.pipeline` - the DAG: data -> gates -> register -> staging -> production
- :mod:`~mlops.ci.reports` - JSON, Markdown, JUnit XML
- :mod:`~mlops.ci.approvals` - four-eyes approvals in the audit chain
- :mod:`~mlops.ci.model_ci_pipeline` / :mod:`~mlops.ci.quality_gates` - seed APIs
"""

from __future__ import annotations

from mlops.ci.approvals import approvals, approve
from mlops.ci.gates.base import GateContext, GateResult
from mlops.ci.model_ci_pipeline import ModelCIPipeline
from mlops.ci.pipeline import STAGES, ModelPipeline, PipelineResult, StepResult
from mlops.ci.policy import GATE_ORDER, TIERS, ModelPolicy, Policy
from mlops.ci.quality_gates import ModelQualityGates
from mlops.ci.reports import to_json, to_junit_xml, to_markdown, write_reports
from mlops.ci.templates import write_github_actions

__all__ = [
    "GATE_ORDER",
    "STAGES",
    "TIERS",
    "GateContext",
    "GateResult",
    "ModelCIPipeline",
    "ModelPipeline",
    "ModelPolicy",
    "ModelQualityGates",
    "PipelineResult",
    "Policy",
    "StepResult",
    "approvals",
    "approve",
    "to_json",
    "to_junit_xml",
    "to_markdown",
    "write_github_actions",
    "write_reports",
]
