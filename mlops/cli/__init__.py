"""Command line: ``mlops models|audit|demo``."""

from __future__ import annotations

from mlops.cli.app import app, main

__all__ = ["app", "main"]
