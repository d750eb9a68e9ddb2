"""Reading user data files (CSV, Parquet, JSON): test sets, reference data, examples (private)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.errors import MlopsError

__all__ = ["read_frame"]


def read_frame(path: Path, what: str, error: type[MlopsError] = MlopsError) -> Any:
    """A pandas DataFrame from ``.csv``, ``.parquet``/``.pq``, ``.json`` or ``.jsonl``."""
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.is_file():
        raise error(f"No {what} at {path}.", fix="Check the path.")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".json", ".jsonl"}:
            return pd.read_json(path, lines=suffix == ".jsonl")
    except (OSError, ValueError) as exc:
        raise error(f"Cannot read {what} {path}: {exc}.",
                    fix="Give a CSV, Parquet or JSON records file.") from exc
    raise error(f"{what.capitalize()} {path} must be .csv, .parquet or .json.",
                fix="Convert it to one of those formats.")
