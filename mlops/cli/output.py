"""Terminal output: Rich tables for people, ``--json`` for programs."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from mlops.registry.mlflow_import import ImportReport
    from mlops.registry.service import ModelRegistry
    from mlops.registry.types import ModelVersion, RegisteredModel

__all__ = ["console", "err_console", "fmt", "import_fixes", "import_table", "models_table",
           "open_registry", "print_json", "versions_table"]

console = Console()
err_console = Console(stderr=True)


def fmt(value: Any) -> str:
    """Compact: numbers to 4 digits, long strings (digests) cut, empty entries left out."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        shown = [(k, v) for k, v in value.items() if v not in (None, [], {}, "")]
        return ", ".join(f"{k}={fmt(v)}" for k, v in shown[:6])
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "…"


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def models_table(models: list[RegisteredModel]) -> Table:
    table = Table(title="Registered models")
    for col in ("name", "versions", "latest", "production", "staging", "aliases"):
        table.add_column(col)
    for m in models:
        table.add_row(m.name, str(m.version_count), m.latest_version or "-",
                      m.stages.get("Production", "-"), m.stages.get("Staging", "-"),
                      ", ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items())) or "-")
    return table


def versions_table(versions: list[ModelVersion], title: str) -> Table:
    table = Table(title=title)
    for col in ("model", "version", "stage", "aliases", "flavor", "metrics", "tags", "sha256"):
        table.add_column(col, overflow="fold")
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        tags = ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))
        table.add_row(v.model, v.version, v.stage, ", ".join(v.aliases) or "-",
                      f"{v.flavor}/{v.format}" + "".join(f" +{r}" for r in sorted(v.runtimes)),
                      metrics or "-", tags or "-",
                      v.artifact_digest[:12])
    return table


def import_table(report: ImportReport) -> Table:
    table = Table(title=f"MLflow import from {report.tracking_uri}")
    for col in ("model", "mlflow", "status", "version", "stage", "aliases", "reason"):
        table.add_column(col, overflow="fold")
    colour = {"imported": "green", "skipped": "dim", "refused": "red"}
    for r in report.results:
        status = f"[{colour[r.status]}]{r.status}[/]"
        if r.stage_refused:
            status += " [red](stage refused)[/]"
        table.add_row(r.model, r.mlflow_version, status, r.version or "-", r.stage,
                      ", ".join(r.aliases) or "-", r.reason or "-")
    return table


def import_fixes(report: ImportReport) -> list[str]:
    """One line per distinct fix of the refused versions, naming the versions it is for."""
    fixes: dict[str, list[str]] = {}
    for r in report.results:
        if r.fix:
            fixes.setdefault(r.fix, []).append(f"{r.model} {r.mlflow_version}")
    return [f"[bold]fix[/] ({', '.join(who)}): {fix}" for fix, who in fixes.items()]


def open_registry() -> ModelRegistry:
    """The registry of the configured store (imported on first use: the CLI starts fast)."""
    from mlops.registry.service import ModelRegistry

    return ModelRegistry()
