"""The package's own rules that no linter checks: a name used by another module is public.

The layer arrows and the absence of import cycles are import-linter contracts
(``[tool.importlinter]`` in pyproject.toml, run by ``make lint``); this test runs them too,
so that a plain ``pytest`` catches a broken arrow.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlops"


def private_imports(path: Path) -> list[str]:
    """``from mlops.x import _name`` and ``module._name`` uses of an imported mlops module
    in one file."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlops"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                 f"from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names
                           if a.name.startswith("mlops"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in private_imports(path)]
    assert found == []


def test_the_checker_finds_a_private_import() -> None:
    sample = ROOT / "tests" / "_sample_private_import.py"
    sample.write_text("from mlops.store import db\nfrom mlops.x import _y\n\ndb._engines\n")
    try:
        assert len(private_imports(sample)) == 2
    finally:
        sample.unlink()


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
