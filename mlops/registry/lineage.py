"""Where a version came from: data digest, code commit, params, parent, MLflow run."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.store.artifacts import sha256_file

__all__ = ["Lineage", "git_commit"]


@dataclass
class Lineage:
    training_data: str | None = None
    training_data_sha256: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parent_version: str | None = None
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Lineage:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def fill(self, cwd: str | Path | None = None) -> Lineage:
        """Hash the training data file and read the git commit, where they exist."""
        if self.training_data and not self.training_data_sha256:
            path = Path(self.training_data)
            if path.is_file():
                self.training_data_sha256 = sha256_file(path)
        if self.git_commit is None:
            commit, dirty = git_commit(cwd)
            self.git_commit, self.git_dirty = commit, dirty
        return self


def git_commit(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """``(HEAD commit, has uncommitted changes)`` or ``(None, None)`` outside a repo."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if out.returncode != 0:
        return None, None
    commit = None
    dirty = False
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            commit = None if oid == "(initial)" else oid
        elif line and not line.startswith("#"):
            dirty = True
    return (commit, dirty) if commit else (None, None)
