"""Monitoring: reference profiles, drift, performance windows, alerts and the evaluator."""

from __future__ import annotations

__all__: list[str] = []
