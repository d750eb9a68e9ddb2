"""Pipeline reports: JSON (machines), Markdown (a pull-request comment), JUnit XML (any CI
shows each gate and step as a test case)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mlops.ci.pipeline import PipelineResult, StepResult

__all__ = ["to_json", "to_junit_xml", "to_markdown", "write_reports"]

_ICON = {"passed": "✅", "cached": "✅", "failed": "❌", "error": "❌", "timeout": "⏱️",
         "skipped": "⏭️", "pending": "⏳"}


def to_json(result: PipelineResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=str, ensure_ascii=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(result: PipelineResult) -> str:
    """A summary table and one line per failure, for a pull-request comment."""
    head = {"passed": "✅ passed", "failed": "❌ failed",
            "awaiting_approval": "⏳ awaiting approval"}.get(result.status, result.status)
    lines = [f"## mlops pipeline: {result.model} {result.version or ''} {head}".rstrip(), "",
             f"Policy tier **{result.policy.get('tier')}**, run {result.run_id}, "
             f"{result.duration_s:.1f} s.", "",
             "| step | status | measured | threshold | reason |",
             "|---|---|---|---|---|"]
    for s in result.steps:
        actual = _cell(s.gate.actual) if s.gate else ""
        threshold = _cell(s.gate.threshold) if s.gate else ""
        lines.append(f"| `{s.name}` | {_ICON.get(s.status, '')} {s.status} | {actual} | "
                     f"{threshold} | {_cell(s.reason)} |")
    warnings = [(s.name, w) for s in result.steps if s.gate for w in s.gate.warnings]
    if warnings:
        lines += ["", "**Warnings**", ""] + [f"- `{n}`: {w}" for n, w in warnings]
    return "\n".join(lines) + "\n"


def _case(suite: ET.Element, step: StepResult, model: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"mlops.{model}", name=step.name,
                         time=f"{step.duration_s:.4f}")
    text = json.dumps(step.gate.to_dict() if step.gate else step.to_dict(), default=str,
                      indent=1)
    if step.status in ("failed", "timeout"):
        node = ET.SubElement(case, "failure", message=step.reason[:1000], type=step.status)
        node.text = text
    elif step.status == "error":
        node = ET.SubElement(case, "error", message=step.reason[:1000], type="error")
        node.text = text
    elif step.status in ("skipped", "pending"):
        ET.SubElement(case, "skipped", message=step.reason[:1000])
    else:
        out = ET.SubElement(case, "system-out")
        out.text = step.reason


def to_junit_xml(result: PipelineResult) -> str:
    """One ``<testsuite>`` per run, one ``<testcase>`` per step."""
    counts = {"failures": sum(s.status in ("failed", "timeout") for s in result.steps),
              "errors": sum(s.status == "error" for s in result.steps),
              "skipped": sum(s.status in ("skipped", "pending") for s in result.steps)}
    attrs = {k: str(v) for k, v in counts.items()}
    suites = ET.Element("testsuites", {"name": "mlops pipeline",
                                       "tests": str(len(result.steps)),
                                       "time": f"{result.duration_s:.3f}", **attrs})
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"mlops pipeline {result.model}", "tests": str(len(result.steps)),
        "time": f"{result.duration_s:.3f}", "timestamp": result.started_at.isoformat(),
        **attrs})
    for step in result.steps:
        _case(suite, step, result.model)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_reports(result: PipelineResult, folder: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``junit.xml`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md",
             "junit": out / "junit.xml"}
    paths["json"].write_text(to_json(result), encoding="utf-8")
    paths["markdown"].write_text(to_markdown(result), encoding="utf-8")
    paths["junit"].write_text(to_junit_xml(result), encoding="utf-8")
    return paths
