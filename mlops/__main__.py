"""``python -m mlops`` runs the command line."""

from __future__ import annotations

from mlops.cli import main

main()
